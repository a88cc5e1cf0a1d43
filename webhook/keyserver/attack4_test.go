package keyserver

import (
	"context"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/keymaterial"
)

// Issue 12, attack 4: twenty junk credentials from a gateway's address used
// to get every client behind it a 429, valid keys included.

const (
	gatewayPeer = "10.0.0.1:41000"
	// notRotatable is the test rotator's answer: a request that reaches it
	// was not refused by the limiter.
	notRotatable = http.StatusConflict
)

func withRefusingRotator(o *Options) {
	o.SelfRotationBurst = 1000 // every case reaches the rotator; the per-key limit has its own tests
	o.Rotator = rotatorFunc(func(context.Context, string, string, string, string) (string, string, error) {
		return "", "", ErrNotRotatable
	})
}

// guessFor is a well-formed API key (its checksum holds) naming key id id
// with a random secret: what an online guesser sends.
func guessFor(t *testing.T, id string) string {
	t.Helper()
	secret, err := keymaterial.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	body := "kw_" + id + "_" + secret[:32]
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	const b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var sum [6]byte
	for i := len(sum) - 1; i >= 0; i-- {
		sum[i], v = b62[v%62], v/62
	}
	key := body + string(sum[:])
	if k, err := keymaterial.Parse(key); err != nil || k.ID != id {
		t.Fatalf("guessFor built a key that does not parse: %v", err)
	}
	return key
}

func keyIDOf(t *testing.T, key string) string {
	t.Helper()
	k, err := keymaterial.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// from sends r as if from peer, with the given X-Forwarded-For headers.
func (f *fixture) from(r *http.Request, peer string, xff ...string) *httptest.ResponseRecorder {
	r.RemoteAddr = peer
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return f.do(r)
}

func authzWith(key string) *http.Request {
	return authzReq("/v1/authz", func(h http.Header) { h.Set("Authorization", "Bearer "+key) })
}

func verifyWith(key string) *http.Request {
	return httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(`{"key":"`+key+`"}`))
}

func basicToken(ak, sk string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/tokens", nil)
	r.SetBasicAuth(ak, sk)
	return r
}

func rotateWith(key string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/keys/current/rotate", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	return r
}

func wantStatus(t *testing.T, what string, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("%s: status %d, want %d; body %q", what, rec.Code, want, rec.Body.String())
	}
}

func wantLimited(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	wantStatus(t, what, rec, http.StatusTooManyRequests)
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("%s: Retry-After %q, want a number of seconds", what, rec.Header().Get("Retry-After"))
	}
}

func TestAttack4LockingOutEveryoneBehindAGateway(t *testing.T) {
	// newFixture allows 5 failures, then one per 10 s.
	t.Run("junk from the gateway's address refuses no valid credential, on any endpoint", func(t *testing.T) {
		f := newFixture(t, withRefusingRotator)
		key := f.apiKey("billing")
		ak, sk := f.pair("alice-1")
		tok := f.token(basicToken(ak, sk)).resp.Token
		otherAK, _ := f.pair("bob-1")
		unknownAK, _ := keymaterial.GenerateAccessKeyID()
		junk := []*http.Request{
			authzWith("kw_nope"), authzWith(guessFor(t, keyIDOf(t, key))), authzWith(mustKey(t)),
			authzWith("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"), authzWith(strings.Repeat("x", 40)),
			verifyWith("kw_nope"), verifyWith(guessFor(t, keyIDOf(t, key))), verifyWith(mustKey(t)),
			basicToken(ak, "wrong-secret"), basicToken(otherAK, "wrong-secret"), basicToken(unknownAK, "wrong-secret"),
			rotateWith("kw_nope"), rotateWith(guessFor(t, keyIDOf(t, key))),
		}
		for range 3 { // 39 failures from one address, far past the burst of 5
			for _, r := range junk {
				f.from(r.Clone(context.Background()), gatewayPeer)
			}
		}
		wantStatus(t, "authz with a valid key", f.from(authzWith(key), gatewayPeer), http.StatusOK)
		wantStatus(t, "authz with a valid token", f.from(authzWith(tok), gatewayPeer), http.StatusOK)
		rec := f.from(verifyWith(key), gatewayPeer)
		wantStatus(t, "verify with a valid key", rec, http.StatusOK)
		if !strings.Contains(rec.Body.String(), `"valid":true`) {
			t.Fatalf("verify with a valid key: %s", rec.Body)
		}
		wantStatus(t, "tokens with a valid pair", f.from(basicToken(ak, sk), gatewayPeer), http.StatusOK)
		wantStatus(t, "rotate with a valid key", f.from(rotateWith(key), gatewayPeer), notRotatable)
	})

	t.Run("a guesser hammering one key id is limited per (address, key id)", func(t *testing.T) {
		f := newFixture(t)
		victim := f.apiKey("billing")
		bystander := f.apiKey("reports")
		id := keyIDOf(t, victim)
		for i := range 5 {
			wantStatus(t, "guess "+strconv.Itoa(i), f.from(authzWith(guessFor(t, id)), gatewayPeer), http.StatusUnauthorized)
		}
		wantLimited(t, "the 6th guess at authz", f.from(authzWith(guessFor(t, id)), gatewayPeer))
		if got := f.from(authzWith(guessFor(t, id)), gatewayPeer).Header().Get("Retry-After"); got != "10" {
			t.Fatalf("Retry-After %q, want 10 (one failure per 10 s)", got)
		}
		wantLimited(t, "the same key id at verify", f.from(verifyWith(guessFor(t, id)), gatewayPeer))
		wantLimited(t, "the same key id at rotate", f.from(rotateWith(guessFor(t, id)), gatewayPeer))

		// Other buckets are untouched: other key ids from this address,
		// keyless junk from it, this key id from another address.
		wantStatus(t, "a guess at another key id", f.from(authzWith(guessFor(t, keyIDOf(t, bystander))), gatewayPeer), http.StatusUnauthorized)
		wantStatus(t, "junk naming no key id", f.from(authzWith("kw_nope"), gatewayPeer), http.StatusUnauthorized)
		wantStatus(t, "the key id from another address", f.from(authzWith(guessFor(t, id)), "198.51.100.7:1"), http.StatusUnauthorized)
		wantStatus(t, "another client's valid key", f.from(authzWith(bystander), gatewayPeer), http.StatusOK)
		// The key's owner behind the same address still gets in: a valid
		// credential is answered before any limit (see failed in limiter.go).
		wantStatus(t, "the hammered key itself", f.from(authzWith(victim), gatewayPeer), http.StatusOK)

		f.clock.Step(10 * time.Second)
		wantStatus(t, "after one refill", f.from(authzWith(guessFor(t, id)), gatewayPeer), http.StatusUnauthorized)
		wantLimited(t, "and then limited again", f.from(authzWith(guessFor(t, id)), gatewayPeer))
	})

	t.Run("an access key id guessed at /v1/tokens is limited per (address, access key id)", func(t *testing.T) {
		f := newFixture(t)
		ak, sk := f.pair("alice-1")
		otherAK, otherSK := f.pair("bob-1")
		for range 5 {
			wantStatus(t, "a wrong secret key", f.from(basicToken(ak, "wrong"), gatewayPeer), http.StatusUnauthorized)
		}
		wantLimited(t, "the 6th wrong secret key", f.from(basicToken(ak, "wrong"), gatewayPeer))
		wantStatus(t, "another pair's wrong secret", f.from(basicToken(otherAK, "wrong"), gatewayPeer), http.StatusUnauthorized)
		wantStatus(t, "another pair's right secret", f.from(basicToken(otherAK, otherSK), gatewayPeer), http.StatusOK)
		wantStatus(t, "the right secret", f.from(basicToken(ak, sk), gatewayPeer), http.StatusOK)
	})

	t.Run("X-Forwarded-For from an untrusted peer is ignored", func(t *testing.T) {
		for name, trusted := range map[string][]netip.Prefix{
			"no trusted proxies":              nil,
			"the peer is not a trusted proxy": {netip.MustParsePrefix("10.0.0.0/8")},
		} {
			t.Run(name, func(t *testing.T) {
				f := newFixture(t, func(o *Options) { o.TrustedProxies = trusted })
				id := keyIDOf(t, f.apiKey("billing"))
				for i := range 5 { // a new forged client address every time
					f.from(authzWith(guessFor(t, id)), "198.51.100.9:1", "192.0.2."+strconv.Itoa(i+1))
				}
				wantLimited(t, "a 6th forged address", f.from(authzWith(guessFor(t, id)), "198.51.100.9:1", "192.0.2.99"))
			})
		}
	})

	t.Run("behind a trusted proxy the right-most untrusted X-Forwarded-For entry is the client", func(t *testing.T) {
		f := newFixture(t, func(o *Options) {
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
		})
		id := keyIDOf(t, f.apiKey("billing"))
		for range 5 { // client 203.0.113.5, through two trusted hops
			wantStatus(t, "a guess", f.from(authzWith(guessFor(t, id)), gatewayPeer, "203.0.113.5, 10.1.1.1"), http.StatusUnauthorized)
		}
		// Whatever it prepends, the client stays itself.
		wantLimited(t, "the same client, forging an entry", f.from(authzWith(guessFor(t, id)), gatewayPeer, "192.0.2.77, 203.0.113.5", "10.1.1.1"))
		wantLimited(t, "the same client through the other proxy", f.from(authzWith(guessFor(t, id)), "[fd00::1]:443", "203.0.113.5"))
		// Another client behind the same proxies has its own budget.
		wantStatus(t, "another client", f.from(authzWith(guessFor(t, id)), gatewayPeer, "203.0.113.6, 10.1.1.1"), http.StatusUnauthorized)
		wantStatus(t, "another client over IPv6", f.from(authzWith(guessFor(t, id)), gatewayPeer, "2001:db8::6"), http.StatusUnauthorized)
	})
}

func mustKey(t *testing.T) string {
	t.Helper()
	k, err := keymaterial.Generate("kw")
	if err != nil {
		t.Fatal(err)
	}
	return k.String()
}

// A flood of distinct (address, key id) pairs cannot grow the limiter
// without bound.
func TestFailureBucketsStayBoundedUnderAFlood(t *testing.T) {
	f := newFixture(t)
	l := f.s.limiter
	peak := 0
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.failed(bucket{addr: a, keyID: "k" + strconv.Itoa(i%7919)})
		if n := l.len(); n > peak {
			peak = n
		}
	}
	if peak > maxTrackedBuckets {
		t.Fatalf("tracked %d buckets, the bound is %d", peak, maxTrackedBuckets)
	}
	// A bucket the flood did not push out still remembers its failures.
	a := netip.MustParseAddr("198.51.100.1")
	for range 5 {
		l.failed(bucket{addr: a, keyID: "victim"})
	}
	if _, limited := l.failed(bucket{addr: a, keyID: "victim"}); !limited {
		t.Fatal("a bucket past its burst is not limited")
	}
}

// A guesser that names a fresh key id on every attempt gets a fresh
// (address, key id) bucket each time; the address's own, far larger budget
// limits it anyway, and a valid key from the same address still passes.
func TestAGuesserChangingKeyIDsIsLimitedPerAddress(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	budget := f.s.opts.FailureLimit * addressBudgetFactor
	limited := 0
	for i := range budget + 10 {
		id := "g" + strings.Repeat("0", 11-len(strconv.Itoa(i))) + strconv.Itoa(i)
		if rec := f.from(authzWith(guessFor(t, id)), gatewayPeer); rec.Code == http.StatusTooManyRequests {
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			limited++
		}
	}
	if limited < 10 {
		t.Fatalf("%d of %d guesses at distinct key ids from one address were limited; want the last 10", limited, budget+10)
	}
	if rec := f.from(authzWith(key), gatewayPeer); rec.Code != http.StatusOK {
		t.Fatalf("a valid key from the guesser's address: %d, want 200", rec.Code)
	}
	if rec := f.from(authzWith(guessFor(t, "zzzzzzzzzzzz")), "10.9.9.9:1"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("another address's first failure: %d, want 401", rec.Code)
	}
}

package keyserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/signingkeys"
	"github.com/keyward/keyward/internal/tokens"
)

// credFixture is a key server with one API key and one access key pair, and
// a token issued for that pair, built without the HTTP token exchange so
// that benchmarks can share it.
type credFixture struct {
	s      *Server
	clock  *clocktesting.FakeClock
	apiKey string
	token  string
	pair   *hashsecret.Record
}

const credIssuer = "https://keyward.test"

func newCredFixture(tb testing.TB) *credFixture {
	tb.Helper()
	clk := clocktesting.NewFakeClock(t0)
	s := New(Options{Issuer: credIssuer, MaxTokenLifetime: 24 * time.Hour, Clock: clk, FailureLimit: 1 << 20, FailureRefill: time.Millisecond,
		DefaultPolicy: keypolicy.ModeAllowValidKey})
	f := &credFixture{s: s, clock: clk}
	f.storeKeys(tb, signingkeys.Plan{Generate: true}, nil)

	k, err := keymaterial.Generate("kw")
	if err != nil {
		tb.Fatal(err)
	}
	indexPut(tb, s, &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "bench", Subject: "bench-subject",
		Groups: []string{"reporting"}, Scopes: []string{"invoices:read"}, Access: string(kw.AccessReadWrite),
		Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
	})
	f.apiKey = k.String()

	ak, _ := keymaterial.GenerateAccessKeyID()
	sk, _ := keymaterial.GenerateSecretKey()
	f.pair = &hashsecret.Record{
		Kind: hashsecret.KindAccessKeyPair, Namespace: "team-a", Name: "bench", Subject: "alice",
		Groups: []string{"devs"}, Scopes: []string{"reports:read"},
		Current: &hashsecret.Version{ID: ak, Hash: keymaterial.Hash(sk), NotBefore: t0.Add(-time.Hour)},
	}
	indexPut(tb, s, f.pair)
	tok, _, err := tokens.Issuer{Issuer: credIssuer, Key: s.signingKey}.Issue(tokens.Claims{
		Subject: "alice", Audience: []string{DefaultAudience}, AccessKeyID: ak,
		Groups: []string{"devs"}, Scopes: []string{"reports:read"}, Namespace: "team-a", Pair: "bench",
	}, t0, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	f.token = tok
	return f
}

// storeKeys applies plan to the server's key set (a new one when ks is nil)
// and loads the result into the server, as the signing-key Secret's
// informer does.
func (f *credFixture) storeKeys(tb testing.TB, plan signingkeys.Plan, ks *signingkeys.KeySet) *signingkeys.KeySet {
	tb.Helper()
	now := f.clock.Now()
	ks, err := signingkeys.Apply(ks, plan, now, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	loaded, err := signingkeys.Load(ks, now)
	if err != nil {
		tb.Fatal(err)
	}
	f.s.keys.Store(loaded)
	return ks
}

// indexPut and indexDelete index a hash Secret's record by its owner.
func indexPut(tb testing.TB, s *Server, rec *hashsecret.Record) {
	tb.Helper()
	if err := s.index.Upsert(hashsecret.Name(rec.Kind, rec.Namespace, rec.Name), rec); err != nil {
		tb.Fatal(err)
	}
}

func indexDelete(tb testing.TB, s *Server, rec *hashsecret.Record) {
	tb.Helper()
	s.index.Delete(hashsecret.Name(rec.Kind, rec.Namespace, rec.Name))
}

func (f *credFixture) authz(cred string) int {
	r := httptest.NewRequest(http.MethodGet, "/v1/authz", nil)
	r.RemoteAddr = "203.0.113.7:4242"
	r.Header.Set("Authorization", "Bearer "+cred)
	rec := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(rec, r)
	return rec.Code
}

// A token is cached by its first successful use; these check that what a
// cache hit skips (parsing, header checks, the signature) is all it skips.
func TestACachedTokenIsRefusedAtOnce(t *testing.T) {
	cases := []struct {
		name   string
		revoke func(t *testing.T, f *credFixture)
	}{
		{"once its pair is deleted", func(t *testing.T, f *credFixture) { indexDelete(t, f.s, f.pair) }},
		{"once its pair is suspended", func(t *testing.T, f *credFixture) {
			p := *f.pair
			p.Suspended = true
			indexPut(t, f.s, &p)
		}},
		{"once its pair's key is replaced", func(t *testing.T, f *credFixture) {
			p := *f.pair
			ak, _ := keymaterial.GenerateAccessKeyID()
			p.Current = &hashsecret.Version{ID: ak, Hash: p.Current.Hash, NotBefore: t0}
			indexPut(t, f.s, &p)
		}},
		{"once its pair has expired", func(t *testing.T, f *credFixture) {
			p := *f.pair
			exp := t0.Add(time.Minute)
			p.ExpiresAt = &exp
			indexPut(t, f.s, &p)
			f.clock.Step(time.Minute)
		}},
		{"once it has expired (and the leeway passed)", func(_ *testing.T, f *credFixture) {
			f.clock.Step(time.Hour + tokens.DefaultLeeway)
		}},
		{"once its signing key has left the set", func(t *testing.T, f *credFixture) {
			// A set that no longer holds it (nil: a new set, one new key).
			f.storeKeys(t, signingkeys.Plan{Generate: true}, nil)
		}},
		{"once the key set is gone", func(_ *testing.T, f *credFixture) { f.s.keys.Store(nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newCredFixture(t)
			cached := verifiedTokens.Len()
			for range 2 { // verified, then from the cache
				if code := f.authz(f.token); code != http.StatusOK {
					t.Fatalf("before: status %d, want 200", code)
				}
			}
			if verifiedTokens.Len() != cached+1 {
				t.Fatal("the token was not cached")
			}
			tc.revoke(t, f)
			if code := f.authz(f.token); code != http.StatusUnauthorized {
				t.Fatalf("after: status %d, want 401", code)
			}
		})
	}
}

// TestACachedTokenOutlivesRotationButNotPruning: rotating keeps the old key
// published, so its tokens stay valid; pruning it ends them at once.
func TestACachedTokenOutlivesRotationButNotPruning(t *testing.T) {
	f := newCredFixture(t)
	old := f.s.keys.Load().Active.ID
	if code := f.authz(f.token); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	// Rebuild the set the fixture loaded, then rotate it.
	ks := &signingkeys.KeySet{}
	pemBytes, err := tokens.MarshalPrivateKey(f.s.keys.Load().Active)
	if err != nil {
		t.Fatal(err)
	}
	ks.Keys = []signingkeys.Key{{ID: old, PEM: pemBytes, Created: t0}}
	ks = f.storeKeys(t, signingkeys.Plan{Generate: true}, ks)
	if _, ok := f.s.keys.Load().Public(old); !ok {
		t.Fatal("rotation unpublished the old key")
	}
	if code := f.authz(f.token); code != http.StatusOK {
		t.Fatalf("after rotation: status %d, want 200", code)
	}
	f.storeKeys(t, signingkeys.Plan{Prune: []string{old}}, ks)
	if code := f.authz(f.token); code != http.StatusUnauthorized {
		t.Fatalf("after pruning its key: status %d, want 401", code)
	}
}

// TestACachedTokenIsCheckedAgainstEachRequestsAudiences: a token cached
// through /v1/authz (default audience) is not accepted where another
// audience is required, and the reverse.
func TestACachedTokenIsCheckedAgainstEachRequestsAudiences(t *testing.T) {
	f := newCredFixture(t)
	if res := f.s.identify(f.token, nil); res.Code != keyindex.Valid {
		t.Fatalf("default audience: %s", res.Code)
	}
	if res := f.s.identify(f.token, []string{"https://billing.example"}); res.Code == keyindex.Valid {
		t.Fatal("accepted for an audience it does not name")
	}
	if res := f.s.identify(f.token, []string{"https://billing.example", DefaultAudience}); res.Code != keyindex.Valid {
		t.Fatalf("among accepted audiences: %s", res.Code)
	}
}

// TestACachedTokenIsBoundToTheIssuer: another server (another issuer) with
// the same signing key does not take a token from the shared cache.
func TestACachedTokenIsBoundToTheIssuer(t *testing.T) {
	f := newCredFixture(t)
	if res := f.s.identify(f.token, nil); res.Code != keyindex.Valid {
		t.Fatalf("%s", res.Code)
	}
	other := New(Options{Issuer: "https://other.test", Clock: f.clock})
	other.keys.Store(f.s.keys.Load())
	indexPut(t, other, f.pair)
	if res := other.identify(f.token, nil); res.Code == keyindex.Valid {
		t.Fatal("accepted by a server of another issuer")
	}
}

// BenchmarkIdentify is the validation alone: an API key (index lookup and
// SHA-256) against a Keyward JWT presented again and again.
func BenchmarkIdentify(b *testing.B) {
	f := newCredFixture(b)
	for _, c := range []struct{ name, cred string }{{"apikey", f.apiKey}, {"jwt", f.token}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res := f.s.identify(c.cred, nil); res.Code != keyindex.Valid {
					b.Fatal(res.Code)
				}
			}
		})
	}
}

// BenchmarkAuthz is GET /v1/authz through the whole handler (routing,
// failure limiter, metrics, headers) with httptest, no network: an API key
// against a Keyward JWT.
func BenchmarkAuthz(b *testing.B) {
	f := newCredFixture(b)
	for _, c := range []struct{ name, cred string }{{"apikey", f.apiKey}, {"jwt", f.token}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if code := f.authz(c.cred); code != http.StatusOK {
					b.Fatal(code)
				}
			}
		})
	}
}

// BenchmarkAuthzJWTOverAPIKey alternates the two requests and reports the
// JWT request's time as a multiple of the API key request's: interleaved,
// so both see the same CPU left by other jobs.
func BenchmarkAuthzJWTOverAPIKey(b *testing.B) {
	f := newCredFixture(b)
	var tKey, tJWT time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t := time.Now()
		if code := f.authz(f.apiKey); code != http.StatusOK {
			b.Fatal(code)
		}
		t2 := time.Now()
		if code := f.authz(f.token); code != http.StatusOK {
			b.Fatal(code)
		}
		tKey += t2.Sub(t)
		tJWT += time.Since(t2)
	}
	if tKey > 0 {
		b.ReportMetric(float64(tJWT)/float64(tKey), "jwt/apikey")
	}
}

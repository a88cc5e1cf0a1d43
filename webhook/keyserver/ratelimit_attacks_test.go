package keyserver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/keypolicy"
)

// Rate limits and allow-lists of keys (issue 15, items 1 and 3), through
// the HTTP front ends. The attackers: a tenant with edit rights on its own
// APIKeys, who writes its own keys' limits, and an anonymous client.

func limitOf(requests int, period time.Duration) keyOpt {
	return func(r *hashsecret.Record) {
		r.RateLimit = &hashsecret.RateLimit{Requests: requests, Period: period}
	}
}

func cidrsOf(cidrs ...string) keyOpt {
	return func(r *hashsecret.Record) { r.AllowedCIDRs = cidrs }
}

// inNamespace moves a key's record to namespace ns (before it is indexed).
func inNamespace(ns string) keyOpt {
	return func(r *hashsecret.Record) { r.Namespace = ns }
}

// apiKeyIn indexes an API key of namespace ns.
func (f *fixture) limitedKeyIn(ns, name string, opts ...keyOpt) (string, keymaterial.Key) {
	f.t.Helper()
	k, err := keymaterial.Generate("kw")
	if err != nil {
		f.t.Fatal(err)
	}
	rec := &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: ns, Name: name, Subject: name, Access: string(kw.AccessReadWrite),
		Scopes:  []string{"invoices:read"},
		Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
	}
	for _, o := range opts {
		o(rec)
	}
	if err := f.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, rec.Namespace, name), rec); err != nil {
		f.t.Fatal(err)
	}
	return k.String(), k
}

func (f *fixture) authzFrom(peer, key string, header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/v1/authz", nil)
	r.RemoteAddr = peer
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return f.do(r)
}

const outside = "203.0.113.7:4242"

func TestRateLimitedKeyAnswers429WithRetryAfterAndHeaders(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", limitOf(2, time.Minute))
	for i, want := range []string{`"key";r=1;t=30`, `"key";r=0;t=60`} {
		rec := f.authzFrom(outside, key)
		if rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d, want 200", i+1, rec.Code)
		}
		if got := rec.Header().Get("RateLimit-Policy"); got != `"key";q=2;w=60` {
			t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
		}
		if got := rec.Header().Get("RateLimit"); got != want {
			t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
		}
	}
	rec := f.authzFrom(outside, key)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("the third request in a minute: %d, want 429", rec.Code)
	}
	h := rec.Header()
	if h.Get("Retry-After") != "30" || h.Get(wire.HeaderCode) != "RATE_LIMITED" || h.Get("RateLimit") != `"key";r=0;t=30` ||
		h.Get("RateLimit-Policy") != `"key";q=2;w=60` || h.Get(wire.HeaderSubject) != "" {
		t.Errorf("429 headers: %v", h)
	}
	f.clock.Step(30 * time.Second)
	if rec := f.authzFrom(outside, key); rec.Code != http.StatusOK {
		t.Fatalf("after Retry-After: %d, want 200", rec.Code)
	}
}

func TestUnlimitedKeysGetNoRateLimitHeaders(t *testing.T) {
	f := newFixture(t)
	rec := f.authzFrom(outside, f.apiKey("billing"))
	if rec.Code != http.StatusOK || rec.Header().Get("RateLimit") != "" || rec.Header().Get("RateLimit-Policy") != "" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
}

// Issue 15, attack 1 (tenant): spend another tenant's budget. Buckets are the
// records', so team-b's requests, even with a key named like team-a's, and
// its failed attempts with team-a's key id, spend none of team-a's.
func TestAttack15x1SpendingAnotherTenantsBudget(t *testing.T) {
	f := newFixture(t)
	victim, victimKey := f.limitedKeyIn("team-a", "reporter", limitOf(3, time.Hour))
	attacker, _ := f.limitedKeyIn("team-b", "reporter", limitOf(3, time.Hour))
	for range 10 {
		f.authzFrom(outside, attacker)
	}
	forged := guessFor(t, victimKey.ID)
	for range 10 {
		if rec := f.authzFrom("198.51.100.9:1", forged); rec.Code == http.StatusOK {
			t.Fatal("a forged key passed")
		}
	}
	rec := f.authzFrom(outside, victim)
	if rec.Code != http.StatusOK || rec.Header().Get("RateLimit") != `"key";r=2;t=1200` {
		t.Fatalf("the victim's first request: %d, RateLimit %q: its budget was spent by others", rec.Code, rec.Header().Get("RateLimit"))
	}
}

// Issue 15, attack 2 (anonymous): lock a key out by flooding with its key id, or
// with no key at all. Only a valid key spends its budget.
func TestAttack15x2LockingOutAKeyByFlooding(t *testing.T) {
	f := newFixture(t)
	victim := f.apiKey("billing", limitOf(1, time.Hour))
	forged := guessFor(t, keyIDOf(t, victim))
	for i := range 200 {
		f.authzFrom(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 1).String(), forged)
		f.authzFrom(outside, "")
		f.authzFrom(outside, "kw_junk")
	}
	if rec := f.authzFrom(outside, victim); rec.Code != http.StatusOK {
		t.Fatalf("the key's owner after a flood: %d, want 200", rec.Code)
	}
}

// Refusals spend nothing: neither an address refused by the allow-list
// nor a KeyPolicy's refusal costs the key a request.
func TestRefusedRequestsSpendNoBudget(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", limitOf(1, time.Hour), cidrsOf("10.0.0.0/8"))
	for range 5 {
		if rec := f.authzFrom(outside, key); rec.Code != http.StatusForbidden {
			t.Fatalf("from outside the allow-list: %d, want 403", rec.Code)
		}
		r := httptest.NewRequest(http.MethodGet, "/v1/authz?scope=invoices:write", nil)
		r.RemoteAddr, r.Header["Authorization"] = "10.1.1.1:1", []string{"Bearer " + key}
		if rec := f.do(r); rec.Code != http.StatusForbidden {
			t.Fatalf("a scope the key lacks: %d, want 403", rec.Code)
		}
	}
	if rec := f.authzFrom("10.1.1.1:1", key); rec.Code != http.StatusOK {
		t.Fatalf("the first admitted request: %d, want 200", rec.Code)
	}
}

func TestAllowedCIDRsAnswer403CIDRNotAllowed(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", cidrsOf("10.0.0.0/8", "2001:db8::1"))
	for peer, want := range map[string]int{"10.200.3.4:1": 200, "[2001:db8::1]:1": 200, "[::ffff:10.0.0.1]:1": 200,
		outside: 403, "[2001:db8::2]:1": 403, "192.0.2.1:1": 403} {
		rec := f.authzFrom(peer, key)
		if rec.Code != want {
			t.Errorf("from %s: %d, want %d", peer, rec.Code, want)
			continue
		}
		if want == 403 && (rec.Header().Get(wire.HeaderCode) != "CIDR_NOT_ALLOWED" || !strings.Contains(rec.Body.String(), "allowedCIDRs")) {
			t.Errorf("from %s: code %q, body %q", peer, rec.Header().Get(wire.HeaderCode), rec.Body.String())
		}
	}
}

// Issue 15, attack 3 (anonymous): claim an allowed address with X-Forwarded-For. It
// is read only from a peer in --trusted-proxies, and then only its
// right-most entry that is not a proxy.
func TestAttack15x3SpoofingTheClientAddressWithXForwardedFor(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	key := f.apiKey("billing", cidrsOf("10.0.0.0/8"))
	cases := map[string]struct {
		peer, xff string
		want      int
	}{
		"an untrusted peer's X-Forwarded-For is ignored":                     {outside, "10.1.1.1", 403},
		"an untrusted peer inside the list passes, whatever it forwards":     {"10.9.9.9:1", "203.0.113.1", 200},
		"a trusted proxy forwarding an allowed client":                       {"192.0.2.10:1", "10.1.1.1", 200},
		"a trusted proxy forwarding a refused client":                        {"192.0.2.10:1", "203.0.113.1", 403},
		"a client's own entry left of the one the proxy appended is ignored": {"192.0.2.10:1", "10.1.1.1, 203.0.113.1", 403},
		"a chain of trusted proxies: the first untrusted from the right":     {"192.0.2.10:1", "10.1.1.1, 192.0.2.11", 200},
		"a trusted proxy that forwards nothing is the client":                {"192.0.2.10:1", "", 403},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var hdr []string
			if c.xff != "" {
				hdr = []string{"X-Forwarded-For", c.xff}
			}
			if rec := f.authzFrom(c.peer, key, hdr...); rec.Code != c.want {
				t.Fatalf("%d, want %d", rec.Code, c.want)
			}
		})
	}
}

// A KeyPolicy for api.example.com accepting team-a's keys, with a per-key
// default limit and an allow-list.
func policyWithLimits(name, host string, rl *kw.RateLimit, cidrs ...kw.CIDR) *keypolicy.Policy {
	return keypolicy.Compile(&kw.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "billing", Name: name, Generation: 1},
		Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{kw.Hostname(host)}, Keys: &kw.KeyPolicyKeys{Namespaces: []string{"team-a"}},
			RateLimit: rl, AllowedCIDRs: cidrs},
	})
}

func (f *fixture) authzHost(host, key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/authz/", nil)
	r.Host, r.RemoteAddr = host, "10.1.1.1:1"
	r.Header.Set("Authorization", "Bearer "+key)
	return f.do(r)
}

// A KeyPolicy's default limits each key separately, per policy; a key's own
// limit counts across every API the key calls; when both are set, both
// apply (the stricter binds).
func TestPolicyDefaultAndTheKeysOwnLimitBothApply(t *testing.T) {
	f := newFixture(t)
	f.s.SetPolicies(keypolicy.NewTable([]*keypolicy.Policy{
		policyWithLimits("invoices", "invoices.example.com", &kw.RateLimit{Requests: 1, Period: metav1.Duration{Duration: time.Minute}}),
		policyWithLimits("reports", "reports.example.com", &kw.RateLimit{Requests: 10, Period: metav1.Duration{Duration: time.Minute}}),
		policyWithLimits("catalog", "catalog.example.com", nil),
	}))
	plain := f.apiKey("plain")
	other := f.apiKey("other")
	own := f.apiKey("own", limitOf(3, time.Minute))

	rec := f.authzHost("invoices.example.com", plain)
	if rec.Code != 200 || rec.Header().Get("RateLimit-Policy") != `"policy";q=1;w=60` {
		t.Fatalf("the policy's default: %d %q", rec.Code, rec.Header().Get("RateLimit-Policy"))
	}
	if rec := f.authzHost("invoices.example.com", plain); rec.Code != 429 {
		t.Fatalf("over the policy's default: %d, want 429", rec.Code)
	}
	if rec := f.authzHost("invoices.example.com", other); rec.Code != 200 {
		t.Fatalf("another key under the same policy has its own bucket: %d", rec.Code)
	}
	if rec := f.authzHost("reports.example.com", plain); rec.Code != 200 {
		t.Fatalf("the same key under another policy has another bucket: %d", rec.Code)
	}

	for i, c := range []struct{ host, policy string }{
		{"invoices.example.com", `"key";q=3;w=60, "policy";q=1;w=60`},
		{"reports.example.com", `"key";q=3;w=60, "policy";q=10;w=60`},
		{"catalog.example.com", `"key";q=3;w=60`},
	} {
		rec := f.authzHost(c.host, own)
		if rec.Code != 200 || rec.Header().Get("RateLimit-Policy") != c.policy {
			t.Fatalf("own limit, request %d at %s: %d %q", i+1, c.host, rec.Code, rec.Header().Get("RateLimit-Policy"))
		}
	}
	rec = f.authzHost("reports.example.com", own)
	if rec.Code != 429 || !strings.Contains(rec.Body.String(), "this key's rate limit") {
		t.Fatalf("the key's own limit counts across policies, under a laxer policy too: %d %s", rec.Code, rec.Body.String())
	}
	f.clock.Step(20 * time.Second) // one request of the key's own back; none of invoices' 1 a minute
	rec = f.authzHost("invoices.example.com", own)
	if rec.Code != 429 || !strings.Contains(rec.Body.String(), "KeyPolicy billing/invoices") || rec.Header().Get("Retry-After") != "40" {
		t.Fatalf("the policy's default holds beside the key's own: %d %v %s", rec.Code, rec.Header(), rec.Body.String())
	}
}

func TestPolicyAllowedCIDRs(t *testing.T) {
	f := newFixture(t)
	f.s.SetPolicies(keypolicy.NewTable([]*keypolicy.Policy{policyWithLimits("vpn", "vpn.example.com", nil, "192.0.2.0/24")}))
	key := f.apiKey("billing")
	r := httptest.NewRequest(http.MethodGet, "/v1/authz/", nil)
	r.Host, r.RemoteAddr = "vpn.example.com", outside
	r.Header.Set("Authorization", "Bearer "+key)
	rec := f.do(r)
	if rec.Code != 403 || rec.Header().Get(wire.HeaderCode) != "CIDR_NOT_ALLOWED" || rec.Header().Get(wire.HeaderPolicy) != "billing/vpn" {
		t.Fatalf("outside the policy's list: %d %v", rec.Code, rec.Header())
	}
	r = httptest.NewRequest(http.MethodGet, "/v1/authz/", nil)
	r.Host, r.RemoteAddr = "vpn.example.com", "192.0.2.44:1"
	r.Header.Set("Authorization", "Bearer "+key)
	if rec := f.do(r); rec.Code != 200 {
		t.Fatalf("inside the policy's list: %d", rec.Code)
	}
}

func (f *fixture) exchange(peer, ak, sk string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/v1/tokens", nil)
	r.RemoteAddr = peer
	r.SetBasicAuth(ak, sk)
	return f.do(r)
}

// A pair's budget is spent by its token exchanges and by its tokens'
// requests, together; its allow-list holds for both.
func TestTokenExchangeAndTokensSpendThePairsBudget(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("deployer", limitOf(3, time.Hour), cidrsOf("10.0.0.0/8"))
	rec := f.exchange("10.1.1.1:1", ak, sk)
	if rec.Code != 200 || rec.Header().Get("RateLimit") != `"key";r=2;t=1200` {
		t.Fatalf("exchange: %d %v", rec.Code, rec.Header())
	}
	var tok wire.TokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil {
		t.Fatal(err)
	}
	if rec := f.exchange(outside, ak, sk); rec.Code != 403 || !strings.Contains(rec.Body.String(), "cidr_not_allowed") {
		t.Fatalf("exchange from outside the allow-list: %d %s", rec.Code, rec.Body.String())
	}
	if rec := f.authzFrom(outside, tok.Token); rec.Code != 403 || rec.Header().Get(wire.HeaderCode) != "CIDR_NOT_ALLOWED" {
		t.Fatalf("the token from outside the pair's allow-list: %d", rec.Code)
	}
	for i := range 2 {
		if rec := f.authzFrom("10.1.1.1:1", tok.Token); rec.Code != 200 {
			t.Fatalf("token request %d: %d", i+1, rec.Code)
		}
	}
	if rec := f.authzFrom("10.1.1.1:1", tok.Token); rec.Code != 429 {
		t.Fatalf("the pair's fourth request: %d, want 429", rec.Code)
	}
	rec = f.exchange("10.1.1.1:1", ak, sk)
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "rate_limited") {
		t.Fatalf("an exchange over the pair's limit: %d %v %s", rec.Code, rec.Header(), rec.Body.String())
	}
	// Failed exchanges with the pair's access key id spend nothing.
	f.clock.Step(20 * time.Minute)
	for range 10 {
		f.exchange("10.1.1.1:1", ak, "wrong-secret-key-wrong-secret-key")
	}
	if rec := f.exchange("10.1.1.1:1", ak, sk); rec.Code != 200 {
		t.Fatalf("after failed exchanges: %d, want 200", rec.Code)
	}
}

func (f *fixture) verifyBody(peer string, req wire.VerifyRequest) (*httptest.ResponseRecorder, wire.VerifyResponse) {
	f.t.Helper()
	body, _ := json.Marshal(req)
	r := httptest.NewRequest(http.MethodPost, "/v1/verify", bytes.NewReader(body))
	r.RemoteAddr = peer
	r.Header.Set("Content-Type", "application/json")
	rec := f.do(r)
	var out wire.VerifyResponse
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

func TestVerifyAnswersRateLimitedWithTheResetTime(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", limitOf(1, time.Minute))
	if _, v := f.verifyBody(outside, wire.VerifyRequest{Key: key}); !v.Valid || v.RateLimit == nil || v.RateLimit.Remaining != 0 {
		t.Fatalf("first verify: %+v", v)
	}
	rec, v := f.verifyBody(outside, wire.VerifyRequest{Key: key})
	if v.Valid || v.Code != "RATE_LIMITED" || v.RetryAfter != 60 || rec.Header().Get("Retry-After") != "60" {
		t.Fatalf("second verify: %+v %v", v, rec.Header())
	}
	if v.RateLimit == nil || v.RateLimit.Remaining != 0 || v.RateLimit.Reset != 60 || v.RateLimit.Policy != "key" {
		t.Fatalf("the rate limit status of a refusal: %+v", v.RateLimit)
	}
	// A failed verify with the key's id spends nothing.
	f.clock.Step(time.Minute)
	for range 5 {
		f.verifyBody(outside, wire.VerifyRequest{Key: guessFor(t, keyIDOf(t, key))})
	}
	if _, v := f.verifyBody(outside, wire.VerifyRequest{Key: key}); !v.Valid {
		t.Fatalf("after failed verifies: %+v", v)
	}
}

// verify's caller may name the address of its own client: verify only
// answers, so a caller that lies about it fools itself alone. The failure
// limit still counts against the caller's own address.
func TestVerifyChecksTheClientAddressTheServiceNames(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", cidrsOf("10.0.0.0/8"))
	for addr, want := range map[string]string{"10.1.2.3": "VALID", "203.0.113.50": "CIDR_NOT_ALLOWED", "": "CIDR_NOT_ALLOWED"} {
		_, v := f.verifyBody(outside, wire.VerifyRequest{Key: key, ClientAddress: addr})
		if v.Code != want {
			t.Errorf("clientAddress %q: %+v, want %s", addr, v, want)
		}
	}
	if _, v := f.verifyBody("10.5.5.5:1", wire.VerifyRequest{Key: key}); v.Code != "VALID" {
		t.Errorf("no clientAddress: the peer's: %+v", v)
	}
	if rec, _ := f.verifyBody(outside, wire.VerifyRequest{Key: key, ClientAddress: "not-an-address"}); rec.Code != 400 {
		t.Errorf("a malformed clientAddress: %d, want 400", rec.Code)
	}
}

// Issue 15, attack 5 (anonymous, holding a leaked key restricted to an office
// network): use it from elsewhere through kube-apiserver, whose TokenReview
// carries no client address. A key with an allow-list is never
// authenticated there.
func TestAttack15x5AllowListedKeyThroughTokenReview(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", cidrsOf("10.0.0.0/8"))
	plain := f.apiKey("plain")
	if got := f.reviewStatus(key); got.Authenticated || !strings.Contains(got.Error, "allowedCIDRs") {
		t.Fatalf("a key with allowedCIDRs through TokenReview: %+v", got)
	}
	if got := f.reviewStatus(plain); !got.Authenticated {
		t.Fatalf("a key without an allow-list: %+v", got)
	}
}

// Issue 15, attack 6 (anonymous, holding a leaked key restricted to an office
// network): rotate it from elsewhere, taking its successor and locking the
// owner out when the grace period ends. Self-rotation checks the allow-list
// too.
func TestAttack15x6SelfRotatingAnAllowListedKeyFromElsewhere(t *testing.T) {
	f := newFixture(t, withRefusingRotator)
	key := f.apiKey("billing", cidrsOf("10.0.0.0/8"))
	r := httptest.NewRequest(http.MethodPost, "/v1/keys/current/rotate", nil)
	r.RemoteAddr = outside
	r.Header.Set("Authorization", "Bearer "+key)
	rec := f.do(r)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "cidr_not_allowed") {
		t.Fatalf("self-rotation from outside the allow-list: %d %s", rec.Code, rec.Body.String())
	}
}

// Issue 15, attack 7 (tenant): raise its own key's limit past the API
// owner's. Keys are the tenant's, KeyPolicies the API owner's: a key's own
// spec.rateLimit of 1000 a minute must not lift a policy's per-key 2 a
// minute. Both apply; the stricter binds.
func TestAttack15x7ATenantRaisesItsOwnLimitPastThePolicys(t *testing.T) {
	f := newFixture(t)
	f.s.SetPolicies(keypolicy.NewTable([]*keypolicy.Policy{
		policyWithLimits("invoices", "invoices.example.com",
			&kw.RateLimit{Requests: 2, Period: metav1.Duration{Duration: time.Minute}}),
		policyWithLimits("open", "open.example.com", nil),
	}))
	key := f.apiKey("greedy", limitOf(1000, time.Minute))
	for i := range 2 {
		if rec := f.authzHost("invoices.example.com", key); rec.Code != http.StatusOK {
			t.Fatalf("request %d under the policy: %d, want 200", i+1, rec.Code)
		}
	}
	rec := f.authzHost("invoices.example.com", key)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("the 3rd request in a minute under a policy of 2 a minute: %d, want 429 (the key's own 1000 a minute lifted the policy's)", rec.Code)
	}
	h := rec.Header()
	if h.Get("Retry-After") != "30" || h.Get(wire.HeaderCode) != "RATE_LIMITED" ||
		h.Get("RateLimit-Policy") != `"key";q=1000;w=60, "policy";q=2;w=60` ||
		h.Get("RateLimit") != `"key";r=997;t=1, "policy";r=0;t=30` {
		t.Errorf("429 headers: %v", h)
	}
	// Elsewhere, under a policy without a default, only its own limit.
	for i := range 5 {
		rec := f.authzHost("open.example.com", key)
		if rec.Code != http.StatusOK || rec.Header().Get("RateLimit-Policy") != `"key";q=1000;w=60` {
			t.Fatalf("request %d under a policy without a default: %d %v", i+1, rec.Code, rec.Header())
		}
	}
}

// The key's own limit still wins when it is the stricter: 1 a minute under
// a policy of 100 a minute refuses the 2nd request, by the key's limit, and
// the policy's budget is not spent by the refused request.
func TestTheKeysOwnStricterLimitBindsUnderAPolicy(t *testing.T) {
	f := newFixture(t)
	f.s.SetPolicies(keypolicy.NewTable([]*keypolicy.Policy{policyWithLimits("invoices", "invoices.example.com",
		&kw.RateLimit{Requests: 100, Period: metav1.Duration{Duration: time.Minute}})}))
	key := f.apiKey("modest", limitOf(1, time.Minute))
	rec := f.authzHost("invoices.example.com", key)
	if rec.Code != http.StatusOK || rec.Header().Get("RateLimit") != `"key";r=0;t=60, "policy";r=99;t=1` {
		t.Fatalf("first request: %d %v", rec.Code, rec.Header())
	}
	rec = f.authzHost("invoices.example.com", key)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "60" ||
		rec.Header().Get("RateLimit") != `"key";r=0;t=60` ||
		rec.Header().Get("RateLimit-Policy") != `"key";q=1;w=60, "policy";q=100;w=60` {
		t.Fatalf("second request: %d %v", rec.Code, rec.Header())
	}
}

// verify counts under both limits as forward-auth does; its rateLimit is
// the binding one (the refusing one, else the one with fewer left), and
// its headers list both.
func TestVerifyReportsTheBindingLimit(t *testing.T) {
	f := newFixture(t)
	f.s.SetPolicies(keypolicy.NewTable([]*keypolicy.Policy{policyWithLimits("invoices", "invoices.example.com",
		&kw.RateLimit{Requests: 2, Period: metav1.Duration{Duration: time.Minute}})}))
	key := f.apiKey("greedy", limitOf(1000, time.Minute))
	req := wire.VerifyRequest{Key: key, Policy: "billing/invoices"}
	rec, v := f.verifyBody(outside, req)
	if !v.Valid || v.RateLimit == nil || v.RateLimit.Policy != "policy" || v.RateLimit.Remaining != 1 ||
		rec.Header().Get("RateLimit") != `"key";r=999;t=1, "policy";r=1;t=30` {
		t.Fatalf("first verify: %+v %+v %v", v, v.RateLimit, rec.Header())
	}
	f.verifyBody(outside, req)
	rec, v = f.verifyBody(outside, req)
	if v.Valid || v.Code != "RATE_LIMITED" || v.RetryAfter != 30 || rec.Header().Get("Retry-After") != "30" ||
		!strings.Contains(v.Reason, "KeyPolicy billing/invoices") {
		t.Fatalf("third verify: %+v %v", v, rec.Header())
	}
	if v.RateLimit == nil || v.RateLimit.Policy != "policy" || v.RateLimit.Requests != 2 || v.RateLimit.Remaining != 0 || v.RateLimit.Reset != 30 {
		t.Fatalf("the rate limit status of the policy's refusal: %+v", v.RateLimit)
	}
	// Without a policy, only the key's own limit applies.
	if _, v := f.verifyBody(outside, wire.VerifyRequest{Key: key}); !v.Valid || v.RateLimit == nil || v.RateLimit.Policy != "key" {
		t.Fatalf("verify without a policy: %+v %+v", v, v.RateLimit)
	}
}

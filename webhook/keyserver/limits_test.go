package keyserver

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/allowlist"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/ratelimit"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func compiledPolicy(ns, name string, rl *kw.RateLimit, cidrs ...kw.CIDR) *keypolicy.Policy {
	return keypolicy.Compile(&kw.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1},
		Spec:       kw.KeyPolicySpec{Hosts: []kw.Hostname{"api.example.com"}, RateLimit: rl, AllowedCIDRs: cidrs},
	})
}

func TestAddressDecision(t *testing.T) {
	a := netip.MustParseAddr
	office := allowlist.Parse([]string{"10.0.0.0/8"})
	vpn := compiledPolicy("billing", "api", nil, "10.1.0.0/16", "192.0.2.0/24")
	open := compiledPolicy("billing", "open", nil)
	cases := map[string]struct {
		client netip.Addr
		key    allowlist.List
		policy *keypolicy.Policy
		want   keypolicy.Code
		by     keypolicy.Ref
	}{
		"no lists: any address":                          {a("198.51.100.1"), allowlist.List{}, nil, keypolicy.OK, keypolicy.Ref{}},
		"no lists: even an unknown address":              {netip.Addr{}, allowlist.List{}, open, keypolicy.OK, keypolicy.Ref{}},
		"the key's list allows":                          {a("10.9.9.9"), office, nil, keypolicy.OK, keypolicy.Ref{}},
		"the key's list refuses":                         {a("198.51.100.1"), office, nil, keypolicy.CIDRNotAllowed, keypolicy.Ref{}},
		"the policy's list refuses":                      {a("198.51.100.1"), allowlist.List{}, vpn, keypolicy.CIDRNotAllowed, vpn.Ref()},
		"both allow":                                     {a("10.1.2.3"), office, vpn, keypolicy.OK, keypolicy.Ref{}},
		"the key allows, the policy refuses: both must":  {a("10.2.0.1"), office, vpn, keypolicy.CIDRNotAllowed, vpn.Ref()},
		"the policy allows, the key refuses: both must":  {a("192.0.2.5"), office, vpn, keypolicy.CIDRNotAllowed, keypolicy.Ref{}},
		"an unknown client address is refused by a list": {netip.Addr{}, office, nil, keypolicy.CIDRNotAllowed, keypolicy.Ref{}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := addressDecision(c.client, c.key, c.policy)
			if d.Code != c.want || d.Policy != c.by {
				t.Fatalf("addressDecision = %s by %v (%q), want %s by %v", d.Code, d.Policy, d.Reason, c.want, c.by)
			}
			if c.want != keypolicy.OK && (d.Status != http.StatusForbidden || d.Reason == "") {
				t.Fatalf("a refusal needs 403 and a reason: %+v", d)
			}
		})
	}
}

func TestApplicableLimit(t *testing.T) {
	own := ratelimit.Limit{Requests: 10, Period: time.Minute}
	def := &kw.RateLimit{Requests: 1000, Period: metav1.Duration{Duration: time.Hour}, Burst: 50}
	withDefault := compiledPolicy("billing", "api", def)
	without := compiledPolicy("billing", "open", nil)
	key := keyindex.Result{Code: keyindex.Valid, Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "reporter"}
	limitedKey := key
	limitedKey.RateLimit = own
	pair := keyindex.Result{Code: keyindex.Valid, Kind: hashsecret.KindAccessKeyPair, Namespace: "team-a", Name: "alice-1"}
	cases := map[string]struct {
		res    keyindex.Result
		policy *keypolicy.Policy
		want   keyLimit
	}{
		"neither sets one: none":     {key, without, keyLimit{}},
		"no policy, no own: none":    {key, nil, keyLimit{}},
		"the key's own, no policy":   {limitedKey, nil, keyLimit{limit: own, bucket: "apikey/team-a/reporter", source: limitSourceKey}},
		"the key's own wins":         {limitedKey, withDefault, keyLimit{limit: own, bucket: "apikey/team-a/reporter", source: limitSourceKey}},
		"else the policy's default":  {key, withDefault, keyLimit{limit: ratelimit.Limit{Requests: 1000, Period: time.Hour, Burst: 50}, bucket: "policy/billing/api/apikey/team-a/reporter", source: limitSourcePolicy}},
		"a token counts as its pair": {pair, withDefault, keyLimit{limit: ratelimit.Limit{Requests: 1000, Period: time.Hour, Burst: 50}, bucket: "policy/billing/api/accesskeypair/team-a/alice-1", source: limitSourcePolicy}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := applicableLimit(c.res, c.policy); got != c.want {
				t.Fatalf("applicableLimit = %+v, want %+v", got, c.want)
			}
		})
	}
}

// Bucket names are made of the record's identity alone: two different
// records never share one, whatever their names, and no part of a secret or
// key id is in them.
func TestBucketNamesAreTheRecordsAndUnambiguous(t *testing.T) {
	seen := map[string]string{}
	for _, r := range []struct{ kind, ns, name string }{
		{hashsecret.KindAPIKey, "team-a", "x"},
		{hashsecret.KindAPIKey, "team-b", "x"},
		{hashsecret.KindAccessKeyPair, "team-a", "x"},
		{hashsecret.KindAPIKey, "team-a", "x.y"},
		{hashsecret.KindAPIKey, "team-ax", "y"},
	} {
		own := keyindex.Result{Kind: r.kind, Namespace: r.ns, Name: r.name, KeyID: "KEYIDKEYID12", RateLimit: ratelimit.Limit{Requests: 1, Period: time.Second}}
		byDefault := own
		byDefault.RateLimit = ratelimit.Limit{}
		policy := compiledPolicy("team-a", "p", &kw.RateLimit{Requests: 1, Period: metav1.Duration{Duration: time.Second}})
		for _, b := range []string{applicableLimit(own, nil).bucket, applicableLimit(byDefault, policy).bucket} {
			if prev, dup := seen[b]; dup || strings.Contains(b, own.KeyID) {
				t.Fatalf("bucket %q for %v and %s", b, r, prev)
			}
			seen[b] = r.kind + "/" + r.ns + "/" + r.name
		}
	}
}

func TestRateLimitHeaders(t *testing.T) {
	cases := map[string]struct {
		kl         keyLimit
		r          *ratelimit.Result
		policy, rl string
	}{
		"allowed: remaining and the seconds until the budget is whole": {
			keyLimit{limit: ratelimit.Limit{Requests: 100, Period: time.Minute}, source: limitSourceKey},
			&ratelimit.Result{Allowed: true, Remaining: 42, ResetAfter: 29200 * time.Millisecond},
			`"key";q=100;w=60`, `"key";r=42;t=30`},
		"refused: none remaining, t no later than Retry-After": {
			keyLimit{limit: ratelimit.Limit{Requests: 5, Period: time.Hour, Burst: 2}, source: limitSourcePolicy},
			&ratelimit.Result{RetryAfter: 719 * time.Second, ResetAfter: 1439 * time.Second},
			`"policy";q=5;w=3600;keyward-burst=2`, `"policy";r=0;t=719`},
		"not counted (a refusal before the budget): the policy alone": {
			keyLimit{limit: ratelimit.Limit{Requests: 1, Period: time.Second}, source: limitSourceKey}, nil,
			`"key";q=1;w=1`, ""},
		"no limit: no headers": {keyLimit{}, &ratelimit.Result{Allowed: true}, "", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			setRateLimitHeaders(h, c.kl, c.r)
			if got := h.Get("RateLimit-Policy"); got != c.policy {
				t.Errorf("RateLimit-Policy = %q, want %q", got, c.policy)
			}
			if got := h.Get("RateLimit"); got != c.rl {
				t.Errorf("RateLimit = %q, want %q", got, c.rl)
			}
		})
	}
}

// The checks run on every request: for a key without limits or lists they
// must cost no allocation (issue 15, item 6: the hot path).
func TestLimitChecksAllocateNothingForKeysWithoutLimits(t *testing.T) {
	res := keyindex.Result{Code: keyindex.Valid, Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "reporter"}
	p := compiledPolicy("billing", "open", nil)
	client := netip.MustParseAddr("203.0.113.7")
	allowed := allowlist.Parse([]string{"203.0.113.0/24"})
	if n := testing.AllocsPerRun(100, func() {
		_ = addressDecision(client, res.AllowedCIDRs, p)
		_ = addressDecision(client, allowed, nil)
		_ = applicableLimit(res, p)
	}); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

// BenchmarkAuthzLimits is GET /v1/authz for a key without limits, with a
// local rate limit, and with a 64-entry allow-list, through the whole
// handler (the cost of items 1 and 3 on the hot path).
func BenchmarkAuthzLimits(b *testing.B) {
	f := newFixture(&testing.T{})
	var cidrs []string
	for i := range 63 {
		cidrs = append(cidrs, netip.AddrFrom4([4]byte{10, byte(i), 0, 0}).String()+"/16")
	}
	cidrs = append(cidrs, "203.0.113.0/24")
	keys := []struct{ name, key string }{
		{"none", f.apiKey("plain")},
		{"local-rate-limit", f.apiKey("limited", limitOf(1_000_000_000, 24*time.Hour))},
		{"allowedCIDRs-64", f.apiKey("listed", cidrsOf(cidrs...))},
	}
	for _, k := range keys {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rec := f.authzFrom(outside, k.key); rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

package keyserver

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
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

func TestApplicableLimits(t *testing.T) {
	own := ratelimit.Limit{Requests: 10, Period: time.Minute}
	def := &kw.RateLimit{Requests: 1000, Period: metav1.Duration{Duration: time.Hour}, Burst: 50}
	withDefault := compiledPolicy("billing", "api", def)
	without := compiledPolicy("billing", "open", nil)
	key := keyindex.Result{Code: keyindex.Valid, Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "reporter"}
	limitedKey := key
	limitedKey.RateLimit = own
	pair := keyindex.Result{Code: keyindex.Valid, Kind: hashsecret.KindAccessKeyPair, Namespace: "team-a", Name: "alice-1"}
	ownLimit := keyLimit{limit: own, bucket: "apikey/team-a/reporter", source: limitSourceKey}
	policyLimit := keyLimit{limit: ratelimit.Limit{Requests: 1000, Period: time.Hour, Burst: 50}, source: limitSourcePolicy,
		policy: withDefault.Ref(), bucket: "policy/billing/api/apikey/team-a/reporter"}
	cases := map[string]struct {
		res    keyindex.Result
		policy *keypolicy.Policy
		want   keyLimits
	}{
		"neither sets one: none":                  {key, without, keyLimits{}},
		"no policy, no own: none":                 {key, nil, keyLimits{}},
		"the key's own, no policy":                {limitedKey, nil, keyLimits{own: ownLimit}},
		"the key's own, a policy without default": {limitedKey, without, keyLimits{own: ownLimit}},
		"both set: both apply":                    {limitedKey, withDefault, keyLimits{own: ownLimit, policy: policyLimit}},
		"the policy's default alone":              {key, withDefault, keyLimits{policy: policyLimit}},
		"a token counts as its pair": {pair, withDefault, keyLimits{policy: keyLimit{limit: policyLimit.limit, source: limitSourcePolicy,
			policy: withDefault.Ref(), bucket: "policy/billing/api/accesskeypair/team-a/alice-1"}}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := applicableLimits(c.res, c.policy); got != c.want {
				t.Fatalf("applicableLimits = %+v, want %+v", got, c.want)
			}
		})
	}
}

// Bucket names are made of the record's identity alone: two different
// records never share one, whatever their names, and no part of a secret or
// key id is in them.
func TestBucketNamesAreTheRecordsAndUnambiguous(t *testing.T) {
	seen := map[string]string{}
	policy := compiledPolicy("team-a", "p", &kw.RateLimit{Requests: 1, Period: metav1.Duration{Duration: time.Second}})
	for _, r := range []struct{ kind, ns, name string }{
		{hashsecret.KindAPIKey, "team-a", "x"},
		{hashsecret.KindAPIKey, "team-b", "x"},
		{hashsecret.KindAccessKeyPair, "team-a", "x"},
		{hashsecret.KindAPIKey, "team-a", "x.y"},
		{hashsecret.KindAPIKey, "team-ax", "y"},
	} {
		res := keyindex.Result{Kind: r.kind, Namespace: r.ns, Name: r.name, KeyID: "KEYIDKEYID12", RateLimit: ratelimit.Limit{Requests: 1, Period: time.Second}}
		both := applicableLimits(res, policy)
		for _, b := range []string{both.own.bucket, both.policy.bucket} {
			if prev, dup := seen[b]; dup || b == "" || strings.Contains(b, res.KeyID) {
				t.Fatalf("bucket %q for %v and %s", b, r, prev)
			}
			seen[b] = r.kind + "/" + r.ns + "/" + r.name
		}
	}
}

func TestRateLimitHeaders(t *testing.T) {
	own100 := keyLimit{limit: ratelimit.Limit{Requests: 100, Period: time.Minute}, source: limitSourceKey}
	policy5 := keyLimit{limit: ratelimit.Limit{Requests: 5, Period: time.Hour, Burst: 2}, source: limitSourcePolicy}
	counted := func(kl keyLimit, r ratelimit.Result) spentOne {
		return spentOne{keyLimit: kl, counted: true, result: r}
	}
	passed := ratelimit.Result{Allowed: true, Remaining: 42, ResetAfter: 29200 * time.Millisecond}
	refused := ratelimit.Result{RetryAfter: 719 * time.Second, ResetAfter: 1439 * time.Second}
	cases := map[string]struct {
		sp         spent
		policy, rl string
	}{
		"allowed: remaining and the seconds until the budget is whole": {
			spent{own: counted(own100, passed)}, `"key";q=100;w=60`, `"key";r=42;t=30`},
		"refused: none remaining, t no later than Retry-After": {
			spent{policy: counted(policy5, refused)}, `"policy";q=5;w=3600;keyward-burst=2`, `"policy";r=0;t=719`},
		"not counted (a refusal before the budget): the policy alone": {
			notSpent(keyLimits{own: keyLimit{limit: ratelimit.Limit{Requests: 1, Period: time.Second}, source: limitSourceKey}}),
			`"key";q=1;w=1`, ""},
		"both: one list item each, the key's first": {
			spent{own: counted(own100, passed), policy: counted(policy5, refused)},
			`"key";q=100;w=60, "policy";q=5;w=3600;keyward-burst=2`, `"key";r=42;t=30, "policy";r=0;t=719`},
		"the key's refused: the policy's not counted, listed in the policy alone": {
			spent{own: counted(own100, refused), policy: spentOne{keyLimit: policy5}},
			`"key";q=100;w=60, "policy";q=5;w=3600;keyward-burst=2`, `"key";r=0;t=719`},
		"no limit: no headers": {spent{}, "", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			writeRateLimitHeaders(h, c.sp)
			if got := h.Get("RateLimit-Policy"); got != c.policy {
				t.Errorf("RateLimit-Policy = %q, want %q", got, c.policy)
			}
			if got := h.Get("RateLimit"); got != c.rl {
				t.Errorf("RateLimit = %q, want %q", got, c.rl)
			}
		})
	}
}

// The binding limit, which Retry-After, the 429's reason and verify's
// rateLimit report: the refusing one, else the one with fewer left.
func TestBindingLimit(t *testing.T) {
	own := keyLimit{limit: ratelimit.Limit{Requests: 1000, Period: time.Minute}, source: limitSourceKey}
	pol := keyLimit{limit: ratelimit.Limit{Requests: 2, Period: time.Minute}, source: limitSourcePolicy}
	c := func(kl keyLimit, allowed bool, remaining int) spentOne {
		return spentOne{keyLimit: kl, counted: true, result: ratelimit.Result{Allowed: allowed, Remaining: remaining}}
	}
	cases := map[string]struct {
		sp   spent
		want string
	}{
		"the key's refused":                      {spent{own: c(own, false, 0), policy: spentOne{keyLimit: pol}}, limitSourceKey},
		"the policy's refused":                   {spent{own: c(own, true, 997), policy: c(pol, false, 0)}, limitSourcePolicy},
		"both pass: the policy's has fewer left": {spent{own: c(own, true, 997), policy: c(pol, true, 1)}, limitSourcePolicy},
		"both pass: the key's has fewer left":    {spent{own: c(own, true, 0), policy: c(pol, true, 1)}, limitSourceKey},
		"the key's alone":                        {spent{own: c(own, true, 5)}, limitSourceKey},
		"the policy's alone":                     {spent{policy: c(pol, true, 1)}, limitSourcePolicy},
		"the key's uncounted, the policy's counted": {
			spent{own: spentOne{keyLimit: own, result: ratelimit.Result{Allowed: true, Unchecked: true}}, policy: c(pol, true, 1)}, limitSourcePolicy},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := c.sp.binding().source; got != c.want {
				t.Fatalf("binding = %q, want %q", got, c.want)
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
	f, ctx := newFixture(t), context.Background()
	if n := testing.AllocsPerRun(100, func() {
		_ = addressDecision(client, res.AllowedCIDRs, p)
		_ = addressDecision(client, allowed, nil)
		_ = rateLimitHeaders(authzAnswer{rate: notSpent(applicableLimits(res, p))})
		_ = f.s.spend(ctx, applicableLimits(res, p))
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

// recordingStore answers from refuse and records the buckets it was asked.
type recordingStore struct {
	asked  []string
	refuse map[string]bool
}

func (s *recordingStore) Allow(_ context.Context, bucket string, _ ratelimit.Limit) (ratelimit.Result, error) {
	s.asked = append(s.asked, bucket)
	return ratelimit.Result{Allowed: !s.refuse[bucket], Remaining: 1, RetryAfter: time.Second}, nil
}

// The key's own bucket is spent first, then the policy's: a refusal by
// the first spends nothing of the second; a refusal by the second has
// spent one of the first. One limit costs one store call, none costs none.
func TestSpendOrder(t *testing.T) {
	policy := compiledPolicy("billing", "api", &kw.RateLimit{Requests: 2, Period: metav1.Duration{Duration: time.Minute}})
	res := keyindex.Result{Code: keyindex.Valid, Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "reporter"}
	limited := res
	limited.RateLimit = ratelimit.Limit{Requests: 1000, Period: time.Minute}
	const own, pol = "apikey/team-a/reporter", "policy/billing/api/apikey/team-a/reporter"
	cases := map[string]struct {
		res     keyindex.Result
		policy  *keypolicy.Policy
		refuse  string
		asked   []string
		allowed bool
	}{
		"no limit: no store call":                   {res, nil, "", nil, true},
		"the key's own alone: one call":             {limited, nil, "", []string{own}, true},
		"the policy's alone: one call":              {res, policy, "", []string{pol}, true},
		"both pass: the key's, then the policy's":   {limited, policy, "", []string{own, pol}, true},
		"the key's refuses: the policy's unspent":   {limited, policy, own, []string{own}, false},
		"the policy's refuses: the key's was spent": {limited, policy, pol, []string{own, pol}, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			store := &recordingStore{refuse: map[string]bool{c.refuse: true}}
			f := newFixture(t, func(o *Options) { o.RateLimits = store })
			sp := f.s.spend(context.Background(), applicableLimits(c.res, c.policy))
			if !slices.Equal(store.asked, c.asked) || sp.allowed() != c.allowed {
				t.Fatalf("asked %v, allowed %v; want %v, %v", store.asked, sp.allowed(), c.asked, c.allowed)
			}
			if !c.allowed && sp.binding().bucket != c.refuse {
				t.Fatalf("binding %q, want the refusing %q", sp.binding().bucket, c.refuse)
			}
		})
	}
}

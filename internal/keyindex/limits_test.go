package keyindex_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/ratelimit"
)

// A record's rate limit and allow-list reach every valid Result for it —
// an API key, an access key, a token's pair — and change with the record
// alone: the same version, upserted with other limits, answers with them.
func TestResultsCarryTheRecordsLimits(t *testing.T) {
	x := keyindex.New()
	key := generate(t, "kw")
	rec := apiKeyRecord("team-a", "billing", versionOf(key, t0.Add(-time.Hour), nil))
	rec.RateLimit = &hashsecret.RateLimit{Requests: 100, Period: time.Minute, Burst: 10}
	rec.AllowedCIDRs = []string{"10.0.0.0/8", "192.0.2.7"}
	mustUpsert(t, x, rec)

	id, secret := accessKey(t)
	pair := pairRecord("team-a", "deployer", id, secret, t0.Add(-time.Hour), nil)
	pair.RateLimit = &hashsecret.RateLimit{Requests: 5, Period: time.Second}
	pair.AllowedCIDRs = []string{"2001:db8::/32"}
	mustUpsert(t, x, pair)

	inside, outside := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.8")
	res := x.ValidateAPIKey(key.String(), t0)
	if want := (ratelimit.Limit{Requests: 100, Period: time.Minute, Burst: 10}); res.RateLimit != want {
		t.Errorf("API key RateLimit = %+v, want %+v", res.RateLimit, want)
	}
	if !res.AllowedCIDRs.Allows(inside) || res.AllowedCIDRs.Allows(outside) {
		t.Errorf("API key AllowedCIDRs allow %v: %v, %v: %v", inside, res.AllowedCIDRs.Allows(inside), outside, res.AllowedCIDRs.Allows(outside))
	}

	v6 := netip.MustParseAddr("2001:db8::5")
	ak, _ := x.ValidateAccessKey(id, secret, t0)
	tok, ok := x.PairIdentity("team-a", "deployer", id, t0)
	for name, r := range map[string]keyindex.Result{"access key": ak, "token's pair": tok} {
		if !ok || r.Code != keyindex.Valid {
			t.Fatalf("%s: %v", name, r.Code)
		}
		if want := (ratelimit.Limit{Requests: 5, Period: time.Second}); r.RateLimit != want {
			t.Errorf("%s RateLimit = %+v, want %+v", name, r.RateLimit, want)
		}
		if !r.AllowedCIDRs.Allows(v6) || r.AllowedCIDRs.Allows(inside) {
			t.Errorf("%s AllowedCIDRs judged wrongly", name)
		}
	}

	// The limits change; the version does not.
	rec.RateLimit, rec.AllowedCIDRs = nil, nil
	mustUpsert(t, x, rec)
	res = x.ValidateAPIKey(key.String(), t0)
	if res.Code != keyindex.Valid || !res.RateLimit.IsZero() || res.AllowedCIDRs.IsSet() {
		t.Errorf("after the limits were removed: %v, %+v, set %v", res.Code, res.RateLimit, res.AllowedCIDRs.IsSet())
	}
}

// A failure carries nothing of the record, its limits included.
func TestFailuresCarryNoLimits(t *testing.T) {
	x := keyindex.New()
	key := generate(t, "kw")
	rec := apiKeyRecord("team-a", "billing", versionOf(key, t0.Add(-time.Hour), nil))
	rec.RateLimit = &hashsecret.RateLimit{Requests: 1, Period: time.Second}
	rec.AllowedCIDRs = []string{"10.0.0.0/8"}
	rec.Suspended = true
	mustUpsert(t, x, rec)
	res := x.ValidateAPIKey(key.String(), t0)
	if res.Code != keyindex.Suspended || !res.RateLimit.IsZero() || res.AllowedCIDRs.IsSet() {
		t.Errorf("a suspended key's result carries %+v, set %v", res.RateLimit, res.AllowedCIDRs.IsSet())
	}
}

// A record whose limit cannot be counted (not written by today's
// controller) has none, and one whose allow-list cannot be read allows no
// address: a record must not widen what its key may do.
func TestUnreadableLimitsOfARecord(t *testing.T) {
	x := keyindex.New()
	key := generate(t, "kw")
	rec := apiKeyRecord("team-a", "billing", versionOf(key, t0.Add(-time.Hour), nil))
	rec.RateLimit = &hashsecret.RateLimit{Requests: 0, Period: time.Minute}
	rec.AllowedCIDRs = []string{"ten.zero.zero.zero/8"}
	mustUpsert(t, x, rec)
	res := x.ValidateAPIKey(key.String(), t0)
	if !res.RateLimit.IsZero() {
		t.Errorf("RateLimit = %+v, want none", res.RateLimit)
	}
	if !res.AllowedCIDRs.IsSet() || res.AllowedCIDRs.Allows(netip.MustParseAddr("10.0.0.1")) {
		t.Error("an unreadable allow-list allowed an address")
	}
}

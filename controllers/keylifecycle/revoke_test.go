package keylifecycle

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

// revocable is a record with a current version "cur", previous versions
// "p1" and "p2" in their grace, and "gone", retired and ended.
func revocable() *hashsecret.Record {
	return &hashsecret.Record{
		Current:  &hashsecret.Version{ID: "cur", Hash: "h0", NotBefore: t0},
		Previous: []hashsecret.Version{{ID: "p1", Hash: "h1", NotAfter: after(time.Hour)}, {ID: "p2", Hash: "h2", NotAfter: after(2 * time.Hour)}},
		Retired:  []string{"p1", "p2", "gone"},
	}
}

func ids(vs []hashsecret.Version) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.ID)
	}
	return out
}

func TestPlanRevocation(t *testing.T) {
	cases := map[string]struct {
		rec     *hashsecret.Record
		listed  []string
		revoke  []string
		current string
		unknown []string
	}{
		"nothing listed: nothing to do":                           {rec: revocable()},
		"a previous version in its grace is revoked":              {rec: revocable(), listed: []string{"p2"}, revoke: []string{"p2"}},
		"the current version is refused, never revoked":           {rec: revocable(), listed: []string{"cur"}, current: "cur"},
		"a version that already ended needs nothing":              {rec: revocable(), listed: []string{"gone"}},
		"another key's id is unknown here and changes nothing":    {rec: revocable(), listed: []string{"elsewhere"}, unknown: []string{"elsewhere"}},
		"no record yet: every id is unknown":                      {listed: []string{"p1"}, unknown: []string{"p1"}},
		"a revoked id listed again is a version that ended":       {rec: revokedP1(), listed: []string{"p1"}},
		"each kind of id at once, previous ones in record order":  {rec: revocable(), listed: []string{"x", "p2", "cur", "p1", "gone"}, revoke: []string{"p1", "p2"}, current: "cur", unknown: []string{"x"}},
		"an id listed twice counts once":                          {rec: revocable(), listed: []string{"p1", "p1", "y", "y"}, revoke: []string{"p1"}, unknown: []string{"y"}},
		"a record without a current version: previous ones still": {rec: withoutCurrent(), listed: []string{"p1", "cur"}, revoke: []string{"p1"}, unknown: []string{"cur"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := PlanRevocation(c.rec, c.listed)
			if !slices.Equal(ids(got.Revoke), c.revoke) || got.Current != c.current || !slices.Equal(got.Unknown, c.unknown) {
				t.Fatalf("PlanRevocation = revoke %v, current %q, unknown %v; want %v, %q, %v", ids(got.Revoke), got.Current, got.Unknown, c.revoke, c.current, c.unknown)
			}
			if got.Requested != (len(c.listed) > 0) {
				t.Fatalf("Requested = %v with %d ids listed", got.Requested, len(c.listed))
			}
		})
	}
}

func revokedP1() *hashsecret.Record {
	rec := revocable()
	rec.Previous = rec.Previous[1:]
	return rec
}

func withoutCurrent() *hashsecret.Record {
	rec := revocable()
	rec.Current = nil
	return rec
}

func TestRevocationApply(t *testing.T) {
	t.Run("the revoked versions leave the record, and are kept as retired", func(t *testing.T) {
		cached := revocable()
		cached.Retired = []string{"p1", "gone"} // p2 fell off the bounded list
		rec := *cached
		rec.Previous = slices.Clone(cached.Previous) // what a reconcile's copy shares with the cache
		PlanRevocation(&rec, []string{"p2", "cur"}).Apply(&rec)
		if got := ids(rec.Previous); !slices.Equal(got, []string{"p1"}) || rec.Current == nil || rec.Current.ID != "cur" {
			t.Fatalf("after Apply: current %v, previous %v; want cur, [p1]", rec.Current, got)
		}
		if !slices.Equal(rec.Retired, []string{"p2", "p1", "gone"}) {
			t.Fatalf("Retired = %v: a revoked id must be known as old, or a stale delivery of it could be adopted", rec.Retired)
		}
		if !slices.Equal(cached.Retired, []string{"p1", "gone"}) {
			t.Fatalf("Apply changed the cached record's Retired: %v", cached.Retired)
		}
	})
	t.Run("the retired list stays bounded", func(t *testing.T) {
		rec := revocable()
		rec.Retired = nil
		for i := range hashsecret.MaxVersions {
			rec.Retired = append(rec.Retired, strings.Repeat("r", i+1))
		}
		PlanRevocation(rec, []string{"p1"}).Apply(rec)
		if len(rec.Retired) != hashsecret.MaxVersions || rec.Retired[0] != "p1" {
			t.Fatalf("Retired = %v, want p1 first and %d ids", rec.Retired, hashsecret.MaxVersions)
		}
		if _, err := hashsecret.Encode(rec); err != nil {
			t.Fatalf("the record no longer encodes: %v", err)
		}
	})
	t.Run("an id already retired is not listed twice", func(t *testing.T) {
		rec := revocable()
		PlanRevocation(rec, []string{"p2"}).Apply(rec)
		if !slices.Equal(rec.Retired, []string{"p1", "p2", "gone"}) {
			t.Fatalf("Retired = %v", rec.Retired)
		}
	})
}

func TestRevocationCondition(t *testing.T) {
	cases := map[string]struct {
		rv      Revocation
		absent  bool
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		"nothing listed: no condition": {absent: true},
		"every listed id is refused": {
			rv:     Revocation{Requested: true, Revoke: []hashsecret.Version{{ID: "p1"}}},
			status: metav1.ConditionTrue, reason: kw.ReasonRevoked, message: "no edition listed in spec.revokedKeyIDs validates",
		},
		"unknown ids are named, since a typo would leave the meant one valid": {
			rv:     Revocation{Requested: true, Unknown: []string{"x", "y"}},
			status: metav1.ConditionTrue, reason: kw.ReasonRevoked,
			message: "no edition listed in spec.revokedKeyIDs validates; x, y: no edition of this thing has that id, nothing was revoked under it",
		},
		"the current version is refused: rotate first": {
			rv:     Revocation{Requested: true, Current: "cur", Unknown: []string{"x"}},
			status: metav1.ConditionFalse, reason: kw.ReasonRevokeRefused,
			message: "cur is the current edition and still validates: the current edition is never revoked; rotate first " +
				"(it is revoked at once when a rotation replaces it), or suspend or delete the thing to stop it now; " +
				"x: no edition of this thing has that id, nothing was revoked under it",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := RevocationCondition(c.rv, words)
			if ok == c.absent {
				t.Fatalf("RevocationCondition present = %v, want %v", ok, !c.absent)
			}
			if c.absent {
				return
			}
			if got.Type != kw.ConditionKeyIDsRevoked || got.Status != c.status || got.Reason != c.reason || got.Message != c.message {
				t.Fatalf("condition = %s %s/%s %q, want %s/%s %q", got.Type, got.Status, got.Reason, got.Message, c.status, c.reason, c.message)
			}
		})
	}
}

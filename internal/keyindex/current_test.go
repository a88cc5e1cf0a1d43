package keyindex_test

import (
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
)

func TestCurrentVersionIsTheRecordsCurrentOnly(t *testing.T) {
	x := keyindex.New()
	cur, old := generate(t, "kw"), generate(t, "kw")
	mustUpsert(t, x, apiKeyRecord("team-a", "billing", versionOf(cur, t0, nil), versionOf(old, t0.Add(-time.Hour), at(time.Hour))))
	onlyOld := apiKeyRecord("team-a", "retired", versionOf(old, t0, nil))
	onlyOld.Previous, onlyOld.Current = []hashsecret.Version{*onlyOld.Current}, nil
	mustUpsert(t, x, onlyOld)

	id, nb, ok := x.CurrentVersion(hashsecret.KindAPIKey, "team-a", "billing")
	if !ok || id != cur.ID || !nb.Equal(t0) {
		t.Fatalf("got %q %v %v, want the current version %q issued at %v", id, nb, ok, cur.ID, t0)
	}
	for name, c := range map[string]struct{ kind, ns, name string }{
		"no current version": {hashsecret.KindAPIKey, "team-a", "retired"},
		"another namespace":  {hashsecret.KindAPIKey, "team-b", "billing"},
		"another kind":       {hashsecret.KindAccessKeyPair, "team-a", "billing"},
		"unknown":            {hashsecret.KindAPIKey, "team-a", "nobody"},
	} {
		if id, _, ok := x.CurrentVersion(c.kind, c.ns, c.name); ok {
			t.Errorf("%s: got %q", name, id)
		}
	}
	x.Delete(hashName(hashsecret.KindAPIKey, "team-a", "billing"))
	if _, _, ok := x.CurrentVersion(hashsecret.KindAPIKey, "team-a", "billing"); ok {
		t.Error("a deleted record still has a current version")
	}
}

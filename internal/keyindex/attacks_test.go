package keyindex_test

import (
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
)

// Attack 2 (issue 12): a tenant imports another key's delivery Secret into a
// suspended (or ReadOnly, or short-lived) APIKey of its own. The controllers
// refuse such an import; should a record binding the same secret reach the
// index anyway (one written before the fix, or by two imports racing), the
// key that was bound first keeps answering, whatever order the key server
// indexed them in.
func TestAttack2ShadowingAnotherKeyThroughImportFrom(t *testing.T) {
	victimKey := generate(t, "kw")
	victim := apiKeyRecord("team-a", "victim", versionOf(victimKey, t0.Add(-time.Hour), nil))
	shadowing := func(v hashsecret.Version) *hashsecret.Record {
		r := apiKeyRecord("team-b", "shadow", v)
		r.Suspended = true
		return r
	}
	// As controllers stored the import before the fix (the key's own id)...
	legacyShadow := shadowing(hashsecret.Version{ID: victimKey.ID, Hash: victimKey.SecretHash(), NotBefore: t0.Add(-time.Minute), Hint: hashsecret.HintImported})
	// ... and as they store imports now (a random id, found by hash).
	randomShadow := shadowing(hashsecret.Version{ID: "R4nd0mIdAbCd", Hash: victimKey.SecretHash(), NotBefore: t0.Add(-time.Minute),
		Hint: hashsecret.HintImported, Lookup: hashsecret.LookupSecretHash})
	// Two imports of one foreign key: the earlier binding wins.
	const foreign = "Zm9vYmFyLWJhei1xdXV4LXNlY3JldC1rZXk-_A1b"
	firstImport := apiKeyRecord("team-a", "first", hashsecret.Version{ID: "F1rstIdAbCdE", Hash: keymaterial.Hash(foreign),
		NotBefore: t0.Add(-time.Hour), Hint: hashsecret.HintImported, Lookup: hashsecret.LookupHash})
	secondImport := shadowing(hashsecret.Version{ID: "S3condIdAbCd", Hash: keymaterial.Hash(foreign),
		NotBefore: t0.Add(-time.Minute), Hint: hashsecret.HintImported, Lookup: hashsecret.LookupHash})
	sameInstant := shadowing(hashsecret.Version{ID: "S4meIdAbCdEf", Hash: keymaterial.Hash(foreign),
		NotBefore: t0.Add(-time.Hour), Hint: hashsecret.HintImported, Lookup: hashsecret.LookupHash})
	sameInstant.Namespace = "team-z" // a tie is broken by namespace and name: "team-a/first" first

	for name, tc := range map[string]struct {
		order    []*hashsecret.Record
		key      string
		wantName string
	}{
		"a shadow with the victim's id, indexed after the victim":  {[]*hashsecret.Record{victim, legacyShadow}, victimKey.String(), "victim"},
		"a shadow with the victim's id, indexed before the victim": {[]*hashsecret.Record{legacyShadow, victim}, victimKey.String(), "victim"},
		"a shadow found by hash, indexed after the victim":         {[]*hashsecret.Record{victim, randomShadow}, victimKey.String(), "victim"},
		"a shadow found by hash, indexed before the victim":        {[]*hashsecret.Record{randomShadow, victim}, victimKey.String(), "victim"},
		"a second import of a foreign key, indexed after":          {[]*hashsecret.Record{firstImport, secondImport}, foreign, "first"},
		"a second import of a foreign key, indexed before":         {[]*hashsecret.Record{secondImport, firstImport}, foreign, "first"},
		"two imports bound at the same instant, one order":         {[]*hashsecret.Record{firstImport, sameInstant}, foreign, "first"},
		"two imports bound at the same instant, the other order":   {[]*hashsecret.Record{sameInstant, firstImport}, foreign, "first"},
	} {
		t.Run(name, func(t *testing.T) {
			x := keyindex.New()
			for _, r := range tc.order {
				mustUpsert(t, x, r)
			}
			got := x.ValidateAPIKey(tc.key, t0)
			if got.Code != keyindex.Valid || got.Name != tc.wantName {
				t.Fatalf("the key answers %s for %s/%s, want VALID for %s", got.Code, got.Namespace, got.Name, tc.wantName)
			}
		})
	}

	t.Run("the shadow takes nothing over when it is re-indexed", func(t *testing.T) {
		x := keyindex.New()
		mustUpsert(t, x, victim)
		mustUpsert(t, x, randomShadow)
		mustUpsert(t, x, legacyShadow)
		mustUpsert(t, x, randomShadow)
		if got := x.ValidateAPIKey(victimKey.String(), t0); got.Code != keyindex.Valid || got.Name != "victim" {
			t.Fatalf("got %s %s", got.Code, got.Name)
		}
		x.Delete(hashName(hashsecret.KindAPIKey, "team-b", "shadow"))
		if got := x.ValidateAPIKey(victimKey.String(), t0); got.Code != keyindex.Valid || got.Name != "victim" {
			t.Fatalf("after the shadow's deletion: got %s %s", got.Code, got.Name)
		}
	})
}

// Attack 3 (issue 12): nothing public derives from an imported key. Imported
// versions carry a random id and are found by the hash of what is presented,
// hashed once; records written before, with an id derived from the key, keep
// validating.
func TestAttack3HashOracleThroughImportFrom(t *testing.T) {
	const foreign = "Zm9vYmFyLWJhei1xdXV4LXNlY3JldC1rZXk-_A1b"
	const legacyForeign = "Lg7-Zq2xP9rT4mW8vK1nB6yH3cJ5sD0fA_eU"
	migrated := generate(t, "acme")
	legacyMigrated := generate(t, "acme")
	x := keyindex.New()
	mustUpsert(t, x, apiKeyRecord("team-b", "legacy", hashsecret.Version{ID: "Q8ZfT2mWx0Lb", Hash: keymaterial.Hash(foreign),
		NotBefore: t0.Add(-time.Hour), Hint: hashsecret.HintImported, Lookup: hashsecret.LookupHash}))
	mustUpsert(t, x, apiKeyRecord("team-b", "migrated", hashsecret.Version{ID: "M1gr4tedAbCd", Hash: migrated.SecretHash(),
		NotBefore: t0.Add(-time.Hour), Hint: hashsecret.HintImported, Lookup: hashsecret.LookupSecretHash}))
	// Written by an earlier Keyward: ids derived from the key, or its own.
	mustUpsert(t, x, apiKeyRecord("team-c", "old-legacy", hashsecret.Version{ID: legacyImportedID(legacyForeign),
		Hash: keymaterial.Hash(legacyForeign), NotBefore: t0.Add(-time.Hour), Hint: hashsecret.HintImported}))
	mustUpsert(t, x, apiKeyRecord("team-c", "old-migrated", hashsecret.Version{ID: legacyMigrated.ID,
		Hash: legacyMigrated.SecretHash(), NotBefore: t0.Add(-time.Hour), Hint: hashsecret.HintImported}))

	for name, tc := range map[string]struct {
		key       string
		want      Code
		wantName  string
		wantKeyID string
	}{
		"an imported key is found by its hash and reports its random id":  {foreign, keyindex.Valid, "legacy", "Q8ZfT2mWx0Lb"},
		"an imported Keyward-format key is found by its secret's hash":    {migrated.String(), keyindex.Valid, "migrated", "M1gr4tedAbCd"},
		"an import recorded with a derived id keeps validating":           {legacyForeign, keyindex.Valid, "old-legacy", legacyImportedID(legacyForeign)},
		"an import recorded with the key's own id keeps validating":       {legacyMigrated.String(), keyindex.Valid, "old-migrated", legacyMigrated.ID},
		"a changed imported key is an invalid format":                     {foreign[:len(foreign)-1] + "c", keyindex.InvalidFormat, "", ""},
		"the secret part of an imported Keyward key alone is not the key": {secretOf(migrated), keyindex.InvalidFormat, "", ""},
		"the imported Keyward key with another secret is not found":       {withChecksum("acme_" + migrated.ID + "_" + secretOf(legacyMigrated)[1:] + "x"), keyindex.NotFound, "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			got := x.ValidateAPIKey(tc.key, t0)
			if got.Code != tc.want || got.Name != tc.wantName || got.KeyID != tc.wantKeyID {
				t.Fatalf("got %s %s/%s id %q, want %s %s id %q", got.Code, got.Namespace, got.Name, got.KeyID, tc.want, tc.wantName, tc.wantKeyID)
			}
		})
	}
}

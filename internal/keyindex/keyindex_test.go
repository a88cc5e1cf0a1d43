package keyindex_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
)

func TestValidateAPIKey(t *testing.T) {
	x := keyindex.New()

	// billing has a current version and a rotated-out one in its grace
	// period, and expires as a whole a day after t0.
	cur, prev := generate(t, "kw"), generate(t, "kw")
	billing := apiKeyRecord("team-a", "billing", versionOf(cur, t0.Add(-time.Hour), at(24*time.Hour)),
		versionOf(prev, t0.Add(-48*time.Hour), at(time.Hour)))
	billing.ExpiresAt = at(24 * time.Hour)
	mustUpsert(t, x, billing)

	future := generate(t, "kw")
	mustUpsert(t, x, apiKeyRecord("team-a", "future", versionOf(future, t0.Add(time.Hour), nil)))

	paused := generate(t, "kw")
	pausedRec := apiKeyRecord("team-a", "paused", versionOf(paused, t0.Add(-time.Hour), nil))
	pausedRec.Suspended = true
	mustUpsert(t, x, pausedRec)

	// ended expires as a whole at t0, while its version has no end of its own.
	ended := generate(t, "kw")
	endedRec := apiKeyRecord("team-b", "ended", versionOf(ended, t0.Add(-time.Hour), nil))
	endedRec.ExpiresAt = at(0)
	mustUpsert(t, x, endedRec)

	// Imported keys are stored the way the APIKey controller stores them:
	// under a random id, found by the hash of the whole key, or, for a key
	// in Keyward's format (say, from another cluster), of its secret part.
	const imported = "Zm9vYmFyLWJhei1xdXV4LXNlY3JldC1rZXk-_A1b"
	importedV := importedVersion(t, imported, t0.Add(-time.Hour))
	mustUpsert(t, x, apiKeyRecord("team-b", "legacy", importedV))
	migrated := generate(t, "acme")
	migratedV := importedVersion(t, migrated.String(), t0.Add(-time.Hour))
	mustUpsert(t, x, apiKeyRecord("team-b", "migrated", migratedV))

	// An access key pair whose version happens to look like an API key's.
	pairKey := generate(t, "kw")
	pair := apiKeyRecord("team-a", "pair", versionOf(pairKey, t0.Add(-time.Hour), nil))
	pair.Kind = hashsecret.KindAccessKeyPair
	mustUpsert(t, x, pair)

	unknown := generate(t, "kw")
	wrongSecret := withChecksum("kw_" + cur.ID + "_" + secretOf(unknown))
	badChecksum := cur.String()[:len(cur.String())-1] + "x"
	if badChecksum == cur.String() {
		badChecksum = cur.String()[:len(cur.String())-1] + "y"
	}

	for name, tc := range map[string]struct {
		key        string
		now        time.Time
		want       Code
		wantName   string
		wantKeyID  string
		wantNSpace string
	}{
		"the current version is valid":                                      {key: cur.String(), now: t0, want: keyindex.Valid, wantName: "billing", wantKeyID: cur.ID},
		"a rotated-out version is valid a nanosecond before its NotAfter":   {key: prev.String(), now: t0.Add(time.Hour - 1), want: keyindex.Valid, wantName: "billing", wantKeyID: prev.ID},
		"a rotated-out version is expired exactly at its NotAfter":          {key: prev.String(), now: t0.Add(time.Hour), want: keyindex.Expired},
		"a rotated-out version is expired after its NotAfter":               {key: prev.String(), now: t0.Add(2 * time.Hour), want: keyindex.Expired},
		"the current version is still valid after the previous one expired": {key: cur.String(), now: t0.Add(2 * time.Hour), want: keyindex.Valid, wantName: "billing"},
		"a key is valid a nanosecond before the record expires":             {key: cur.String(), now: t0.Add(24*time.Hour - 1), want: keyindex.Valid, wantName: "billing"},
		"a key is expired exactly when the record expires":                  {key: cur.String(), now: t0.Add(24 * time.Hour), want: keyindex.Expired},
		"a record's expiry applies even to a version without NotAfter":      {key: ended.String(), now: t0, want: keyindex.Expired},
		"the record's expiry is judged by the now argument only":            {key: ended.String(), now: t0.Add(-1), want: keyindex.Valid, wantName: "ended", wantNSpace: "team-b"},
		"a version is not yet valid before its NotBefore":                   {key: future.String(), now: t0.Add(time.Hour - 1), want: keyindex.NotYetValid},
		"a version is valid exactly at its NotBefore":                       {key: future.String(), now: t0.Add(time.Hour), want: keyindex.Valid, wantName: "future"},
		"a suspended key is suspended":                                      {key: paused.String(), now: t0, want: keyindex.Suspended},
		"an imported key validates, with its random id":                     {key: imported, now: t0, want: keyindex.Valid, wantName: "legacy", wantKeyID: importedV.ID, wantNSpace: "team-b"},
		"an imported key in Keyward format validates, with its random id":   {key: migrated.String(), now: t0, want: keyindex.Valid, wantName: "migrated", wantKeyID: migratedV.ID, wantNSpace: "team-b"},

		"an unknown well-formed key is not found":                    {key: unknown.String(), now: t0, want: keyindex.NotFound},
		"a known id with a wrong secret is not found":                {key: wrongSecret, now: t0, want: keyindex.NotFound},
		"a wrong secret for a suspended key does not tell":           {key: withChecksum("kw_" + paused.ID + "_" + secretOf(unknown)), now: t0, want: keyindex.NotFound},
		"a wrong secret for an expired key does not tell":            {key: withChecksum("kw_" + ended.ID + "_" + secretOf(unknown)), now: t0, want: keyindex.NotFound},
		"a right secret under another prefix still matches":          {key: withChecksum("other_" + cur.ID + "_" + secretOf(cur)), now: t0, want: keyindex.Valid, wantName: "billing"},
		"an access key pair's version does not validate as API key":  {key: pairKey.String(), now: t0, want: keyindex.NotFound},
		"a one-character change of a valid key is an invalid format": {key: badChecksum, now: t0, want: keyindex.InvalidFormat},
		"a changed imported key is an invalid format":                {key: imported[:len(imported)-1] + "c", now: t0, want: keyindex.InvalidFormat},
		"an unknown importable string is an invalid format":          {key: strings.Repeat("aB3$xY7!qZ", 4), now: t0, want: keyindex.InvalidFormat},
		"an empty key is an invalid format":                          {key: "", now: t0, want: keyindex.InvalidFormat},
		"a short string is an invalid format":                        {key: "hunter2", now: t0, want: keyindex.InvalidFormat},
		"an imported key with a space is an invalid format":          {key: imported[:10] + " " + imported[11:], now: t0, want: keyindex.InvalidFormat},
		"a 513-character string is an invalid format":                {key: strings.Repeat("aB3$xY7!qZ", 51) + "Q9z", now: t0, want: keyindex.InvalidFormat},
		"a huge string is an invalid format":                         {key: strings.Repeat("x", 1<<20), now: t0, want: keyindex.InvalidFormat},
	} {
		t.Run(name, func(t *testing.T) {
			got := x.ValidateAPIKey(tc.key, tc.now)
			if got.Code != tc.want {
				t.Fatalf("Code = %s, want %s", got.Code, tc.want)
			}
			if tc.want != keyindex.Valid {
				if !isBare(got) {
					t.Errorf("a %s result carries an identity: %+v", got.Code, got)
				}
				return
			}
			wantNS := tc.wantNSpace
			if wantNS == "" {
				wantNS = "team-a"
			}
			if got.Name != tc.wantName || got.Namespace != wantNS || got.Kind != hashsecret.KindAPIKey {
				t.Errorf("identity = %s %s/%s, want apikey %s/%s", got.Kind, got.Namespace, got.Name, wantNS, tc.wantName)
			}
			if tc.wantKeyID != "" && got.KeyID != tc.wantKeyID {
				t.Errorf("KeyID = %q, want %q", got.KeyID, tc.wantKeyID)
			}
		})
	}
}

// Code aliases keyindex.Code to keep the tables readable.
type Code = keyindex.Code

func isBare(r keyindex.Result) bool {
	return r.Kind == "" && r.Namespace == "" && r.Name == "" && r.Subject == "" && r.KeyID == "" &&
		r.Access == "" && r.Groups == nil && r.Scopes == nil && r.ExpiresAt == nil
}

func TestKeywardFormatKeysAreHashedOnceByTheirSecretPart(t *testing.T) {
	// A Keyward-format key stored as if it were a foreign import (by the
	// hash of the whole key) is not how controllers store it, and does not
	// validate: finding it would cost a second hash per miss.
	x := keyindex.New()
	k := generate(t, "kw")
	mustUpsert(t, x, apiKeyRecord("team-a", "odd", hashsecret.Version{ID: "OddIdAbCdEfG", Hash: keymaterial.Hash(k.String()),
		NotBefore: t0.Add(-time.Hour), Hint: hashsecret.HintImported, Lookup: hashsecret.LookupHash}))
	if got := x.ValidateAPIKey(k.String(), t0); got.Code != keyindex.NotFound {
		t.Errorf("Code = %s, want NOT_FOUND", got.Code)
	}
}

func TestValidResultCarriesTheIdentity(t *testing.T) {
	x := keyindex.New()
	k := generate(t, "kw")
	rec := apiKeyRecord("team-a", "billing", versionOf(k, t0.Add(-time.Hour), nil))
	rec.ExpiresAt = at(time.Hour)
	mustUpsert(t, x, rec)

	got := x.ValidateAPIKey(k.String(), t0)
	want := keyindex.Result{
		Code: keyindex.Valid, Kind: "apikey", Namespace: "team-a", Name: "billing", Subject: "billing-subject",
		KeyID: k.ID, Access: "ReadOnly", Groups: []string{"reporting"}, Scopes: []string{"invoices:read", "invoices:list"},
	}
	if got.ExpiresAt == nil || !got.ExpiresAt.Equal(*rec.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, rec.ExpiresAt)
	}
	got.ExpiresAt = nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestEveryOneCharacterChangeIsAnInvalidFormat(t *testing.T) {
	x := keyindex.New()
	k := generate(t, "kw")
	mustUpsert(t, x, apiKeyRecord("team-a", "billing", versionOf(k, t0.Add(-time.Hour), nil)))
	s := k.String()
	for i := range len(s) {
		for _, c := range []byte{'0', 'a', 'Z', '_', '-'} {
			if s[i] == c {
				continue
			}
			changed := s[:i] + string(c) + s[i+1:]
			if got := x.ValidateAPIKey(changed, t0); got.Code != keyindex.InvalidFormat {
				t.Errorf("changing position %d to %q gives %s, want INVALID_FORMAT", i, c, got.Code)
			}
		}
	}
}

func TestIndexChanges(t *testing.T) {
	a1, a2, b1, other := generate(t, "kw"), generate(t, "kw"), generate(t, "kw"), generate(t, "kw")
	recA := apiKeyRecord("team-a", "alpha", versionOf(a1, t0.Add(-time.Hour), nil), versionOf(a2, t0.Add(-2*time.Hour), at(time.Hour)))
	recAShort := apiKeyRecord("team-a", "alpha", versionOf(a1, t0.Add(-time.Hour), nil))
	// recB claims a1's id with another secret, as a copied record might.
	twin := withChecksum("kw_" + a1.ID + "_" + secretOf(b1))
	recB := apiKeyRecord("team-b", "beta", hashsecret.Version{ID: a1.ID, Hash: keymaterial.Hash(secretOf(b1)), NotBefore: t0.Add(-time.Hour)})
	recBMoved := apiKeyRecord("team-b", "beta", versionOf(b1, t0.Add(-time.Hour), nil))
	recNoNS := apiKeyRecord("", "alpha", versionOf(a1, t0.Add(-time.Hour), nil))
	recWidget := apiKeyRecord("team-a", "alpha", versionOf(a1, t0.Add(-time.Hour), nil))
	recWidget.Kind = "widget"
	recX := apiKeyRecord("team-x", "alpha", versionOf(a2, t0.Add(-time.Hour), nil))

	type op struct {
		secret  string             // the hash Secret; derived from rec's owner when empty
		rec     *hashsecret.Record // nil with del: Delete; nil without: Upsert(nil)
		del     bool
		wantErr error
	}
	up := func(r *hashsecret.Record) op { return op{rec: r} }
	del := func(r *hashsecret.Record) op { return op{rec: r, del: true} }
	alphaSecret := hashName(hashsecret.KindAPIKey, "team-a", "alpha")
	type check struct {
		key      string
		want     Code
		wantName string
	}
	valid := func(key, name string) check { return check{key, keyindex.Valid, name} }
	notFound := func(key string) check { return check{key, keyindex.NotFound, ""} }

	for name, tc := range map[string]struct {
		ops             []op
		checks          []check
		len, versionIDs int
	}{
		"an upserted record validates all its versions": {
			ops: []op{up(recA)}, checks: []check{valid(a1.String(), "alpha"), valid(a2.String(), "alpha")}, len: 1, versionIDs: 2,
		},
		"upserting the same record twice indexes it once": {
			ops: []op{up(recA), up(recA)}, checks: []check{valid(a1.String(), "alpha"), valid(a2.String(), "alpha")}, len: 1, versionIDs: 2,
		},
		"deleting a record stops its keys at once": {
			ops: []op{up(recA), del(recA)}, checks: []check{notFound(a1.String()), notFound(a2.String())},
		},
		"upserting a nil record deletes": {
			ops: []op{up(recA), {secret: alphaSecret, rec: nil}}, checks: []check{notFound(a1.String())},
		},
		"upserting fewer versions stops the dropped one at once": {
			ops: []op{up(recA), up(recAShort)}, checks: []check{valid(a1.String(), "alpha"), notFound(a2.String())}, len: 1, versionIDs: 1,
		},
		"deleting another hash Secret changes nothing": {
			ops: []op{up(recA), del(recBMoved)}, checks: []check{valid(a1.String(), "alpha")}, len: 1, versionIDs: 2,
		},
		"two records claiming one id each keep validating their own secret (a squatter shadows nothing)": {
			ops:    []op{up(recA), up(recB)},
			checks: []check{valid(twin, "beta"), valid(a1.String(), "alpha"), valid(a2.String(), "alpha")}, len: 2, versionIDs: 2,
		},
		"deleting the earlier claimant of an id keeps the later one": {
			ops:    []op{up(recA), up(recB), del(recA)},
			checks: []check{valid(twin, "beta"), notFound(a1.String()), notFound(a2.String())}, len: 1, versionIDs: 1,
		},
		"deleting the later claimant of an id gives it back to the earlier one": {
			ops:    []op{up(recA), up(recB), del(recB)},
			checks: []check{valid(a1.String(), "alpha"), notFound(twin)}, len: 1, versionIDs: 2,
		},
		"re-upserting the earlier claimant keeps both claimants validating": {
			ops:    []op{up(recA), up(recB), up(recA)},
			checks: []check{valid(a1.String(), "alpha"), valid(twin, "beta")}, len: 2, versionIDs: 2,
		},
		"the other claimant takes over once the latest is deleted": {
			ops:    []op{up(recA), up(recB), up(recA), del(recA)},
			checks: []check{valid(twin, "beta"), notFound(a1.String())}, len: 1, versionIDs: 1,
		},
		"a record dropping a collided id leaves it to the other claimant": {
			ops:    []op{up(recA), up(recB), up(recBMoved)},
			checks: []check{valid(a1.String(), "alpha"), notFound(twin), valid(b1.String(), "beta")}, len: 2, versionIDs: 3,
		},
		"a record naming another owner than its Secret's name is refused and clears that Secret": {
			ops: []op{
				up(recX),
				{secret: hashName(hashsecret.KindAPIKey, "team-x", "alpha"), rec: recA, wantErr: keyindex.ErrForeignOwner},
			},
			checks: []check{notFound(a1.String()), notFound(a2.String())},
		},
		"a record of unknown kind is refused": {
			ops:    []op{up(recA), {secret: alphaSecret, rec: recWidget, wantErr: keyindex.ErrUnknownKind}},
			checks: []check{notFound(a1.String())},
		},
		"a record without a namespace is refused": {
			ops:    []op{{secret: alphaSecret, rec: recNoNS, wantErr: keyindex.ErrForeignOwner}},
			checks: []check{notFound(a1.String())},
		},
		"an unrelated key is not found whatever the index holds": {
			ops: []op{up(recA), up(recB)}, checks: []check{notFound(other.String())}, len: 2, versionIDs: 2,
		},
	} {
		t.Run(name, func(t *testing.T) {
			x := keyindex.New()
			for i, o := range tc.ops {
				// The hash Secret's name derives from the owner, so one
				// owner's record always lands on the same Secret.
				secret := o.secret
				if secret == "" {
					secret = hashName(hashsecret.KindAPIKey, o.rec.Namespace, o.rec.Name)
				}
				if o.del {
					x.Delete(secret)
					continue
				}
				if err := x.Upsert(secret, o.rec); !errors.Is(err, o.wantErr) {
					t.Fatalf("op %d: Upsert error %v, want %v", i, err, o.wantErr)
				}
			}
			for _, c := range tc.checks {
				got := x.ValidateAPIKey(c.key, t0)
				if got.Code != c.want || got.Name != c.wantName {
					t.Errorf("key %s: got %s %q, want %s %q", keyID(c.key), got.Code, got.Name, c.want, c.wantName)
				}
				if got.Code == keyindex.Valid && got.Namespace != "team-a" && got.Namespace != "team-b" {
					t.Errorf("key %s: namespace %q", keyID(c.key), got.Namespace)
				}
			}
			if x.Len() != tc.len || x.Versions() != tc.versionIDs {
				t.Errorf("Len, Versions = %d, %d, want %d, %d", x.Len(), x.Versions(), tc.len, tc.versionIDs)
			}
		})
	}
}

// keyID names a test key in failure messages without printing its secret.
func keyID(key string) string {
	if k, err := keymaterial.Parse(key); err == nil {
		return fmt.Sprint(k)
	}
	return "(not a Keyward key)"
}

func TestValidateAccessKey(t *testing.T) {
	x := keyindex.New()
	id, secret := accessKey(t)
	oldID, oldSecret := accessKey(t)
	deployer := pairRecord("team-a", "deployer", id, secret, t0.Add(-time.Hour), nil)
	deployer.Previous = []hashsecret.Version{{ID: oldID, Hash: keymaterial.Hash(oldSecret), NotBefore: t0.Add(-48 * time.Hour), NotAfter: at(time.Hour)}}
	deployer.ExpiresAt = at(24 * time.Hour)
	mustUpsert(t, x, deployer)

	pausedID, pausedSecret := accessKey(t)
	paused := pairRecord("team-a", "paused", pausedID, pausedSecret, t0.Add(-time.Hour), nil)
	paused.Suspended = true
	mustUpsert(t, x, paused)

	futureID, futureSecret := accessKey(t)
	mustUpsert(t, x, pairRecord("team-a", "future", futureID, futureSecret, t0.Add(time.Hour), nil))

	// An API key's id and secret part do not work as an access key pair.
	apiKey := generate(t, "kw")
	mustUpsert(t, x, apiKeyRecord("team-a", "billing", versionOf(apiKey, t0.Add(-time.Hour), nil)))

	unknownID, unknownSecret := accessKey(t)

	for name, tc := range map[string]struct {
		id, secret string
		now        time.Time
		want       Code
	}{
		"the current access key is valid":                                       {id, secret, t0, keyindex.Valid},
		"a rotated-out access key is valid a nanosecond before its NotAfter":    {oldID, oldSecret, t0.Add(time.Hour - 1), keyindex.Valid},
		"a rotated-out access key is expired exactly at its NotAfter":           {oldID, oldSecret, t0.Add(time.Hour), keyindex.Expired},
		"an access key is valid a nanosecond before the pair expires":           {id, secret, t0.Add(24*time.Hour - 1), keyindex.Valid},
		"an access key is expired exactly when the pair expires":                {id, secret, t0.Add(24 * time.Hour), keyindex.Expired},
		"a suspended pair is suspended":                                         {pausedID, pausedSecret, t0, keyindex.Suspended},
		"a pair is not yet valid before its NotBefore":                          {futureID, futureSecret, t0, keyindex.NotYetValid},
		"a wrong secret key is not found":                                       {id, oldSecret, t0, keyindex.NotFound},
		"a wrong secret key for a suspended pair does not tell":                 {pausedID, secret, t0, keyindex.NotFound},
		"an unknown access key id is not found":                                 {unknownID, unknownSecret, t0, keyindex.NotFound},
		"an API key's id and secret part are not found":                         {apiKey.ID, secretOf(apiKey), t0, keyindex.NotFound},
		"an empty access key id is an invalid format":                           {"", secret, t0, keyindex.InvalidFormat},
		"an empty secret key is an invalid format":                              {id, "", t0, keyindex.InvalidFormat},
		"an oversized access key id is an invalid format":                       {strings.Repeat("K", 129), secret, t0, keyindex.InvalidFormat},
		"an oversized secret key is an invalid format":                          {id, strings.Repeat("s", 513), t0, keyindex.InvalidFormat},
		"a whole API key presented as a secret key for its id is still not one": {apiKey.ID, apiKey.String(), t0, keyindex.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			got, policy := x.ValidateAccessKey(tc.id, tc.secret, tc.now)
			if got.Code != tc.want {
				t.Fatalf("Code = %s, want %s", got.Code, tc.want)
			}
			if tc.want != keyindex.Valid {
				if !isBare(got) || policy != nil {
					t.Errorf("a %s result carries an identity or policy: %+v %v", got.Code, got, policy)
				}
				return
			}
			if got.Kind != hashsecret.KindAccessKeyPair || got.Namespace != "team-a" || got.Name != "deployer" ||
				got.KeyID != tc.id || got.Subject != "deployer-subject" || got.Access != "ReadWrite" {
				t.Errorf("identity = %+v", got)
			}
			if policy == nil || policy.DefaultLifetime != time.Hour || policy.MaxLifetime != 12*time.Hour ||
				!slices.Equal(policy.Audiences, []string{"billing"}) {
				t.Errorf("policy = %+v", policy)
			}
		})
	}
}

func accessKey(t *testing.T) (id, secret string) {
	t.Helper()
	id, err := keymaterial.GenerateAccessKeyID()
	if err != nil {
		t.Fatal(err)
	}
	secret, err = keymaterial.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	return id, secret
}

func TestPairActive(t *testing.T) {
	id, secret := accessKey(t)
	oldID, oldSecret := accessKey(t)
	pausedID, pausedSecret := accessKey(t)
	unknownID, _ := accessKey(t)
	apiKey := generate(t, "kw")

	deployer := pairRecord("team-a", "deployer", id, secret, t0.Add(-time.Hour), nil)
	deployer.Previous = []hashsecret.Version{{ID: oldID, Hash: keymaterial.Hash(oldSecret), NotBefore: t0.Add(-48 * time.Hour), NotAfter: at(time.Hour)}}
	deployer.ExpiresAt = at(24 * time.Hour)
	paused := pairRecord("team-a", "paused", pausedID, pausedSecret, t0.Add(-time.Hour), nil)
	paused.Suspended = true
	billing := apiKeyRecord("team-a", "billing", versionOf(apiKey, t0.Add(-time.Hour), nil))

	for name, tc := range map[string]struct {
		namespace, name, id string
		now                 time.Time
		deleteDeployer      bool
		want                bool
	}{
		"an existing pair is active":                                        {"team-a", "deployer", id, t0, false, true},
		"a pair is active through a rotated-out key before its NotAfter":    {"team-a", "deployer", oldID, t0.Add(time.Hour - 1), false, true},
		"a pair is not active through a rotated-out key at its NotAfter":    {"team-a", "deployer", oldID, t0.Add(time.Hour), false, false},
		"a pair is active a nanosecond before it expires":                   {"team-a", "deployer", id, t0.Add(24*time.Hour - 1), false, true},
		"a pair is not active exactly when it expires":                      {"team-a", "deployer", id, t0.Add(24 * time.Hour), false, false},
		"a deleted pair is not active from the moment its deletion is seen": {"team-a", "deployer", id, t0, true, false},
		"a suspended pair is not active":                                    {"team-a", "paused", pausedID, t0, false, false},
		"a pair under another name is not active":                           {"team-a", "paused", id, t0, false, false},
		"a pair in another namespace is not active":                         {"team-b", "deployer", id, t0, false, false},
		"an unknown access key id is not active":                            {"team-a", "deployer", unknownID, t0, false, false},
		"an API key is not an active pair":                                  {"team-a", "billing", apiKey.ID, t0, false, false},
	} {
		t.Run(name, func(t *testing.T) {
			x := keyindex.New()
			for _, r := range []*hashsecret.Record{deployer, paused, billing} {
				mustUpsert(t, x, r)
			}
			if tc.deleteDeployer {
				x.Delete(hashName(hashsecret.KindAccessKeyPair, "team-a", "deployer"))
			}
			if got := x.PairActive(tc.namespace, tc.name, tc.id, tc.now); got != tc.want {
				t.Errorf("PairActive = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScopes(t *testing.T) {
	valid := keyindex.Result{Code: keyindex.Valid, Name: "billing", Scopes: []string{"invoices:read", "invoices:list"}}
	for name, tc := range map[string]struct {
		r        keyindex.Result
		required []string
		has      bool
		want     Code
	}{
		"no required scope is always granted to a valid key": {valid, nil, true, keyindex.Valid},
		"one granted scope is enough for itself":             {valid, []string{"invoices:read"}, true, keyindex.Valid},
		"all granted scopes together are granted":            {valid, []string{"invoices:list", "invoices:read"}, true, keyindex.Valid},
		"a missing scope is insufficient":                    {valid, []string{"invoices:write"}, false, keyindex.InsufficientScope},
		"one missing scope among granted ones is insufficient": {
			valid, []string{"invoices:read", "invoices:write"}, false, keyindex.InsufficientScope,
		},
		"scopes match exactly, not by prefix":       {valid, []string{"invoices"}, false, keyindex.InsufficientScope},
		"a key without scopes has none":             {keyindex.Result{Code: keyindex.Valid}, []string{"a"}, false, keyindex.InsufficientScope},
		"an invalid result has no scopes":           {keyindex.Result{Code: keyindex.NotFound}, nil, false, keyindex.NotFound},
		"an expired result stays expired":           {keyindex.Result{Code: keyindex.Expired}, []string{"a"}, false, keyindex.Expired},
		"an insufficient result stays insufficient": {keyindex.Result{Code: keyindex.InsufficientScope}, nil, false, keyindex.InsufficientScope},
	} {
		t.Run(name, func(t *testing.T) {
			if got := keyindex.HasScopes(tc.r, tc.required); got != tc.has {
				t.Errorf("HasScopes = %v, want %v", got, tc.has)
			}
			got := keyindex.RequireScopes(tc.r, tc.required)
			if got.Code != tc.want {
				t.Errorf("RequireScopes code = %s, want %s", got.Code, tc.want)
			}
			if got.Name != tc.r.Name {
				t.Error("RequireScopes dropped the identity")
			}
		})
	}
}

func TestIndexDoesNotShareMutableState(t *testing.T) {
	x := keyindex.New()
	k := generate(t, "kw")
	id, secret := accessKey(t)
	rec := apiKeyRecord("team-a", "billing", versionOf(k, t0.Add(-time.Hour), nil))
	rec.ExpiresAt = at(time.Hour)
	pair := pairRecord("team-a", "deployer", id, secret, t0.Add(-time.Hour), nil)
	mustUpsert(t, x, rec)
	mustUpsert(t, x, pair)

	// The caller's record may be reused after Upsert.
	rec.Groups[0], rec.Scopes[0], rec.Subject = "admins", "everything", "mallory"
	*rec.ExpiresAt = t0.Add(100 * time.Hour)
	rec.Current.Hash = keymaterial.Hash("x")
	pair.Tokens.Audiences[0] = "elsewhere"

	first := x.ValidateAPIKey(k.String(), t0)
	*first.ExpiresAt = t0.Add(100 * time.Hour)
	_ = append(first.Groups, "admins")
	_, policy := x.ValidateAccessKey(id, secret, t0)
	policy.DefaultLifetime = time.Minute

	again := x.ValidateAPIKey(k.String(), t0)
	if again.Code != keyindex.Valid || again.Subject != "billing-subject" || !again.ExpiresAt.Equal(t0.Add(time.Hour)) ||
		!slices.Equal(again.Groups, []string{"reporting"}) || !slices.Equal(again.Scopes, []string{"invoices:read", "invoices:list"}) {
		t.Errorf("the index changed with its input or a result: %+v", again)
	}
	if _, policy := x.ValidateAccessKey(id, secret, t0); policy.DefaultLifetime != time.Hour || policy.Audiences[0] != "billing" {
		t.Errorf("the index changed with a returned policy: %+v", policy)
	}
	if x.ValidateAPIKey(k.String(), t0.Add(time.Hour)).Code != keyindex.Expired {
		t.Error("the expiry changed with the caller's record")
	}
}

func TestResultsNeverContainTheKey(t *testing.T) {
	x := keyindex.New()
	k := generate(t, "kw")
	rec := apiKeyRecord("team-a", "billing", versionOf(k, t0.Add(-time.Hour), nil))
	mustUpsert(t, x, rec)
	secret := secretOf(k)
	for _, now := range []time.Time{t0, t0.Add(-2 * time.Hour)} {
		for _, key := range []string{k.String(), withChecksum("kw_" + k.ID + "_" + secret[1:] + "x"), k.String() + "x"} {
			got := fmt.Sprintf("%#v", x.ValidateAPIKey(key, now))
			if strings.Contains(got, secret) || strings.Contains(got, rec.Current.Hash[7:]) {
				t.Errorf("a result contains the secret or its hash: %s", got)
			}
		}
	}
	res, policy := x.ValidateAccessKey(k.ID, secret, t0)
	if got := fmt.Sprintf("%#v %#v", res, policy); strings.Contains(got, secret) {
		t.Errorf("a result contains the secret: %s", got)
	}
}

func TestOversizedInputCostsNothing(t *testing.T) {
	x := keyindex.New()
	k := generate(t, "kw")
	mustUpsert(t, x, apiKeyRecord("team-a", "billing", versionOf(k, t0.Add(-time.Hour), nil)))
	huge := strings.Repeat("x", 1<<20)
	for name, f := range map[string]func(){
		"a 1 MiB API key":     func() { _ = x.ValidateAPIKey(huge, t0) },
		"a 513-byte API key":  func() { _ = x.ValidateAPIKey(huge[:513], t0) },
		"a 1 MiB secret key":  func() { _, _ = x.ValidateAccessKey("KWAKAAAAAAAAAAAAAAAA", huge, t0) },
		"a 1 MiB access key":  func() { _, _ = x.ValidateAccessKey(huge, "secret", t0) },
		"a malformed API key": func() { _ = x.ValidateAPIKey("kw_x", t0) },
	} {
		t.Run(name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, f); n != 0 {
				t.Errorf("allocates %v times, want 0", n)
			}
		})
	}
}

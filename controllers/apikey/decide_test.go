package apikey

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *time.Time { t := t0.Add(d); return &t }

func TestDecideVersion(t *testing.T) {
	current := &hashsecret.Version{ID: "cur", NotBefore: t0}
	cases := map[string]struct {
		in      versionInput
		want    action
		wantWhy string
	}{
		"a new key gets its first version": {
			in: versionInput{now: t0}, want: issueVersion, wantWhy: whyFirst,
		},
		"an expired key with no version gets none": {
			in: versionInput{now: t0, expired: true}, want: keepVersion,
		},
		"a delivered and recorded version stands": {
			in:   versionInput{now: t0, current: current, wantsSecret: true, deliveredID: "cur", deliveredMatches: true},
			want: keepVersion,
		},
		"a version delivered but not recorded (crash) is adopted, not replaced": {
			in:   versionInput{now: t0, current: current, wantsSecret: true, deliveredID: "new"},
			want: adoptDelivered, wantWhy: whyAdopted,
		},
		"a first version delivered but not recorded is adopted": {
			in:   versionInput{now: t0, wantsSecret: true, deliveredID: "new"},
			want: adoptDelivered, wantWhy: whyAdopted,
		},
		"a delivery of a previous version (a rotation interrupted before delivering) is never adopted: issue again": {
			in:   versionInput{now: t0, current: current, wantsSecret: true, deliveredID: "old", deliveredIsOld: true},
			want: issueVersion, wantWhy: whyUndelivered,
		},
		"a deleted delivery Secret means the plaintext is lost: issue again": {
			in:   versionInput{now: t0, current: current, wantsSecret: true},
			want: issueVersion, wantWhy: whyLost,
		},
		"an age-only key whose recipients changed needs a new version": {
			in:   versionInput{now: t0, current: current, wantsAge: true},
			want: issueVersion, wantWhy: whyRecipients,
		},
		"an age key with a Secret copy losing a recipient is re-encrypted, not rotated": {
			in:   versionInput{now: t0, current: current, wantsAge: true, wantsSecret: true, deliveredID: "cur", deliveredMatches: true},
			want: keepVersion,
		},
		"an age key with a Secret copy gaining a recipient gets a new version, not the delivered one": {
			in:   versionInput{now: t0, current: current, wantsAge: true, recipientsAdded: true, wantsSecret: true, deliveredID: "cur", deliveredMatches: true},
			want: issueVersion, wantWhy: whyRecipients,
		},
		"a key gaining its first age recipient gets a new version": {
			in:   versionInput{now: t0, current: current, wantsAge: true, recipientsAdded: true, wantsSecret: true, deliveredID: "cur", deliveredMatches: true, suspended: true},
			want: issueVersion, wantWhy: whyRecipients,
		},
		"an age key gaining a recipient while rotations wait for the per-key limit keeps its version": {
			in:   versionInput{now: t0, current: current, wantsAge: true, recipientsAdded: true, recipientsDeferred: true, wantsSecret: true, deliveredID: "cur", deliveredMatches: true},
			want: keepVersion,
		},
		"an age key whose ciphertext is current stands": {
			in:   versionInput{now: t0, current: current, wantsAge: true, ageUpToDate: true, wantsSecret: true, deliveredID: "cur", deliveredMatches: true},
			want: keepVersion,
		},
		"an expired key gaining a recipient is not reissued": {
			in:   versionInput{now: t0, current: current, wantsAge: true, recipientsAdded: true, wantsSecret: true, deliveredID: "cur", deliveredMatches: true, expired: true},
			want: keepVersion,
		},
		"a rotation request rotates": {
			in:   versionInput{now: t0, current: current, rotatePending: true},
			want: issueVersion, wantWhy: whyRequested,
		},
		"the period elapsing rotates, at the instant": {
			in:   versionInput{now: t0.Add(time.Hour), current: current, period: time.Hour},
			want: issueVersion, wantWhy: whyScheduled,
		},
		"before the period ends nothing happens": {
			in:   versionInput{now: t0.Add(time.Hour - time.Nanosecond), current: current, period: time.Hour},
			want: keepVersion,
		},
		"a suspended key is not rotated, so lifting suspension restores the same key": {
			in:   versionInput{now: t0.Add(2 * time.Hour), current: current, period: time.Hour, suspended: true, rotatePending: true},
			want: keepVersion,
		},
		"an expired key is never rotated": {
			in:   versionInput{now: t0.Add(2 * time.Hour), current: current, period: time.Hour, expired: true},
			want: keepVersion,
		},
		"an imported key becomes the first version": {
			in:   versionInput{now: t0, importedHash: "sha256:imp"},
			want: useImported, wantWhy: whyFirst,
		},
		"an import Secret holding another key replaces the version": {
			in:   versionInput{now: t0, current: &hashsecret.Version{ID: "imp", Hash: "sha256:old", Lookup: hashsecret.LookupHash}, importedHash: "sha256:imp"},
			want: useImported, wantWhy: whyImported,
		},
		"an unchanged import stands": {
			in:   versionInput{now: t0, current: &hashsecret.Version{ID: "imp", Hash: "sha256:imp", Lookup: hashsecret.LookupHash}, importedHash: "sha256:imp"},
			want: keepVersion,
		},
		"an import recorded with an id derived from the key gets a random one": {
			in:   versionInput{now: t0, current: &hashsecret.Version{ID: "derived", Hash: "sha256:imp", Hint: hashsecret.HintImported}, importedHash: "sha256:imp"},
			want: useImported, wantWhy: whyRandomID,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, why := decideVersion(c.in)
			if got != c.want || why != c.wantWhy {
				t.Fatalf("decideVersion = (%v, %q), want (%v, %q)", got, why, c.want, c.wantWhy)
			}
		})
	}
}

func TestIsStaleDelivery(t *testing.T) {
	rec := &hashsecret.Record{
		Current:  &hashsecret.Version{ID: "cur"},
		Previous: []hashsecret.Version{{ID: "prev"}},
		Retired:  []string{"prev", "retired"},
	}
	cases := map[string]struct {
		rec     *hashsecret.Record
		id      string
		revoked []string
		want    bool
	}{
		"the current version is no stale copy":                            {rec: rec, id: "cur"},
		"a new version delivered before its record write is no copy":      {rec: rec, id: "new"},
		"a previous version is":                                           {rec: rec, id: "prev", want: true},
		"a retired version is":                                            {rec: rec, id: "retired", want: true},
		"attack R4: a revoked version is, even with the record lost":      {rec: &hashsecret.Record{}, id: "gone", revoked: []string{"gone"}, want: true},
		"a current version listed (refused) is not: it stays":             {rec: rec, id: "cur", revoked: []string{"cur"}},
		"the version the status names, listed, is rebuilt first, not old": {rec: &hashsecret.Record{Current: &hashsecret.Version{ID: "cur"}}, id: "cur", revoked: []string{"cur"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := isStaleDelivery(c.rec, c.id, c.revoked); got != c.want {
				t.Fatalf("isStaleDelivery(%q) = %v, want %v", c.id, got, c.want)
			}
		})
	}
}

func TestAddsRecipients(t *testing.T) {
	for name, c := range map[string]struct {
		want, had []string
		adds      bool
	}{
		"the same recipients":              {[]string{"a", "b"}, []string{"a", "b"}, false},
		"the same recipients in any order": {[]string{"b", "a"}, []string{"a", "b"}, false},
		"a recipient removed":              {[]string{"a"}, []string{"a", "b"}, false},
		"a recipient added":                {[]string{"a", "b", "c"}, []string{"a", "b"}, true},
		"a recipient replaced":             {[]string{"a", "c"}, []string{"a", "b"}, true},
		"the first recipient":              {[]string{"a"}, nil, true},
		"no recipient":                     {nil, []string{"a"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := addsRecipients(c.want, c.had); got != c.adds {
				t.Errorf("addsRecipients = %v, want %v", got, c.adds)
			}
		})
	}
}

func TestAgeTargets(t *testing.T) {
	for name, c := range map[string]struct {
		want, had, to []string
	}{
		"the same recipients":                      {[]string{"a", "b"}, []string{"a", "b"}, []string{"a", "b"}},
		"a recipient removed":                      {[]string{"a"}, []string{"a", "b"}, []string{"a"}},
		"attack 1: a recipient added gets nothing": {[]string{"a", "m"}, []string{"a"}, []string{"a"}},
		"attack 1: a recipient replaced":           {[]string{"m"}, []string{"a"}, nil},
		"attack 1: delivered to nobody":            {[]string{"a"}, nil, nil},
		"in the spec's order":                      {[]string{"b", "a"}, []string{"a", "b"}, []string{"b", "a"}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := ageTargets(c.want, c.had); !slices.Equal(got, c.to) {
				t.Errorf("ageTargets = %q, want %q", got, c.to)
			}
		})
	}
}

func TestRecipientList(t *testing.T) {
	long := strings.Repeat("age1x,", maxAgeRecipients) + "age1x"
	for name, c := range map[string]struct {
		in   string
		want []string
	}{
		"none":                              {"", nil},
		"one":                               {"age1a", []string{"age1a"}},
		"several, in order":                 {"age1b,age1a", []string{"age1b", "age1a"}},
		"more than a spec allows: nobody's": {long, nil},
	} {
		t.Run(name, func(t *testing.T) {
			if got := recipientList(c.in); !slices.Equal(got, c.want) {
				t.Errorf("recipientList = %q, want %q", got, c.want)
			}
		})
	}
}

func TestRetireAndPrune(t *testing.T) {
	cases := map[string]struct {
		grace      time.Duration
		pruneAt    time.Duration
		wantKept   int
		wantEndsAt *time.Time
	}{
		"the previous version keeps validating for its grace":      {grace: 10 * time.Minute, pruneAt: 9 * time.Minute, wantKept: 1, wantEndsAt: at(10 * time.Minute)},
		"it is pruned at the instant its grace ends":               {grace: 10 * time.Minute, pruneAt: 10 * time.Minute, wantKept: 0},
		"without a grace period the previous version ends at once": {grace: 0, pruneAt: 0, wantKept: 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			rec := &hashsecret.Record{Current: &hashsecret.Version{ID: "v1", NotBefore: t0.Add(-time.Hour)}}
			retire(rec, t0, c.grace)
			if rec.Current != nil {
				t.Fatal("retire left a current version: there would be two")
			}
			kept := prune(rec.Previous, t0.Add(c.pruneAt))
			if len(kept) != c.wantKept {
				t.Fatalf("kept %d versions, want %d", len(kept), c.wantKept)
			}
			if c.wantEndsAt != nil && !kept[0].NotAfter.Equal(*c.wantEndsAt) {
				t.Fatalf("previous version ends at %v, want %v", kept[0].NotAfter, c.wantEndsAt)
			}
		})
	}
}

func TestPruneBoundsVersions(t *testing.T) {
	var prev []hashsecret.Version
	for i := 0; i < 40; i++ {
		prev = append(prev, hashsecret.Version{ID: "v", NotAfter: at(time.Hour)})
	}
	if got := len(prune(prev, t0)); got != hashsecret.MaxVersions-1 {
		t.Fatalf("kept %d previous versions, want the bound %d", got, hashsecret.MaxVersions-1)
	}
}

func TestCapAtExpiry(t *testing.T) {
	cases := map[string]struct {
		expiry       *time.Time
		currentEnd   *time.Time
		previousEnd  *time.Time
		wantCurrent  *time.Time
		wantPrevious *time.Time
	}{
		"no expiry leaves the current version open-ended": {
			previousEnd: at(time.Hour), wantPrevious: at(time.Hour),
		},
		"every version ends at the key's expiry at the latest": {
			expiry: at(30 * time.Minute), previousEnd: at(time.Hour),
			wantCurrent: at(30 * time.Minute), wantPrevious: at(30 * time.Minute),
		},
		"a grace ending before expiry is kept": {
			expiry: at(2 * time.Hour), previousEnd: at(time.Hour),
			wantCurrent: at(2 * time.Hour), wantPrevious: at(time.Hour),
		},
		"an extended expiry moves the current version's end out again": {
			expiry: at(3 * time.Hour), currentEnd: at(time.Hour), previousEnd: at(time.Hour),
			wantCurrent: at(3 * time.Hour), wantPrevious: at(time.Hour),
		},
		"a removed expiry makes the current version open-ended again": {
			expiry: nil, currentEnd: at(time.Hour),
			wantCurrent: nil,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			rec := &hashsecret.Record{
				Current:  &hashsecret.Version{ID: "cur", NotAfter: c.currentEnd},
				Previous: []hashsecret.Version{{ID: "old", NotAfter: c.previousEnd}},
			}
			capAtExpiry(rec, c.expiry)
			if !sameTime(rec.Current.NotAfter, c.wantCurrent) || !sameTime(rec.Previous[0].NotAfter, c.wantPrevious) {
				t.Fatalf("current ends %v (want %v), previous ends %v (want %v)",
					rec.Current.NotAfter, c.wantCurrent, rec.Previous[0].NotAfter, c.wantPrevious)
			}
		})
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func TestEffectiveExpiry(t *testing.T) {
	created := metav1.NewTime(t0)
	abs := metav1.NewTime(t0.Add(48 * time.Hour))
	cases := map[string]struct {
		spec kw.APIKeySpec
		want *time.Time
	}{
		"neither expiresAt nor lifetime: never":      {spec: kw.APIKeySpec{}, want: nil},
		"expiresAt is absolute":                      {spec: kw.APIKeySpec{ExpiresAt: &abs}, want: at(48 * time.Hour)},
		"lifetime counts from the object's creation": {spec: kw.APIKeySpec{Lifetime: &metav1.Duration{Duration: time.Hour}}, want: at(time.Hour)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := effectiveExpiry(c.spec, created); !sameTime(got, c.want) {
				t.Fatalf("effectiveExpiry = %v, want %v", got, c.want)
			}
		})
	}
}

func TestRequeueAfter(t *testing.T) {
	cases := map[string]struct {
		instants []*time.Time
		want     time.Duration
	}{
		"nothing ahead: no requeue":        {instants: []*time.Time{nil}, want: 0},
		"the nearest future instant wins":  {instants: []*time.Time{at(time.Hour), at(10 * time.Minute), nil}, want: 10 * time.Minute},
		"instants now or past are ignored": {instants: []*time.Time{at(0), at(-time.Minute), at(time.Hour)}, want: time.Hour},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := requeueAfter(t0, c.instants...); got != c.want {
				t.Fatalf("requeueAfter = %v, want %v", got, c.want)
			}
		})
	}
}

func TestReadyCondition(t *testing.T) {
	issued := func(mut func(*kw.APIKey)) *kw.APIKey {
		k := &kw.APIKey{Status: kw.APIKeyStatus{KeyID: "abc"}}
		if mut != nil {
			mut(k)
		}
		return k
	}
	cases := map[string]struct {
		key     *kw.APIKey
		now     time.Time
		expiry  *time.Time
		blocked string
		status  metav1.ConditionStatus
		reason  string
	}{
		"issued and valid":                       {key: issued(nil), now: t0, status: metav1.ConditionTrue, reason: kw.ReasonIssued},
		"not issued yet is Unknown, not False":   {key: &kw.APIKey{}, now: t0, status: metav1.ConditionUnknown, reason: "Pending"},
		"within the warning window":              {key: issued(nil), now: t0, expiry: at(time.Hour), status: metav1.ConditionTrue, reason: kw.ReasonExpiringSoon},
		"before the warning window":              {key: issued(nil), now: t0, expiry: at(3 * time.Hour), status: metav1.ConditionTrue, reason: kw.ReasonIssued},
		"expired at the instant":                 {key: issued(nil), now: t0.Add(time.Hour), expiry: at(time.Hour), status: metav1.ConditionFalse, reason: kw.ReasonExpired},
		"suspended":                              {key: issued(func(k *kw.APIKey) { k.Spec.Suspended = true }), now: t0, status: metav1.ConditionFalse, reason: kw.ReasonSuspended},
		"expiry outranks suspension":             {key: issued(func(k *kw.APIKey) { k.Spec.Suspended = true }), now: t0, expiry: at(0), status: metav1.ConditionFalse, reason: kw.ReasonExpired},
		"a blocking problem outranks everything": {key: issued(nil), now: t0, blocked: kw.ReasonImportRefused, status: metav1.ConditionFalse, reason: kw.ReasonImportRefused},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := readyCondition(c.key, c.now, c.expiry, 2*time.Hour, c.blocked, "msg")
			if got.Status != c.status || got.Reason != c.reason {
				t.Fatalf("Ready = %s/%s, want %s/%s", got.Status, got.Reason, c.status, c.reason)
			}
		})
	}
}

func TestDecideSelfRotation(t *testing.T) {
	ok := selfRotationInput{pending: true, recipientOK: true, knownKey: true, proofOK: true, current: true, rotatable: true}
	with := func(edit func(*selfRotationInput)) selfRotationInput { in := ok; edit(&in); return in }
	cases := map[string]struct {
		in         selfRotationInput
		want       selfRotationAct
		wantReason string
	}{
		"no request pending":                           {in: selfRotationInput{}, want: srNone},
		"the holder of the current version":            {in: ok, want: srRotate},
		"already rotated for it (crash before status)": {in: with(func(i *selfRotationInput) { i.actedOn = true; i.current = false }), want: srReanswer},
		"a recipient that is not age X25519":           {in: with(func(i *selfRotationInput) { i.recipientOK = false }), want: srRefuse, wantReason: kw.RefusedBadRequest},
		"a version in its grace period":                {in: with(func(i *selfRotationInput) { i.current = false }), want: srRefuse, wantReason: kw.RefusedNotRotatable},
		"a version the record does not hold":           {in: with(func(i *selfRotationInput) { i.knownKey = false; i.proofOK = false }), want: srRefuse, wantReason: kw.RefusedNotRotatable},
		"an imported, suspended or expired key":        {in: with(func(i *selfRotationInput) { i.rotatable = false }), want: srRefuse, wantReason: kw.RefusedNotRotatable},
		"a proof not made with the version's hash":     {in: with(func(i *selfRotationInput) { i.proofOK = false }), want: srRefuse, wantReason: kw.RefusedBadRequest},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			act, reason := decideSelfRotation(c.in)
			if act != c.want || reason != c.wantReason {
				t.Fatalf("decideSelfRotation = %v %q, want %v %q", act, reason, c.want, c.wantReason)
			}
		})
	}
}

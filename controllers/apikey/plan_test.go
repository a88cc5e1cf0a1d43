package apikey

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

var planCur = &hashsecret.Version{ID: "cur", NotBefore: t0}

// inService is a key whose current version is delivered and verified, with
// edit's changes.
func inService(edit func(*versionInput)) versionInput {
	in := versionInput{now: t0, current: planCur, wantsSecret: true, deliveredID: "cur", deliveredMatches: true}
	edit(&in)
	return in
}

var planCases = map[string]struct {
	in   planInput
	want plan
}{
	"a first version is delivered, then recorded: a crash leaves it to adopt": {
		in:   planInput{version: versionInput{now: t0, wantsSecret: true}},
		want: plan{act: issueVersion, why: whyFirst, order: deliverThenRecord},
	},
	"a first version of a key without a delivery Secret is only recorded": {
		in:   planInput{version: versionInput{now: t0, wantsAge: true}},
		want: plan{act: issueVersion, why: whyFirst, order: recordOnly},
	},
	"a key whose record and every copy are gone is reissued as lost, not first": {
		in:   planInput{version: versionInput{now: t0, wantsSecret: true}, hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whyLost, hadVersion: true, order: deliverThenRecord},
	},
	"a scheduled rotation is recorded, then delivered, and the old version keeps the spec's grace": {
		in: planInput{version: inService(func(v *versionInput) { v.now, v.period = t0.Add(time.Hour), time.Hour }),
			hadVersion: true, reportedID: "cur", grace: 10 * time.Minute},
		want: plan{act: issueVersion, why: whyScheduled, hadVersion: true, order: recordThenDeliver, grace: 10 * time.Minute},
	},
	"a self-rotation is delivered first, and the caller's key keeps at least the minimum grace": {
		in:   planInput{version: inService(func(v *versionInput) { v.forced = true }), hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whySelfRotated, hadVersion: true, order: deliverThenRecord, grace: MinSelfRotationGrace},
	},
	"a self-rotation keeps a longer grace from the spec": {
		in:   planInput{version: inService(func(v *versionInput) { v.forced = true }), hadVersion: true, reportedID: "cur", grace: time.Hour},
		want: plan{act: issueVersion, why: whySelfRotated, hadVersion: true, order: deliverThenRecord, grace: time.Hour},
	},
	"added age recipients leave the workload's version valid for at least the minimum, and spend one of the key's rotations": {
		in:   planInput{version: inService(func(v *versionInput) { v.wantsAge, v.recipientsAdded = true, true }), hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whyRecipients, hadVersion: true, order: recordThenDeliver, grace: MinRecipientsGrace, spends: true},
	},
	"new recipients of a key without a delivery Secret get only the spec's grace": {
		in:   planInput{version: versionInput{now: t0, current: planCur, wantsAge: true}, hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whyRecipients, hadVersion: true, order: recordOnly, spends: true},
	},
	"attack 10: added age recipients over the per-key limit wait, the version in use stays": {
		in: planInput{version: inService(func(v *versionInput) { v.wantsAge, v.recipientsAdded = true, true }), hadVersion: true, reportedID: "cur",
			rotationWait: 1500 * time.Millisecond},
		want: plan{act: keepVersion, hadVersion: true, deferred: deferredRecipients, deferredUntil: at(2 * time.Second)},
	},
	"attack 10: changed recipients of a key without a delivery Secret over the limit wait too": {
		in:   planInput{version: versionInput{now: t0, current: planCur, wantsAge: true}, hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: keepVersion, hadVersion: true, deferred: deferredRecipients, deferredUntil: at(time.Minute + time.Second)},
	},
	"attack 10: a request and added recipients over the limit both wait": {
		in: planInput{version: inService(func(v *versionInput) { v.wantsAge, v.recipientsAdded, v.rotatePending = true, true, true }),
			hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: keepVersion, hadVersion: true, deferred: deferredRequest | deferredRecipients, deferredUntil: at(time.Minute + time.Second)},
	},
	"a request and added recipients within the limit are one rotation": {
		in:   planInput{version: inService(func(v *versionInput) { v.wantsAge, v.recipientsAdded, v.rotatePending = true, true, true }), hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whyRecipients, hadVersion: true, order: recordThenDeliver, grace: MinRecipientsGrace, spends: true},
	},
	"waiting recipients hold back no scheduled rotation, which goes to them: nothing is deferred": {
		in: planInput{version: inService(func(v *versionInput) {
			v.wantsAge, v.recipientsAdded, v.now, v.period = true, true, t0.Add(time.Hour), time.Hour
		}),
			hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: issueVersion, why: whyScheduled, hadVersion: true, order: recordThenDeliver},
	},
	"waiting recipients hold back no self-rotation": {
		in: planInput{version: inService(func(v *versionInput) { v.wantsAge, v.recipientsAdded, v.forced = true, true, true }),
			hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: issueVersion, why: whySelfRotated, hadVersion: true, order: deliverThenRecord, grace: MinSelfRotationGrace},
	},
	"a first version to age recipients is never limited": {
		in:   planInput{version: versionInput{now: t0, wantsSecret: true, wantsAge: true, recipientsAdded: true}, rotationWait: time.Minute},
		want: plan{act: issueVersion, why: whyFirst, order: deliverThenRecord},
	},
	"a lost delivery is re-issued at once, recipients added or not": {
		in: planInput{version: versionInput{now: t0, current: planCur, wantsSecret: true, wantsAge: true, recipientsAdded: true},
			hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: issueVersion, why: whyLost, hadVersion: true, order: recordThenDeliver},
	},
	"a key whose record and every copy are gone is re-issued at once": {
		in:   planInput{version: versionInput{now: t0, wantsSecret: true, wantsAge: true, recipientsAdded: true}, hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: issueVersion, why: whyLost, hadVersion: true, order: deliverThenRecord},
	},
	"a recorded version whose delivery never completed gets no grace: nobody holds it": {
		in: planInput{version: versionInput{now: t0, current: planCur, wantsSecret: true, deliveredID: "old", deliveredIsOld: true},
			hadVersion: true, reportedID: "old", grace: time.Hour},
		want: plan{act: issueVersion, why: whyUndelivered, hadVersion: true, order: recordThenDeliver},
	},
	"an undelivered version the status reports keeps the spec's grace": {
		in: planInput{version: versionInput{now: t0, current: planCur, wantsSecret: true, deliveredID: "old", deliveredIsOld: true},
			hadVersion: true, reportedID: "cur", grace: time.Hour},
		want: plan{act: issueVersion, why: whyUndelivered, hadVersion: true, order: recordThenDeliver, grace: time.Hour},
	},
	"a delivered version adopted after a crash leaves the old one at least the minimum grace": {
		in:   planInput{version: inService(func(v *versionInput) { v.deliveredID, v.deliveredMatches = "new", false }), hadVersion: true, reportedID: "cur"},
		want: plan{act: adoptDelivered, why: whyAdopted, hadVersion: true, grace: MinSelfRotationGrace},
	},
	"a version adopted after a crash, written for every wanted age recipient, needs nothing more": {
		in: planInput{version: inService(func(v *versionInput) {
			v.deliveredID, v.deliveredMatches, v.wantsAge, v.deliveredForWanted = "new", false, true, true
		}), hadVersion: true, reportedID: "cur"},
		want: plan{act: adoptDelivered, why: whyAdopted, hadVersion: true, grace: MinSelfRotationGrace},
	},
	"attack 1: a version adopted after age recipients were added is followed by a new version for them": {
		in: planInput{version: inService(func(v *versionInput) {
			v.deliveredID, v.deliveredMatches, v.wantsAge, v.recipientsAdded = "new", false, true, true
		}), hadVersion: true, reportedID: "cur"},
		want: plan{act: adoptDelivered, why: whyAdopted, hadVersion: true, grace: MinSelfRotationGrace, followUp: true},
	},
	"attack 1: a first version adopted after age recipients were added is followed by a new version for them": {
		in:   planInput{version: versionInput{now: t0, wantsSecret: true, deliveredID: "new", wantsAge: true, recipientsAdded: true}},
		want: plan{act: adoptDelivered, why: whyAdopted, grace: MinSelfRotationGrace, followUp: true},
	},
	"adopting a delivered version is never deferred: it is in the workload's hands": {
		in: planInput{version: inService(func(v *versionInput) {
			v.deliveredID, v.deliveredMatches, v.wantsAge, v.recipientsAdded = "new", false, true, true
		}), hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: adoptDelivered, why: whyAdopted, hadVersion: true, grace: MinSelfRotationGrace, followUp: true},
	},
	"an import that changed replaces the version with no grace": {
		in: planInput{version: versionInput{now: t0, current: &hashsecret.Version{ID: "imp", Hash: "sha256:old", Lookup: hashsecret.LookupHash},
			importedHash: "sha256:new"}, hadVersion: true, reportedID: "imp", grace: time.Hour},
		want: plan{act: useImported, why: whyImported, hadVersion: true},
	},
	"an import given a random id keeps the instant it was bound": {
		in:   planInput{version: versionInput{now: t0, current: &hashsecret.Version{ID: "derived", Hash: "sha256:imp"}, importedHash: "sha256:imp"}, hadVersion: true},
		want: plan{act: useImported, why: whyRandomID, hadVersion: true, keepSince: true},
	},
	"a requested rotation within the per-key limit goes now": {
		in:   planInput{version: inService(func(v *versionInput) { v.rotatePending = true }), hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whyRequested, hadVersion: true, order: recordThenDeliver, spends: true},
	},
	"a requested rotation over the limit is deferred to the second after the wait, not dropped": {
		in:   planInput{version: inService(func(v *versionInput) { v.rotatePending = true }), hadVersion: true, reportedID: "cur", rotationWait: 1500 * time.Millisecond},
		want: plan{act: keepVersion, hadVersion: true, deferred: deferredRequest, deferredUntil: at(2 * time.Second)},
	},
	"a deferred request holds back no scheduled rotation, which acts on it: nothing is deferred": {
		in: planInput{version: inService(func(v *versionInput) { v.rotatePending, v.now, v.period = true, t0.Add(time.Hour), time.Hour }),
			hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: issueVersion, why: whyScheduled, hadVersion: true, order: recordThenDeliver},
	},
	"the per-key limit holds back nothing else": {
		in:   planInput{version: inService(func(v *versionInput) {}), hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: keepVersion, hadVersion: true},
	},
}

func TestPlanVersion(t *testing.T) {
	for name, c := range planCases {
		t.Run(name, func(t *testing.T) {
			got := planVersion(c.in)
			gotUntil, wantUntil := got.deferredUntil, c.want.deferredUntil
			got.deferredUntil, c.want.deferredUntil = nil, nil
			if got != c.want || !sameTime(gotUntil, wantUntil) {
				t.Fatalf("planVersion = %+v (deferred until %v), want %+v (deferred until %v)", got, gotUntil, c.want, wantUntil)
			}
		})
	}
}

func TestNoteDeferredRotation(t *testing.T) {
	for name, c := range map[string]struct {
		what deferrals
		says []string
	}{
		"a request":          {deferredRequest, []string{kw.AnnotationRotate + " annotation is deferred until 2026-11-22T12:01:00Z"}},
		"changed recipients": {deferredRecipients, []string{"changed age recipients", "is deferred until 2026-11-22T12:01:00Z"}},
		"both":               {deferredRequest | deferredRecipients, []string{kw.AnnotationRotate, "changed age recipients", "are deferred until"}},
	} {
		t.Run(name, func(t *testing.T) {
			key := &kw.APIKey{}
			meta.SetStatusCondition(&key.Status.Conditions, metav1.Condition{Type: kw.ConditionReady, Status: metav1.ConditionTrue, Reason: kw.ReasonIssued, Message: "valid"})
			noteDeferredRotation(key, c.what, t0.Add(time.Minute))
			msg := meta.FindStatusCondition(key.Status.Conditions, kw.ConditionReady).Message
			for _, s := range c.says {
				if !strings.Contains(msg, s) {
					t.Errorf("Ready message %q does not say %q", msg, s)
				}
			}
		})
	}
}

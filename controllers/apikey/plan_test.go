package apikey

import (
	"testing"
	"time"

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
	"added age recipients leave the workload's version valid for at least the minimum": {
		in:   planInput{version: inService(func(v *versionInput) { v.wantsAge, v.recipientsAdded = true, true }), hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whyRecipients, hadVersion: true, order: recordThenDeliver, grace: MinRecipientsGrace},
	},
	"new recipients of a key without a delivery Secret get only the spec's grace": {
		in:   planInput{version: versionInput{now: t0, current: planCur, wantsAge: true}, hadVersion: true, reportedID: "cur"},
		want: plan{act: issueVersion, why: whyRecipients, hadVersion: true, order: recordOnly},
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
		want: plan{act: issueVersion, why: whyRequested, hadVersion: true, order: recordThenDeliver},
	},
	"a requested rotation over the limit is deferred to the second after the wait, not dropped": {
		in:   planInput{version: inService(func(v *versionInput) { v.rotatePending = true }), hadVersion: true, reportedID: "cur", rotationWait: 1500 * time.Millisecond},
		want: plan{act: keepVersion, hadVersion: true, deferredUntil: at(2 * time.Second)},
	},
	"a deferred request holds back no scheduled rotation": {
		in: planInput{version: inService(func(v *versionInput) { v.rotatePending, v.now, v.period = true, t0.Add(time.Hour), time.Hour }),
			hadVersion: true, reportedID: "cur", rotationWait: time.Minute},
		want: plan{act: issueVersion, why: whyScheduled, hadVersion: true, order: recordThenDeliver, deferredUntil: at(time.Hour + time.Minute + time.Second)},
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

package apikey

import (
	"time"
)

// MinRecipientsGrace keeps the version in use valid for a while when age
// recipients are added to a key with a delivery Secret, even without
// spec.rotation.gracePeriod: the rotation only keeps the version in use from
// the new recipients, and a workload needs time to read the new one (a
// mounted Secret is refreshed within about a minute).
const MinRecipientsGrace = 5 * time.Minute

// writeOrder is when a new version reaches the delivery Secret, against the
// hash Secret (docs/decisions.md).
type writeOrder int

const (
	// recordOnly: nothing new goes to a delivery Secret (there is none, or
	// the version is not new).
	recordOnly writeOrder = iota
	// deliverThenRecord: a first version, or one its holder asked for: a
	// crash between the two writes leaves a delivered version to adopt, not
	// a lost one.
	deliverThenRecord
	// recordThenDeliver: a rotation with a version still in service:
	// whoever reads the delivery Secret never gets a key the key server
	// does not know yet, and a crash leaves the old key delivered and
	// valid, to be rotated again.
	recordThenDeliver
)

// plan is what one reconcile does about the key's versions: what to write,
// in which order, with which grace for the version it replaces.
type plan struct {
	act action
	why string
	// hadVersion: the record or the status names a version (a new one is
	// a rotation, or a reissue; not the first).
	hadVersion bool
	order      writeOrder
	// grace is how long the version this plan replaces stays valid.
	grace time.Duration
	// keepSince: an imported key keeps the instant it was bound since
	// (its public id becomes random; it stays the first holder).
	keepSince bool
	// deferred names the rotations that wait for the per-key limit until
	// deferredUntil (nil: none waits).
	deferred      deferrals
	deferredUntil *time.Time
	// spends: the new version spends one of the key's limited rotations
	// (Reconciler.RequestedRotations) once recorded.
	spends bool
	// followUp: the version adopted is not delivered to every wanted age
	// recipient; the next reconcile, soon, issues one that is.
	followUp bool
}

// deferrals are the rotations a plan defers, as bits.
type deferrals uint8

const (
	// deferredRequest: the rotate annotation's new value.
	deferredRequest deferrals = 1 << iota
	// deferredRecipients: a new version for changed age recipients.
	deferredRecipients
)

// planInput is everything planVersion looks at.
type planInput struct {
	version    versionInput
	hadVersion bool
	// reportedID is the status's key id: the last version whose delivery
	// completed (status is written last).
	reportedID string
	// grace is spec.rotation.gracePeriod.
	grace time.Duration
	// rotationWait is how long a limited rotation (requested with the
	// annotation, or for added age recipients) must wait for the per-key
	// limit (0: it may go now).
	rotationWait time.Duration
}

// planVersion decides what happens to the key's versions (decideVersion)
// and how: the write order, the grace of the version replaced, and what
// waits for the per-key limit.
func planVersion(in planInput) plan {
	v := in.version
	p := plan{hadVersion: in.hadVersion}
	if v.rotatePending && in.rotationWait > 0 {
		// Rotations asked for with the annotation are limited per key: each
		// is a reconcile and several writes, and anyone who may edit the
		// APIKey can ask in a loop (issue 12, attack 10). Deferred, never
		// dropped: the latest value is acted on when the bucket refills.
		v.rotatePending, p.deferred = false, deferredRequest
	}
	p.act, p.why = decideVersion(v)
	if p.act == issueVersion && p.why == whyRecipients && in.rotationWait > 0 {
		// Editing the recipients is the same loop by other means: a
		// rotation, limited alike. Meanwhile the version in use stays
		// encrypted only to recipients it was delivered to (ageTargets);
		// another rotation due now still goes, to the new recipients.
		v.recipientsDeferred, p.deferred = true, p.deferred|deferredRecipients
		p.act, p.why = decideVersion(v)
	}
	if p.deferred != 0 && p.act != issueVersion {
		t := v.now.Add(in.rotationWait).Truncate(time.Second).Add(time.Second)
		p.deferredUntil = &t
	} else {
		p.deferred = 0 // a new version goes anyway, to the spec as it is
	}
	switch p.act {
	case issueVersion:
		if p.why == whyFirst && in.hadVersion {
			p.why = whyLost // the record and every copy of the key are gone
		}
		p.order = issueOrder(v)
		p.grace = issueGrace(p.why, v, in.grace, in.reportedID)
		// First versions and re-issues of lost or interrupted ones are not
		// limited: nobody can cause them in a loop by editing the APIKey.
		p.spends = p.why == whyRequested || p.why == whyRecipients
	case adoptDelivered:
		// A version delivered before a crash: a first one, or one its
		// holder asked for (which must not cut the caller's key off while
		// it retries), so the old version keeps at least the minimum grace.
		p.grace = max(in.grace, MinSelfRotationGrace)
		// Recipients added since it was written never get it (ageTargets):
		// a new version follows for them, as for any recipients added.
		p.followUp = v.wantsAge && !v.deliveredForWanted
	case useImported:
		p.keepSince = p.why == whyRandomID
	}
	return p
}

// issueOrder is the write order of a new version.
func issueOrder(v versionInput) writeOrder {
	switch {
	case !v.wantsSecret:
		return recordOnly
	case v.current != nil && !v.forced:
		return recordThenDeliver
	}
	return deliverThenRecord
}

// issueGrace is how long the version a new one replaces stays valid.
func issueGrace(why string, v versionInput, grace time.Duration, reportedID string) time.Duration {
	if v.forced {
		grace = max(grace, MinSelfRotationGrace)
	}
	if why == whyRecipients && v.wantsSecret {
		// Nobody asked for a rotation, and the version in use is no secret
		// to those who hold it: the workload reading the delivery Secret
		// gets time to pick up the new one.
		grace = max(grace, MinRecipientsGrace)
	}
	if why == whyUndelivered && v.current != nil && reportedID != v.current.ID {
		// The current version was recorded but its delivery never completed
		// (status, written last, does not report it): nobody holds it, so it
		// gets no grace, nor pushes the delivered old key out of the bounded
		// list of previous versions on retries.
		grace = 0
	}
	return grace
}

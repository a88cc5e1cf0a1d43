package keylifecycle

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// Event actions: what the controller was doing when it emitted the event.
const (
	ActionIssue  = "Issue"
	ActionRotate = "Rotate"
	ActionExpire = "Expire"
	ActionRepair = "Repair"
)

// Words name a kind in its Ready condition's messages.
type Words struct {
	// Noun is what expires: "key", "pair".
	Noun string
	// Version is what is valid: "version", "access key".
	Version string
	// Suspended and Pending are Ready's messages while suspended, and
	// before the first version is issued.
	Suspended, Pending string
}

// ReadyInput is everything ReadyCondition looks at.
type ReadyInput struct {
	Now    time.Time
	Expiry *time.Time
	// Window is how long before expiry the key is ExpiringSoon.
	Window    time.Duration
	Suspended bool
	// CurrentID is the version the status reports ("" before the first).
	CurrentID string
	// BlockedReason, when set, makes Ready False with that reason: a
	// problem that stops a new version from being issued.
	BlockedReason, BlockedMessage string
}

// ReadyCondition is the Ready condition for a key's state.
func ReadyCondition(in ReadyInput, w Words) metav1.Condition {
	c := metav1.Condition{Type: kw.ConditionReady, Status: metav1.ConditionFalse}
	switch {
	case in.BlockedReason != "":
		c.Reason, c.Message = in.BlockedReason, in.BlockedMessage
	case ExpiredAt(in.Expiry, in.Now):
		c.Reason, c.Message = kw.ReasonExpired, "the "+w.Noun+" expired at "+in.Expiry.Format(time.RFC3339)
	case in.Suspended:
		c.Reason, c.Message = kw.ReasonSuspended, w.Suspended
	case in.CurrentID == "":
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, kw.ReasonPending, w.Pending
	case in.Expiry != nil && !in.Now.Before(in.Expiry.Add(-in.Window)):
		c.Status, c.Reason = metav1.ConditionTrue, kw.ReasonExpiringSoon
		c.Message = fmt.Sprintf("%s %s is valid; the %s expires at %s", w.Version, in.CurrentID, w.Noun, in.Expiry.Format(time.RFC3339))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, kw.ReasonIssued
		c.Message = fmt.Sprintf("%s %s is valid", w.Version, in.CurrentID)
	}
	return c
}

// Ready is the Ready condition of the key v shows, at now.
func (v View) Ready(now time.Time, window time.Duration, w Words, blockedReason, blockedMessage string) metav1.Condition {
	return ReadyCondition(ReadyInput{Now: now, Expiry: v.Expiry, Window: window, Suspended: v.Suspended,
		CurrentID: *v.CurrentID, BlockedReason: blockedReason, BlockedMessage: blockedMessage}, w)
}

// transitionAction is the action of the Warning event a move of Ready into
// reason emits, if any: expiry's for ExpiringSoon and Expired, issuing's for
// a problem that blocks the key.
func transitionAction(reason string, blocked bool) (string, bool) {
	switch {
	case reason == kw.ReasonExpiringSoon || reason == kw.ReasonExpired:
		return ActionExpire, true
	case blocked:
		return ActionIssue, true
	}
	return "", false
}

// SetConditions derives Ready, Expired and Suspended from the spec and the
// clock, and emits an event when Ready moves into a reason that warns;
// blockedReason, when set, makes Ready False with that reason.
func (sc *Scope[O]) SetConditions(blockedReason, blockedMessage string) {
	v := sc.View
	ready := v.Ready(sc.Now, sc.r.cfg.ExpiringSoonWindow, sc.r.names.Words, blockedReason, blockedMessage)
	prev := setConditions(v.Conditions, sc.Object.GetGeneration(), sc.Now,
		ready, Expired(v.Expiry, sc.Now), Suspended(v.Suspended))
	if prev == ready.Reason {
		return
	}
	if action, ok := transitionAction(ready.Reason, blockedReason != ""); ok {
		sc.Event(corev1.EventTypeWarning, ready.Reason, action, "%s", ready.Message)
	}
}

// BlockedResync is how often a blocked key is looked at again: what blocks
// it (a Secret of someone else's, a missing import) is outside the watched
// cache.
const BlockedResync = time.Minute

// Blocked reports a problem that stops a new version from being issued (the
// kind has written its existing record's policy first: revoking a key never
// waits for the problem to be fixed) and ends the reconcile's phases.
func (sc *Scope[O]) Blocked(reason, message string) ctrl.Result {
	sc.SetConditions(reason, message)
	sc.stopped = true
	return ctrl.Result{RequeueAfter: blockedWait(sc.Now, sc.View.Expiry)}
}

// blockedWait is BlockedResync, or less to reach the key's expiry on time.
func blockedWait(now time.Time, expiry *time.Time) time.Duration {
	wait := BlockedResync
	if d := RequeueAfter(now, expiry); d > 0 && d < wait {
		wait = d
	}
	return wait
}

// Requeue is when to look at the key again: the next instant its state
// changes on its own (the kind's instants, the expiring-soon warning,
// expiry), and at least every Resync when it has a Secret outside the
// watched cache (a delivery Secret, or unwatched: the kind's own).
func (sc *Scope[O]) Requeue(unwatched bool, instants ...*time.Time) ctrl.Result {
	return ctrl.Result{RequeueAfter: requeueWait(sc.Now, sc.View.Expiry, sc.r.cfg.ExpiringSoonWindow, sc.r.cfg.Resync,
		unwatched || sc.View.SecretName != "", instants...)}
}

func requeueWait(now time.Time, expiry *time.Time, window, resync time.Duration, unwatched bool, instants ...*time.Time) time.Duration {
	instants = append(instants, expiry)
	if expiry != nil {
		soon := expiry.Add(-window)
		instants = append(instants, &soon)
	}
	wait := RequeueAfter(now, instants...)
	if unwatched && (wait == 0 || wait > resync) {
		wait = resync
	}
	return wait
}

// RequeueAfter is the wait until the nearest of instants after now. Zero
// means no such instant.
func RequeueAfter(now time.Time, instants ...*time.Time) time.Duration {
	var next time.Duration
	for _, t := range instants {
		if t == nil || !t.After(now) {
			continue
		}
		if d := t.Sub(now); next == 0 || d < next {
			next = d
		}
	}
	return next
}

// ExpiredAt reports whether a key with this expiry has expired at now.
func ExpiredAt(expiry *time.Time, now time.Time) bool {
	return expiry != nil && !now.Before(*expiry)
}

// Expired is the Expired condition.
func Expired(expiry *time.Time, now time.Time) metav1.Condition {
	c := metav1.Condition{Type: kw.ConditionExpired, Status: metav1.ConditionFalse, Reason: kw.ReasonNoExpiry, Message: "the key never expires"}
	if expiry != nil {
		c.Reason, c.Message = kw.ReasonNotExpired, "the key expires at "+expiry.Format(time.RFC3339)
		if ExpiredAt(expiry, now) {
			c.Status, c.Reason, c.Message = metav1.ConditionTrue, kw.ReasonExpired, "the key expired at "+expiry.Format(time.RFC3339)
		}
	}
	return c
}

// Suspended is the Suspended condition.
func Suspended(suspended bool) metav1.Condition {
	if suspended {
		return metav1.Condition{Type: kw.ConditionSuspended, Status: metav1.ConditionTrue, Reason: kw.ReasonSuspended,
			Message: "spec.suspended is set; the key is rejected until it is cleared"}
	}
	return metav1.Condition{Type: kw.ConditionSuspended, Status: metav1.ConditionFalse, Reason: kw.ReasonActive, Message: "the key is not suspended"}
}

// setConditions stores the conditions, stamped with generation and, when
// their status changes, with now (not the wall clock: the controllers' clock
// is injected). It returns the Ready reason from before, so callers can emit
// an event on a transition.
func setConditions(conds *[]metav1.Condition, generation int64, now time.Time, cs ...metav1.Condition) (prevReady string) {
	if c := meta.FindStatusCondition(*conds, kw.ConditionReady); c != nil {
		prevReady = c.Reason // copied: SetStatusCondition updates elements in place
	}
	for _, c := range cs {
		c.ObservedGeneration = generation
		c.LastTransitionTime = metav1.NewTime(now)
		meta.SetStatusCondition(conds, c)
	}
	return prevReady
}

// TimePtr converts for status fields.
func TimePtr(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	mt := metav1.NewTime(*t)
	return &mt
}

// PatchStatus writes obj's status as a merge patch against orig, and skips
// the request when nothing changed: a key's periodic resync must not cost
// an API call when all is well.
func PatchStatus(ctx context.Context, c client.Client, obj, orig client.Object, status, origStatus any) error {
	if equality.Semantic.DeepEqual(status, origStatus) {
		return nil
	}
	return c.Status().Patch(ctx, obj, client.MergeFrom(orig))
}

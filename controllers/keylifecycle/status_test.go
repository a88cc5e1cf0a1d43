package keylifecycle

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func after(d time.Duration) *time.Time { t := t0.Add(d); return &t }

var words = Words{Noun: "thing", Version: "edition", Suspended: "on hold", Pending: "none yet"}

func TestReadyCondition(t *testing.T) {
	valid := ReadyInput{Now: t0, Window: time.Hour, CurrentID: "v1"}
	with := func(edit func(*ReadyInput)) ReadyInput { in := valid; edit(&in); return in }
	cases := map[string]struct {
		in      ReadyInput
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		"a current version that never expires is Issued": {
			in: valid, status: metav1.ConditionTrue, reason: kw.ReasonIssued, message: "edition v1 is valid",
		},
		"no version yet is Pending, Unknown rather than False": {
			in: with(func(in *ReadyInput) { in.CurrentID = "" }), status: metav1.ConditionUnknown, reason: kw.ReasonPending, message: "none yet",
		},
		"within the window before expiry it is ExpiringSoon, and still valid": {
			in:     with(func(in *ReadyInput) { in.Expiry = after(time.Hour) }),
			status: metav1.ConditionTrue, reason: kw.ReasonExpiringSoon, message: "edition v1 is valid; the thing expires at 2026-11-22T13:00:00Z",
		},
		"before the window it is Issued": {
			in: with(func(in *ReadyInput) { in.Expiry = after(time.Hour + time.Second) }), status: metav1.ConditionTrue, reason: kw.ReasonIssued,
			message: "edition v1 is valid",
		},
		"at the instant of expiry it is Expired": {
			in: with(func(in *ReadyInput) { in.Expiry = after(0) }), status: metav1.ConditionFalse, reason: kw.ReasonExpired,
			message: "the thing expired at 2026-11-22T12:00:00Z",
		},
		"suspension says so in the kind's words": {
			in: with(func(in *ReadyInput) { in.Suspended = true }), status: metav1.ConditionFalse, reason: kw.ReasonSuspended, message: "on hold",
		},
		"expiry outranks suspension": {
			in:     with(func(in *ReadyInput) { in.Suspended, in.Expiry = true, after(-time.Minute) }),
			status: metav1.ConditionFalse, reason: kw.ReasonExpired, message: "the thing expired at 2026-11-22T11:59:00Z",
		},
		"a blocking problem outranks expiry, suspension and a missing version": {
			in: with(func(in *ReadyInput) {
				in.Suspended, in.Expiry, in.CurrentID, in.BlockedReason, in.BlockedMessage = true, after(-time.Minute), "", kw.ReasonDeliveryConflict, "why"
			}),
			status: metav1.ConditionFalse, reason: kw.ReasonDeliveryConflict, message: "why",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := ReadyCondition(c.in, words)
			if got.Type != kw.ConditionReady || got.Status != c.status || got.Reason != c.reason || got.Message != c.message {
				t.Fatalf("Ready = %s %s/%s %q, want %s/%s %q", got.Type, got.Status, got.Reason, got.Message, c.status, c.reason, c.message)
			}
		})
	}
}

func TestTransitionAction(t *testing.T) {
	cases := map[string]struct {
		reason  string
		blocked bool
		action  string
		emits   bool
	}{
		"expiring soon warns as expiry":           {reason: kw.ReasonExpiringSoon, action: ActionExpire, emits: true},
		"expiry warns as expiry, for either kind": {reason: kw.ReasonExpired, action: ActionExpire, emits: true},
		"a blocking problem warns as issuing":     {reason: kw.ReasonDeliveryConflict, blocked: true, action: ActionIssue, emits: true},
		"the per-subject limit warns as issuing":  {reason: kw.ReasonLimitExceeded, blocked: true, action: ActionIssue, emits: true},
		"issued is announced by the kind":         {reason: kw.ReasonIssued},
		"suspension is the user's own doing":      {reason: kw.ReasonSuspended},
		"pending is no news":                      {reason: kw.ReasonPending},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			action, emits := transitionAction(c.reason, c.blocked)
			if action != c.action || emits != c.emits {
				t.Fatalf("transitionAction = %q %v, want %q %v", action, emits, c.action, c.emits)
			}
		})
	}
}

func TestBlockedWait(t *testing.T) {
	cases := map[string]struct {
		expiry *time.Time
		want   time.Duration
	}{
		"a key that never expires is looked at every BlockedResync": {want: BlockedResync},
		"a key expiring sooner is looked at at its expiry":          {expiry: after(3 * time.Second), want: 3 * time.Second},
		"a key expiring later waits BlockedResync":                  {expiry: after(time.Hour), want: BlockedResync},
		"an expired key waits BlockedResync, never zero":            {expiry: after(-time.Hour), want: BlockedResync},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := blockedWait(t0, c.expiry); got != c.want {
				t.Fatalf("blockedWait = %v, want %v", got, c.want)
			}
		})
	}
}

func TestRequeueWait(t *testing.T) {
	const window, resync = time.Hour, 5 * time.Minute
	cases := map[string]struct {
		expiry    *time.Time
		unwatched bool
		instants  []*time.Time
		want      time.Duration
	}{
		"nothing ahead and everything watched: no requeue":    {want: 0},
		"nothing ahead, a Secret outside the cache: resync":   {unwatched: true, want: resync},
		"the expiring-soon warning comes before the expiry":   {expiry: after(2 * time.Hour), want: time.Hour},
		"inside the window, the expiry itself":                {expiry: after(30 * time.Minute), want: 30 * time.Minute},
		"the kind's nearest instant, when sooner":             {expiry: after(2 * time.Hour), instants: []*time.Time{nil, after(time.Minute)}, want: time.Minute},
		"a Secret outside the cache is re-read within resync": {expiry: after(2 * time.Hour), unwatched: true, want: resync},
		"an instant sooner than resync wins over it":          {unwatched: true, instants: []*time.Time{after(time.Minute)}, want: time.Minute},
		"past instants are ignored":                           {expiry: after(-time.Hour), instants: []*time.Time{after(0)}, want: 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := requeueWait(t0, c.expiry, window, resync, c.unwatched, c.instants...); got != c.want {
				t.Fatalf("requeueWait = %v, want %v", got, c.want)
			}
		})
	}
}

// Package keystatus derives the conditions shared by APIKey and
// AccessKeyPair (Expired, Suspended) and sets conditions with the times of
// the controller's clock.
package keystatus

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

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

// Set stores the conditions, stamped with generation and, when their status
// changes, with now (not the wall clock: the controllers' clock is injected).
// It returns the Ready reason from before, so callers can emit an event on a
// transition.
func Set(conds *[]metav1.Condition, generation int64, now time.Time, cs ...metav1.Condition) (prevReady string) {
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

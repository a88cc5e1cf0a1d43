package apikey

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keystatus"
	"github.com/keyward/keyward/internal/hashsecret"
)

// setStatus mirrors the record into the status: ids, times and the age
// delivery, never a hash or a plaintext.
func (r *Reconciler) setStatus(key *kw.APIKey, rec *hashsecret.Record, age string, now time.Time, expiry *time.Time) {
	st := &key.Status
	st.KeyID, st.KeyHint, st.IssuedAt = "", "", nil
	if c := rec.Current; c != nil {
		st.KeyID, st.KeyHint = c.ID, c.Hint
		st.IssuedAt = keystatus.TimePtr(&c.NotBefore)
	}
	st.ExpiresAt = keystatus.TimePtr(expiry)
	st.NextRotationAt = keystatus.TimePtr(nextRotation(key.Spec, rec, expiry, now))
	st.PreviousKeys = nil
	for _, v := range rec.Previous {
		if v.NotAfter != nil {
			st.PreviousKeys = append(st.PreviousKeys, kw.PreviousKey{KeyID: v.ID, ValidUntil: metav1.NewTime(*v.NotAfter)})
		}
	}
	st.AgeDelivery = nil
	if age != "" && rec.Current != nil {
		st.AgeDelivery = &kw.AgeDelivery{KeyID: rec.Current.ID, Recipients: rec.AgeRecipients, EncryptedKey: age}
	}
	st.RotateRequest = rec.RotateRequest
}

// setBlocked reports a problem that stops the key from being issued.
func (r *Reconciler) setBlocked(key *kw.APIKey, now time.Time, expiry *time.Time, reason, message string) {
	r.setConditions(key, now, expiry, reason, message)
}

// setConditions derives Ready, Expired and Suspended from the spec and the
// clock; blockedReason, when set, makes Ready False with that reason.
func (r *Reconciler) setConditions(key *kw.APIKey, now time.Time, expiry *time.Time, blockedReason, blockedMessage string) {
	ready := readyCondition(key, now, expiry, r.ExpiringSoonWindow, blockedReason, blockedMessage)
	prevReason := keystatus.Set(&key.Status.Conditions, key.Generation, now,
		ready, keystatus.Expired(expiry, now), keystatus.Suspended(key.Spec.Suspended))

	if prevReason != ready.Reason {
		switch ready.Reason {
		case kw.ReasonExpiringSoon:
			r.event(key, corev1.EventTypeWarning, kw.ReasonExpiringSoon, "Expire", "%s", ready.Message)
		case kw.ReasonExpired:
			r.event(key, corev1.EventTypeWarning, kw.ReasonExpired, "Expire", "%s", ready.Message)
		case kw.ReasonDeliveryConflict, kw.ReasonDeliveryFailed, kw.ReasonImportNotFound, kw.ReasonImportRefused, kw.ReasonImportConflict:
			r.event(key, corev1.EventTypeWarning, ready.Reason, "Issue", "%s", ready.Message)
		}
	}
}

// readyCondition is the Ready condition for the key's state; a pure
// function, table-tested.
func readyCondition(key *kw.APIKey, now time.Time, expiry *time.Time, window time.Duration, blockedReason, blockedMessage string) metav1.Condition {
	c := metav1.Condition{Type: kw.ConditionReady, Status: metav1.ConditionFalse}
	switch {
	case blockedReason != "":
		c.Reason, c.Message = blockedReason, blockedMessage
	case keystatus.ExpiredAt(expiry, now):
		c.Reason, c.Message = kw.ReasonExpired, "the key expired at "+expiry.Format(time.RFC3339)
	case key.Spec.Suspended:
		c.Reason, c.Message = kw.ReasonSuspended, "the key is suspended"
	case key.Status.KeyID == "":
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, "Pending", "no key version is issued yet"
	case expiry != nil && !now.Before(expiry.Add(-window)):
		c.Status, c.Reason = metav1.ConditionTrue, kw.ReasonExpiringSoon
		c.Message = fmt.Sprintf("version %s is valid; the key expires at %s", key.Status.KeyID, expiry.Format(time.RFC3339))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, kw.ReasonIssued
		c.Message = fmt.Sprintf("version %s is valid", key.Status.KeyID)
	}
	return c
}

// versionEvent records a new current version: Issued for the first, Rotated after.
func (r *Reconciler) versionEvent(key *kw.APIKey, hadVersion bool, id, why string) {
	if !hadVersion {
		r.event(key, corev1.EventTypeNormal, kw.ReasonIssued, "Issue", "issued version %s", id)
		return
	}
	switch why {
	case whyLost:
		r.event(key, corev1.EventTypeWarning, kw.EventKeyReissued, "Issue", "issued version %s: %s", id, why)
		return
	case whyRecipients:
		r.event(key, corev1.EventTypeNormal, kw.EventRecipientsChanged, "Rotate", "version %s is current: %s", id, why)
		return
	}
	r.event(key, corev1.EventTypeNormal, kw.EventRotated, "Rotate", "version %s is current: %s", id, why)
}

// event emits an event. Notes carry ids and times only, never key material.
func (r *Reconciler) event(key *kw.APIKey, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(key, nil, eventType, reason, action, note, args...)
	}
}

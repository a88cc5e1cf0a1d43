package apikey

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/hashsecret"
)

// setStatus mirrors the record into the status: ids, times and the age
// delivery, never a hash or a plaintext.
func setStatus(key *kw.APIKey, rec *hashsecret.Record, age string, now time.Time, expiry *time.Time) {
	st := &key.Status
	st.KeyID, st.KeyHint, st.IssuedAt = "", "", nil
	if c := rec.Current; c != nil {
		st.KeyID, st.KeyHint = c.ID, c.Hint
		st.IssuedAt = keylifecycle.TimePtr(&c.NotBefore)
	}
	st.ExpiresAt = keylifecycle.TimePtr(expiry)
	st.NextRotationAt = keylifecycle.TimePtr(nextRotation(key.Spec, rec, expiry, now))
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

// versionEvent records a new current version: Issued for the first, Rotated after.
func versionEvent(s *scope, hadVersion bool, id, why string) {
	if !hadVersion {
		s.Event(corev1.EventTypeNormal, kw.ReasonIssued, keylifecycle.ActionIssue, "issued version %s", id)
		return
	}
	switch why {
	case whyLost:
		s.Event(corev1.EventTypeWarning, kw.EventKeyReissued, keylifecycle.ActionIssue, "issued version %s: %s", id, why)
		return
	case whyRecipients:
		s.Event(corev1.EventTypeNormal, kw.EventRecipientsChanged, keylifecycle.ActionRotate, "version %s is current: %s", id, why)
		return
	}
	s.Event(corev1.EventTypeNormal, kw.EventRotated, keylifecycle.ActionRotate, "version %s is current: %s", id, why)
}

package apikey

import (
	"context"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// The APIKey's record: what it is built from, and how it is written.

// recordFrom starts from the hash Secret's record, repaired from what the
// cluster still holds when it is missing or was edited.
func recordFrom(s *scope) *hashsecret.Record {
	key := s.key
	if s.Record != nil {
		rec := cloneRecord(s.Record)
		// An edited hash for the delivered version: the delivery is the
		// plaintext, so its hash is the truth.
		if d, cur := s.delivered, rec.Current; d != nil && cur != nil && d.ID == cur.ID && !d.Verify(cur.Hash) {
			cur.Hash = d.SecretHash()
			s.Event(corev1.EventTypeWarning, kw.EventHashSecretRepaired, keylifecycle.ActionRepair,
				"the hash Secret %s held a wrong hash for version %s and was rewritten", s.HashName, cur.ID)
		}
		return rec
	}
	rec := &hashsecret.Record{RotateRequest: key.Status.RotateRequest}
	if s.HashSecret != nil || key.Status.KeyID != "" {
		// The record was lost or corrupted. The delivered plaintext of the
		// last reported version restores it without changing the key.
		if d := s.delivered; d != nil && d.ID == key.Status.KeyID {
			issued := s.Now
			if key.Status.IssuedAt != nil {
				issued = key.Status.IssuedAt.UTC()
			}
			rec.Current = newVersion(*d, issued)
			s.Event(corev1.EventTypeWarning, kw.EventHashSecretRepaired, keylifecycle.ActionRepair,
				"the hash Secret %s was missing or unreadable and was rebuilt from the delivered key %s", s.HashName, d.ID)
		}
	}
	return rec
}

// cloneRecord copies what a reconcile changes of a record.
func cloneRecord(r *hashsecret.Record) *hashsecret.Record {
	rec := *r
	rec.Previous = slices.Clone(rec.Previous)
	if rec.Current != nil {
		cur := *rec.Current
		rec.Current = &cur
	}
	return &rec
}

// block reports a problem that stops a new version from being issued. The
// existing record still gets the spec's policy — suspension, expiry, scopes —
// so revoking a key never waits for the problem to be fixed.
func (s *scope) block(ctx context.Context, reason, message string) (ctrl.Result, error) {
	s.revocation = keylifecycle.PlanRevocation(nil, s.key.Spec.RevokedKeyIDs)
	if s.Record != nil {
		rec := cloneRecord(s.Record)
		if s.unbind {
			// A key that must not be bound here (ImportConflict): what the
			// record binds goes, so the key's first holder is its only one.
			retire(rec, s.Now, 0)
			rec.Previous = nil
			st := &s.key.Status
			st.KeyID, st.KeyHint, st.IssuedAt, st.PreviousKeys, st.AgeDelivery = "", "", nil, nil, nil
		}
		s.revoke(rec)
		applySpec(s.key, rec, s.Now, s.View.Expiry)
		age := ""
		if s.HashSecret != nil {
			age = string(s.HashSecret.Data[hashsecret.DataAge])
		}
		if wrote, err := s.WriteRecord(ctx, rec, recordData(s, age)); err != nil {
			return ctrl.Result{}, err
		} else if wrote {
			s.Revoked(s.revocation)
			// The status is not rebuilt while blocked: it must not list a
			// revoked version as valid still.
			st := &s.key.Status
			st.PreviousKeys = slices.DeleteFunc(st.PreviousKeys, func(p kw.PreviousKey) bool { return s.revocation.Revokes(p.KeyID) })
		}
	}
	s.SetRevocation(s.revocation)
	return s.Blocked(reason, message), nil
}

// revoke ends in rec the previous versions spec.revokedKeyIDs lists
// (keylifecycle.PlanRevocation); s.revocation says what it did, for the
// events once rec is written and for the KeyIDsRevoked condition.
func (s *scope) revoke(rec *hashsecret.Record) {
	s.revocation = keylifecycle.PlanRevocation(rec, s.key.Spec.RevokedKeyIDs)
	s.revocation.Apply(rec)
}

// recordData is what the hash Secret holds beside the record: the age
// ciphertext, and the answer to the last self-rotation request.
func recordData(s *scope, age string) map[string][]byte {
	data := map[string][]byte{}
	if age != "" {
		data[hashsecret.DataAge] = []byte(age)
	}
	if answer := selfRotationData(s); len(answer) > 0 {
		data[DataSelfRotation] = answer
	}
	return data
}

// ageDelivery returns the age ciphertext of the current version, encrypted
// again when the recipients changed: only ever to wanted recipients it was
// delivered to already (ageTargets, issue 12, attack 1); a recipient added
// gets a new version instead (decideVersion), when the per-key limit allows.
// Without the plaintext at hand the ciphertext stays as it is, for the
// recipients it was made for: each of them holds this version already.
func ageDelivery(key *kw.APIKey, rec *hashsecret.Record, age string, plaintext *keymaterial.Key) (string, error) {
	if key.Spec.Delivery == nil || rec.Current == nil {
		rec.AgeRecipients = nil
		return "", nil
	}
	if plaintext == nil || plaintext.ID != rec.Current.ID {
		if age == "" {
			rec.AgeRecipients = nil
		}
		return age, nil
	}
	to := ageTargets(recipients(key), rec.AgeRecipients)
	switch {
	case age != "" && slices.Equal(to, rec.AgeRecipients):
		return age, nil
	case len(to) == 0:
		rec.AgeRecipients = nil
		return "", nil
	}
	out, err := agecrypt.Encrypt(plaintext.String(), to)
	if err != nil {
		return "", err
	}
	rec.AgeRecipients = to
	return out, nil
}

// applySpec copies the identity and policy the key server needs into the
// record, prunes ended versions and caps every version at the expiry.
func applySpec(key *kw.APIKey, rec *hashsecret.Record, now time.Time, expiry *time.Time) {
	rec.Kind = hashsecret.KindAPIKey
	rec.Namespace, rec.Name = key.Namespace, key.Name
	rec.Subject = key.EffectiveSubject()
	rec.Groups = slices.Clone(key.Spec.Groups)
	rec.Scopes = slices.Clone(key.Spec.Scopes)
	rec.Access = string(key.Spec.Access)
	if rec.Access == "" {
		rec.Access = string(kw.AccessReadWrite)
	}
	rec.Suspended = key.Spec.Suspended
	// Limits are policy, like suspension: a change rewrites the record,
	// never the key.
	rec.RateLimit = hashsecret.RateLimitOf(key.Spec.RateLimit)
	rec.AllowedCIDRs = hashsecret.CIDRsOf(key.Spec.AllowedCIDRs)
	rec.Previous = prune(rec.Previous, now)
	keylifecycle.CapAtExpiry(rec, expiry)
}

// writeDelivery puts k in the delivery Secret, named in its annotations
// with the age recipients it is issued for (always written: an old list
// must not outlive its version).
func writeDelivery(ctx context.Context, s *scope, k keymaterial.Key) error {
	return s.Deliver(ctx, map[string]string{kw.AnnotationDeliveredKeyID: k.ID, kw.AnnotationAgeRecipients: strings.Join(recipients(s.key), ",")},
		map[string][]byte{kw.DeliveryDataKey: []byte(k.String())})
}

func newVersion(k keymaterial.Key, at time.Time) *hashsecret.Version {
	return &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: at, Hint: keymaterial.Hint(k)}
}

func isPrevious(rec *hashsecret.Record, id string) bool {
	return slices.ContainsFunc(rec.Previous, func(v hashsecret.Version) bool { return v.ID == id })
}

func gracePeriod(key *kw.APIKey) time.Duration {
	if key.Spec.Rotation == nil || key.Spec.Rotation.GracePeriod == nil {
		return 0
	}
	return key.Spec.Rotation.GracePeriod.Duration
}

func recipients(key *kw.APIKey) []string {
	if key.Spec.Delivery == nil {
		return nil
	}
	return key.Spec.Delivery.AgeRecipients
}

func rotateValue(key *kw.APIKey) string { return key.Annotations[kw.AnnotationRotate] }

package keylifecycle

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

// ActionRevoke is the action of the events about spec.revokedKeyIDs.
const ActionRevoke = "Revoke"

// Revocation is what spec.revokedKeyIDs asks of a key's record
// (PlanRevocation). The list is a request; its effect lives in the record:
// a revoked version's hash is gone, so nothing revives it, whatever later
// happens to the list (a GitOps sync that drops it included).
type Revocation struct {
	// Requested: the list names at least one id (else no condition).
	Requested bool
	// Revoke are the previous versions that end now, in record order.
	Revoke []hashsecret.Version
	// Current is a listed id that is the current version: refused. Revoking
	// it would leave the key without a valid version while it looks issued;
	// suspending or deleting the key says that openly.
	Current string
	// Unknown are listed ids that are no version of this key, current,
	// previous or retired: nothing is revoked under them. Only the key's
	// own record is ever read, so another key's id changes nothing.
	Unknown []string
}

// PlanRevocation decides what the ids listed in spec.revokedKeyIDs do to
// rec (nil: no record yet). Ids of versions that already ended (retired)
// need nothing.
func PlanRevocation(rec *hashsecret.Record, listed []string) Revocation {
	rv := Revocation{Requested: len(listed) > 0}
	if rec == nil {
		rec = &hashsecret.Record{}
	}
	for _, v := range rec.Previous {
		if slices.Contains(listed, v.ID) {
			rv.Revoke = append(rv.Revoke, v)
		}
	}
	for i, id := range listed {
		switch {
		case slices.Contains(listed[:i], id):
		case rec.Current != nil && rec.Current.ID == id:
			rv.Current = id
		case !slices.Contains(rec.Retired, id) && !slices.ContainsFunc(rec.Previous, func(v hashsecret.Version) bool { return v.ID == id }):
			rv.Unknown = append(rv.Unknown, id)
		}
	}
	return rv
}

// Revokes reports whether rv ends the version id.
func (rv Revocation) Revokes(id string) bool {
	return slices.ContainsFunc(rv.Revoke, func(v hashsecret.Version) bool { return v.ID == id })
}

// Apply removes the revoked versions from rec. Each stays among the
// retired ids (first, when it had fallen off the bounded list), so a stale
// copy of it in a delivery Secret is never adopted as a new version. rec's
// slices are replaced, never written in place: they may be the cache's.
func (rv Revocation) Apply(rec *hashsecret.Record) {
	if len(rv.Revoke) == 0 {
		return
	}
	rec.Previous = slices.DeleteFunc(slices.Clone(rec.Previous), func(v hashsecret.Version) bool { return rv.Revokes(v.ID) })
	retired := slices.Clone(rec.Retired)
	for _, v := range slices.Backward(rv.Revoke) {
		if !slices.Contains(retired, v.ID) {
			retired = append([]string{v.ID}, retired...)
		}
	}
	if len(retired) > hashsecret.MaxVersions {
		retired = retired[:hashsecret.MaxVersions]
	}
	rec.Retired = retired
}

// RevocationCondition is the KeyIDsRevoked condition for rv; false when
// nothing is listed (the condition is removed).
func RevocationCondition(rv Revocation, w Words) (metav1.Condition, bool) {
	if !rv.Requested {
		return metav1.Condition{}, false
	}
	c := metav1.Condition{Type: kw.ConditionKeyIDsRevoked, Status: metav1.ConditionTrue, Reason: kw.ReasonRevoked,
		Message: "no " + w.Version + " listed in spec.revokedKeyIDs validates"}
	if rv.Current != "" {
		c.Status, c.Reason = metav1.ConditionFalse, kw.ReasonRevokeRefused
		c.Message = fmt.Sprintf("%s is the current %s and still validates: the current %s is never revoked; rotate first "+
			"(it is revoked at once when a rotation replaces it), or suspend or delete the %s to stop it now",
			rv.Current, w.Version, w.Version, w.Noun)
	}
	if len(rv.Unknown) > 0 {
		c.Message += fmt.Sprintf("; %s: no %s of this %s has that id, nothing was revoked under it", strings.Join(rv.Unknown, ", "), w.Version, w.Noun)
	}
	return c, true
}

// SetRevocation sets (or removes) the KeyIDsRevoked condition, with a
// Warning event when it moves into a refusal or the refusal changes: once
// per change, however often the key is reconciled.
func (sc *Scope[O]) SetRevocation(rv Revocation) {
	conds := sc.View.Conditions
	c, ok := RevocationCondition(rv, sc.r.names.Words)
	if !ok {
		meta.RemoveStatusCondition(conds, kw.ConditionKeyIDsRevoked)
		return
	}
	prev := meta.FindStatusCondition(*conds, kw.ConditionKeyIDsRevoked)
	changed := prev == nil || prev.Reason != c.Reason || prev.Message != c.Message
	setConditions(conds, sc.Object.GetGeneration(), sc.Now, c)
	if changed && c.Status == metav1.ConditionFalse {
		sc.Event(corev1.EventTypeWarning, c.Reason, ActionRevoke, "%s", c.Message)
	}
}

// Revoked announces the versions rv revoked, once their record is written:
// the ids and the grace they lost, never key material.
func (sc *Scope[O]) Revoked(rv Revocation) {
	for _, v := range rv.Revoke {
		until := "it had no end"
		if v.NotAfter != nil {
			until = "it was valid until " + v.NotAfter.UTC().Format(time.RFC3339)
		}
		sc.Event(corev1.EventTypeNormal, kw.EventVersionRevoked, ActionRevoke,
			"revoked %s %s before its grace period ended (%s)", sc.r.names.Words.Version, v.ID, until)
	}
}

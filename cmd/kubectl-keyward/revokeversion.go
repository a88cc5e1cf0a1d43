package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// Bounds of spec.revokedKeyIDs, checked here to refuse early with a message
// about the command rather than the field.
const (
	maxKeyIDLen      = 64
	maxRevokedKeyIDs = 16
)

// validKeyID mirrors the items of spec.revokedKeyIDs.
func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// versionRevocation is what `revoke --key-id` has to do for an id.
type versionRevocation int

const (
	// revokeList: list the id in spec.revokedKeyIDs and wait.
	revokeList versionRevocation = iota
	// revokeWait: the id is listed and still in its grace: wait.
	revokeWait
	// revokeDone: listed, and no longer a version that validates.
	revokeDone
)

// planVersionRevocation decides, from the key as read, what revoking id
// takes; an error explains a refusal. The controller decides again from
// the hash Secret (keylifecycle.PlanRevocation): this check is for a clear
// message before anything is written.
func planVersionRevocation(key *kw.APIKey, id string) (versionRevocation, error) {
	st := key.Status
	listed := slices.Contains(key.Spec.RevokedKeyIDs, id)
	previous := slices.ContainsFunc(st.PreviousKeys, func(p kw.PreviousKey) bool { return p.KeyID == id })
	switch {
	case id == st.KeyID:
		return 0, fmt.Errorf("key id %s is the current version of APIKey %q: the current version is never revoked alone. "+
			"Rotate first (kubectl keyward rotate %s --wait), then revoke %s; to stop the key now, suspend it or revoke it without --key-id",
			id, key.Name, key.Name, id)
	case previous && listed:
		return revokeWait, nil
	case previous:
		if len(key.Spec.RevokedKeyIDs) >= maxRevokedKeyIDs {
			return 0, fmt.Errorf("spec.revokedKeyIDs of APIKey %q holds %d ids, the most allowed: remove ids of versions that already ended "+
				"(removing an id brings no version back)", key.Name, maxRevokedKeyIDs)
		}
		return revokeList, nil
	case listed:
		return revokeDone, nil
	}
	ids := make([]string, 0, len(st.PreviousKeys))
	for _, p := range st.PreviousKeys {
		ids = append(ids, p.KeyID)
	}
	return 0, fmt.Errorf("APIKey %q has no previous version with key id %s (previous versions: %s)",
		key.Name, id, orNone(strings.Join(ids, ", ")))
}

// versionRevoked is the wait condition of `revoke --key-id`: the
// controller has seen generation gen and id no longer validates; an error
// when it refused (the id became the current version meanwhile).
func versionRevoked(key *kw.APIKey, id string, gen int64) (bool, error) {
	c := meta.FindStatusCondition(key.Status.Conditions, kw.ConditionKeyIDsRevoked)
	if key.Status.ObservedGeneration < gen || c == nil || c.ObservedGeneration < gen {
		return false, nil
	}
	if key.Status.KeyID == id {
		return false, fmt.Errorf("APIKey %q: %s: %s", key.Name, c.Reason, c.Message)
	}
	still := slices.ContainsFunc(key.Status.PreviousKeys, func(p kw.PreviousKey) bool { return p.KeyID == id })
	return !still && c.Status == metav1.ConditionTrue, nil
}

// revokeVersion lists id in spec.revokedKeyIDs and waits until the
// controller has removed that version from the hash Secret. The list is
// patched with the resourceVersion read, so an id added meanwhile by
// someone else is never dropped.
func (a *app) revokeVersion(c *kubeClient, key *kw.APIKey, id string, timeout time.Duration) error {
	name := key.Name
	gen := key.Generation
	for attempt := 0; ; attempt++ {
		todo, err := planVersionRevocation(key, id)
		if err != nil {
			return err
		}
		if todo == revokeDone {
			fmt.Fprintf(a.s.Out, "apikey/%s: key id %s is already revoked\n", name, id)
			return nil
		}
		if todo == revokeWait {
			break
		}
		patched, err := c.patchKey(a.ctx, name, map[string]any{
			"metadata": map[string]any{"resourceVersion": key.ResourceVersion},
			"spec":     map[string]any{"revokedKeyIDs": append(slices.Clone(key.Spec.RevokedKeyIDs), id)},
		})
		if apierrors.IsConflict(err) && attempt < 5 {
			if key, err = c.getKey(a.ctx, name); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("revoking key id %s of APIKey %q: %w", id, name, err)
		}
		gen = patched.Generation
		break
	}
	got, err := c.waitKey(a.ctx, name, timeout, func(k *kw.APIKey) (bool, error) { return versionRevoked(k, id, gen) })
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("key id %s is listed in spec.revokedKeyIDs of APIKey %q, but the controller did not revoke it within %s "+
			"(is the Keyward operator running?)", id, name, timeout)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.s.Out, "apikey/%s: key id %s revoked; the current key id %s stays valid\n", name, id, orNone(got.Status.KeyID))
	return nil
}

package apikey

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// withinCap reports whether key is among the first max APIKeys of its
// namespace (kw.APIKeysAhead, the rule the admission webhook applies too);
// max 0: no cap.
func withinCap(key *kw.APIKey, siblings []kw.APIKey, max int) bool {
	if max <= 0 || !slices.ContainsFunc(siblings, func(k kw.APIKey) bool { return k.Name == key.Name }) {
		return true // no cap, or not listed yet (cache lag): the webhook already checked it
	}
	return len(kw.APIKeysAhead(key, siblings)) < max
}

// capMessage explains LimitExceeded; it names the cap, not the other keys.
func capMessage(max int) string {
	return fmt.Sprintf("this namespace already holds %d API keys, the most allowed (--max-apikeys-per-namespace); delete one to issue this key", max)
}

// observeCap reads the namespace's APIKeys from the cache when there is a cap.
func (r *Reconciler) observeCap(ctx context.Context, s *scope) error {
	if r.MaxPerNamespace <= 0 {
		return nil
	}
	list := &kw.APIKeyList{}
	if err := r.Client.List(ctx, list, client.InNamespace(s.key.Namespace)); err != nil {
		return err
	}
	s.overCap = !withinCap(s.key, list.Items, r.MaxPerNamespace)
	return nil
}

// overCapSiblings are the keys of obj's namespace held back by the cap: a
// key leaving (or any change of a sibling) may free a place for them.
func (r *Reconciler) overCapSiblings(ctx context.Context, obj client.Object) []reconcile.Request {
	list := &kw.APIKeyList{}
	if err := r.Client.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, k := range list.Items {
		c := meta.FindStatusCondition(k.Status.Conditions, kw.ConditionReady)
		if k.Name != obj.GetName() && c != nil && c.Reason == kw.ReasonLimitExceeded {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.Namespace, Name: k.Name}})
		}
	}
	return out
}

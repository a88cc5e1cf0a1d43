package apikey

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

// A key is bound to one record only (issue 12, attack 2): an import whose
// key another APIKey or AccessKeyPair already holds is refused, and the
// holder keeps validating exactly as before.

// IndexHashes is a field index of the controllers' cache over the hash
// Secrets of the keys namespace: the hashes their versions hold. It tells an
// import whether its key is bound already, in O(holders), without reading
// every record.
const IndexHashes = "keys.keyward.dev/hashes"

// hashesOf extracts IndexHashes from a hash Secret.
func hashesOf(obj client.Object) []string {
	sec, ok := obj.(*corev1.Secret)
	if !ok || sec.Type != hashsecret.SecretType {
		return nil
	}
	rec, err := hashsecret.Decode(sec)
	if err != nil {
		return nil
	}
	var out []string
	for _, v := range rec.Versions() {
		if !slices.Contains(out, v.Hash) {
			out = append(out, v.Hash)
		}
	}
	return out
}

// holder is a record that binds a key: since is when it bound it (the
// NotBefore of its earliest version with that key's hash).
type holder struct {
	kind, namespace, name string
	since                 time.Time
}

// before orders two holders of one key as the key server does when both
// reach its index (keyindex): bound first, then by namespace and name.
func (h holder) before(o holder) bool {
	if !h.since.Equal(o.since) {
		return h.since.Before(o.since)
	}
	if h.namespace != o.namespace {
		return h.namespace < o.namespace
	}
	if h.name != o.name {
		return h.name < o.name
	}
	return h.kind < o.kind
}

// importBlocker returns the holder that keeps a key this APIKey imports, or
// nil when this APIKey may bind it (or keep it bound): own is this key's
// binding (nil when its record does not hold the key), others the other
// records holding it. Two imports bound at once (each reconciled before
// seeing the other) converge: the first bound keeps it, the other lets go.
func importBlocker(own *holder, others []holder) *holder {
	var first *holder
	for i := range others {
		if first == nil || others[i].before(*first) {
			first = &others[i]
		}
	}
	if first == nil || (own != nil && own.before(*first)) {
		return nil
	}
	return first
}

// holderOf returns rec's binding of the key whose hash is hash, if any.
func holderOf(rec *hashsecret.Record, hash string) *holder {
	var h *holder
	for _, v := range rec.Versions() {
		if v.Hash == hash && (h == nil || v.NotBefore.Before(h.since)) {
			h = &holder{kind: rec.Kind, namespace: rec.Namespace, name: rec.Name, since: v.NotBefore}
		}
	}
	return h
}

// otherHolders lists the records, other than the hash Secret own, that bind
// the key whose hash is hash, from the cached hash Secrets.
func (r *Reconciler) otherHolders(ctx context.Context, hash, own string) ([]holder, error) {
	list := &corev1.SecretList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.HashNamespace), client.MatchingFields{IndexHashes: hash}); err != nil {
		return nil, err
	}
	var out []holder
	for i := range list.Items {
		if list.Items[i].Name == own {
			continue
		}
		if rec, err := hashsecret.Decode(&list.Items[i]); err == nil {
			if h := holderOf(rec, hash); h != nil {
				out = append(out, *h)
			}
		}
	}
	return out, nil
}

// conflictMessage says which key holds an import's key. A holder in
// another namespace is not named: which keys another team holds is theirs.
func conflictMessage(secretName string, key *kw.APIKey, first *holder) string {
	who := "a key in another namespace"
	if first.namespace == key.Namespace {
		kind := "APIKey"
		if first.kind == hashsecret.KindAccessKeyPair {
			kind = "AccessKeyPair"
		}
		who = fmt.Sprintf("%s %q", kind, first.name)
	}
	return fmt.Sprintf("the key in Secret %q is already bound to %s; a key is bound to one APIKey or AccessKeyPair only, and the first keeps it", secretName, who)
}

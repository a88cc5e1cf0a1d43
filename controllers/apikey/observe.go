package apikey

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// maxAgeRecipients is spec.delivery.ageRecipients' MaxItems.
const maxAgeRecipients = 16

// scope is the world as one reconcile of an APIKey sees it, gathered once
// (keylifecycle.Scope holds what both kinds read), and what it decided.
type scope struct {
	*keylifecycle.Scope[*kw.APIKey]
	r   *Reconciler
	key *kw.APIKey

	delivered *keymaterial.Key // the key in the delivery Secret, if it parses
	// deliveredFor: the age recipients the delivered key was written for
	// (kw.AnnotationAgeRecipients).
	deliveredFor []string

	imported *importedKey
	// importReason/importMessage explain why an importFrom key is unusable.
	importReason, importMessage string
	// overCap: the namespace holds its most APIKeys without this one
	// (Reconciler.MaxPerNamespace): nothing is issued.
	overCap bool
	// unbind: the import is one that must not be bound (ImportConflict);
	// whatever this key's record binds is dropped, not kept as a blocked
	// key's record otherwise is.
	unbind bool

	// forceRotate asks for a new version (self-rotation); issued then holds
	// it, for the caller to hand out once.
	forceRotate bool
	issued      *keymaterial.Key

	// selfRotation is the request a forced rotation answers; answer is the
	// response to write into status (and, with a new key, the hash Secret).
	selfRotation *kw.SelfRotationRequest
	answer       *kw.SelfRotationResponse
	// selfRotationHash is the presented version's hash: the key of the
	// answer's MAC.
	selfRotationHash string

	// rec is the record this reconcile writes: the hash Secret's, repaired
	// (recordFrom); age is the current version's age ciphertext.
	rec *hashsecret.Record
	age string
	// plan is what the reconcile writes, in which order, with which grace.
	plan plan
	// plaintext is the current version's key when this reconcile has it.
	plaintext *keymaterial.Key
	// revocation is what spec.revokedKeyIDs does to rec.
	revocation keylifecycle.Revocation
}

// importedKey is what is recorded of an imported key: its hash and how the
// key server finds it (hashsecret.LookupHash or LookupSecretHash). Its
// public id is random, drawn when it is bound.
type importedKey struct{ hash, lookup string }

// observe reads what only APIKeys need beside the hash and delivery
// Secrets: the delivered key, the importFrom Secret, and the namespace's
// other keys when there is a cap.
func (r *Reconciler) observe(ctx context.Context, sc *keylifecycle.Scope[*kw.APIKey]) (*scope, error) {
	s := &scope{Scope: sc, r: r, key: sc.Object}
	if ds := sc.Delivery; ds != nil {
		if k, err := keymaterial.Parse(string(ds.Data[kw.DeliveryDataKey])); err == nil && k.Prefix == prefixOf(s.key) {
			s.delivered = &k
			s.deliveredFor = recipientList(ds.Annotations[kw.AnnotationAgeRecipients])
		}
	}
	if err := r.observeCap(ctx, s); err != nil {
		return nil, err
	}
	if ref := s.key.Spec.ImportFrom; ref != nil {
		if err := r.observeImport(ctx, s.key, ref, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// observeImport reads the importFrom Secret live: it is the user's Secret,
// outside the cache of labelled Secrets.
func (r *Reconciler) observeImport(ctx context.Context, key *kw.APIKey, ref *kw.SecretKeyRef, s *scope) error {
	src := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: ref.Name}, src)
	dataKey := ref.Key
	if dataKey == "" {
		dataKey = kw.DeliveryDataKey
	}
	switch {
	case apierrors.IsNotFound(err):
		s.importReason, s.importMessage = kw.ReasonImportNotFound, fmt.Sprintf("Secret %q does not exist", ref.Name)
		return nil
	case err != nil:
		return err
	}
	if by := hashsecret.WrittenBy(src); by != "" {
		// A key Keyward issued is bound to its owner already: imported
		// into a suspended, read-only or short-lived key of someone else's
		// it would shadow it (issue 12, attack 2).
		s.importReason, s.unbind = kw.ReasonImportConflict, true
		s.importMessage = fmt.Sprintf("Secret %q is one Keyward writes (%s): the key in it is bound to that owner and is never imported into another; use that key, or import a Secret of your own", ref.Name, by)
		return nil
	}
	raw, ok := src.Data[dataKey]
	if !ok {
		s.importReason, s.importMessage = kw.ReasonImportNotFound, fmt.Sprintf("Secret %q has no data key %q", ref.Name, dataKey)
		return nil
	}
	plain := string(raw)
	if err := keymaterial.CheckImportStrength(plain); err != nil {
		// The rules, not the one the key broke: that would describe a key
		// to whoever reads the APIKey (issue 12, attack 3).
		s.importReason = kw.ReasonImportRefused
		s.importMessage = fmt.Sprintf("the key in Secret %q is refused: %s", ref.Name, keymaterial.ImportRules)
		return nil
	}
	hash, keywardFormat := keymaterial.ImportedHash(plain)
	others, err := r.otherHolders(ctx, hash, s.HashName)
	if err != nil {
		return err
	}
	var own *holder
	if s.Record != nil {
		own = holderOf(s.Record, hash)
	}
	if first := importBlocker(own, others); first != nil {
		s.importReason, s.unbind = kw.ReasonImportConflict, true
		s.importMessage = conflictMessage(ref.Name, key, first)
		return nil
	}
	s.imported = &importedKey{hash: hash, lookup: hashsecret.LookupHash}
	if keywardFormat {
		s.imported.lookup = hashsecret.LookupSecretHash
	}
	return nil
}

// recipientList parses kw.AnnotationAgeRecipients; a list longer than any spec
// allows is nobody's (nil).
func recipientList(v string) []string {
	if v == "" {
		return nil
	}
	out := strings.SplitN(v, ",", maxAgeRecipients+1)
	if len(out) > maxAgeRecipients {
		return nil
	}
	return out
}

func prefixOf(key *kw.APIKey) string {
	if key.Spec.Prefix != "" {
		return key.Spec.Prefix
	}
	return kw.DefaultPrefix
}

package apikey

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/ownedsecret"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// DataKey is the data key of the plaintext in a delivery Secret.
const DataKey = "key"

// AnnotationKeyID names the version a delivery Secret holds.
const AnnotationKeyID = "keys.keyward.dev/key-id"

// state is the world as one reconcile sees it, gathered once.
type state struct {
	hashName   string
	hashSecret *corev1.Secret // nil when absent
	record     *hashsecret.Record
	// corrupt: the hash Secret exists but is not a valid record.
	corrupt bool

	delivery *corev1.Secret // the delivery Secret, when Keyward owns it
	// conflict: spec.secretName names a Secret Keyward does not own.
	conflict  bool
	delivered *keymaterial.Key // the key in the delivery Secret, if it parses

	imported *importedKey
	// importReason/importMessage explain why an importFrom key is unusable.
	importReason, importMessage string

	// forceRotate asks converge for a new version (self-rotation); issued
	// then holds it, for the caller to hand out once.
	forceRotate bool
	issued      *keymaterial.Key

	// selfRotation is the request a forced rotation answers; answer is the
	// response to write into status (and, with a new key, the hash Secret).
	selfRotation *kw.SelfRotationRequest
	answer       *kw.SelfRotationResponse
	// selfRotationHash is the presented version's hash: the key of the
	// answer's MAC.
	selfRotationHash string
}

type importedKey struct{ id, hash string }

func (r *Reconciler) observe(ctx context.Context, key *kw.APIKey) (*state, error) {
	s := &state{hashName: hashsecret.Name(hashsecret.KindAPIKey, key.Namespace, key.Name)}

	hs, err := ownedsecret.GetHash(ctx, r.Client, key, "APIKey", r.HashNamespace, s.hashName)
	if err != nil {
		return nil, err
	}
	if hs != nil {
		s.hashSecret = hs
		if rec, err := hashsecret.Decode(hs); err != nil {
			s.corrupt = true
		} else {
			s.record = rec
		}
	}

	// The delivery Secret is read live: the controllers may not list or
	// watch Secrets outside Keyward's own namespaces (docs/security.md).
	if name := key.Spec.SecretName; name != "" {
		ds := &corev1.Secret{}
		switch err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: name}, ds); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, err
		case !metav1.IsControlledBy(ds, key):
			s.conflict = true // someone else's Secret: never overwritten
		default:
			s.delivery = ds
			if k, err := keymaterial.Parse(string(ds.Data[DataKey])); err == nil && k.Prefix == prefixOf(key) {
				s.delivered = &k
			}
		}
	}

	if ref := key.Spec.ImportFrom; ref != nil {
		if err := r.observeImport(ctx, key, ref, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// observeImport reads the importFrom Secret live: it is the user's Secret,
// outside the cache of labelled Secrets.
func (r *Reconciler) observeImport(ctx context.Context, key *kw.APIKey, ref *kw.SecretKeyRef, s *state) error {
	src := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: ref.Name}, src)
	dataKey := ref.Key
	if dataKey == "" {
		dataKey = DataKey
	}
	switch {
	case apierrors.IsNotFound(err):
		s.importReason, s.importMessage = kw.ReasonImportNotFound, fmt.Sprintf("Secret %q does not exist", ref.Name)
		return nil
	case err != nil:
		return err
	}
	raw, ok := src.Data[dataKey]
	if !ok {
		s.importReason, s.importMessage = kw.ReasonImportNotFound, fmt.Sprintf("Secret %q has no data key %q", ref.Name, dataKey)
		return nil
	}
	plain := string(raw)
	if err := keymaterial.CheckImportStrength(plain); err != nil {
		// The strength errors are fixed sentences; none quotes the key.
		s.importReason = kw.ReasonImportRefused
		s.importMessage = fmt.Sprintf("the key in Secret %q is refused: %s", ref.Name, strings.TrimPrefix(err.Error(), "keymaterial: "))
		return nil
	}
	// A key in Keyward's own format (say, from another cluster) is looked
	// up by its embedded id; anything else by an id derived from it.
	if k, err := keymaterial.Parse(plain); err == nil {
		s.imported = &importedKey{id: k.ID, hash: k.SecretHash()}
	} else {
		s.imported = &importedKey{id: keymaterial.ImportedKeyID(plain), hash: keymaterial.Hash(plain)}
	}
	return nil
}

func prefixOf(key *kw.APIKey) string {
	if key.Spec.Prefix != "" {
		return key.Spec.Prefix
	}
	return kw.DefaultPrefix
}

func subjectOf(key *kw.APIKey) string {
	if key.Spec.Subject != "" {
		return key.Spec.Subject
	}
	return key.Name
}

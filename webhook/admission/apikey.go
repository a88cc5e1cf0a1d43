package admission

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// The failure policy is Ignore: these checks only spare users a key that
// could not be issued; the controller reports the same problems as
// conditions, so an unavailable webhook must not block applying keys.
//
// +kubebuilder:webhook:path=/validate-keys-keyward-dev-v1alpha1-apikey,mutating=false,failurePolicy=ignore,sideEffects=None,groups=keys.keyward.dev,resources=apikeys,verbs=create,versions=v1alpha1,name=vapikey.keys.keyward.dev,admissionReviewVersions=v1,timeoutSeconds=5

// APIKeyReferences checks what an APIKey refers to: its delivery Secret
// must not belong to someone else (refused: Keyward would never overwrite
// it), and its importFrom Secret should exist (a warning: in GitOps the
// Secret may arrive a moment later).
type APIKeyReferences struct {
	// Reader reads Secrets live: the webhook has no cache of them.
	Reader client.Reader
}

// SetupAPIKeyReferences registers the webhook with the manager's webhook server.
func SetupAPIKeyReferences(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &kw.APIKey{}).
		WithValidator(&APIKeyReferences{Reader: mgr.GetAPIReader()}).
		Complete()
}

// ValidateCreate checks the references of a new APIKey.
func (v *APIKeyReferences) ValidateCreate(ctx context.Context, key *kw.APIKey) (admission.Warnings, error) {
	var warnings admission.Warnings
	if name := key.Spec.SecretName; name != "" {
		sec := &corev1.Secret{}
		err := v.Reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: name}, sec)
		switch {
		case err == nil && !ownedByAPIKey(sec, key.Name):
			return nil, apierrors.NewForbidden(schema.GroupResource{Group: kw.GroupVersion.Group, Resource: "apikeys"}, key.Name,
				fmt.Errorf("spec.secretName %q names an existing Secret that Keyward does not manage; Keyward never overwrites it: choose another name", name))
		case err != nil && !apierrors.IsNotFound(err):
			return nil, apierrors.NewInternalError(fmt.Errorf("reading Secret %q: %w", name, err))
		}
	}
	if ref := key.Spec.ImportFrom; ref != nil {
		err := v.Reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: ref.Name}, &metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		})
		if apierrors.IsNotFound(err) {
			warnings = append(warnings, fmt.Sprintf("spec.importFrom: Secret %q does not exist (yet); the key is not issued until it does", ref.Name))
		}
	}
	return warnings, nil
}

// ownedByAPIKey: a Secret left by an earlier APIKey of the same name (being
// recreated) is Keyward's; adopting it is the controller's job.
func ownedByAPIKey(sec *corev1.Secret, name string) bool {
	ref := metav1.GetControllerOf(sec)
	return ref != nil && ref.Kind == "APIKey" && ref.Name == name
}

// ValidateUpdate allows every update: secretName and importFrom are immutable.
func (v *APIKeyReferences) ValidateUpdate(context.Context, *kw.APIKey, *kw.APIKey) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete allows every deletion.
func (v *APIKeyReferences) ValidateDelete(context.Context, *kw.APIKey) (admission.Warnings, error) {
	return nil, nil
}

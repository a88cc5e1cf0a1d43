package admission

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// APIKeyLimitPath is where the API server sends APIKey creations for the
// per-namespace cap (beside the other two APIKey webhooks).
const APIKeyLimitPath = "/validate-keys-keyward-dev-v1alpha1-apikey-limit"

// The failure policy is Ignore, like the other APIKey checks that only
// spare users a key that could not be issued: the webhook is registered
// whatever the flag says (a failure policy cannot depend on it), and Fail
// would make every APIKey create, capped or not, wait for an operator
// replica. The controller enforces the cap regardless (LimitExceeded).
// With no cap (the default) the webhook answers at once without listing.
//
// +kubebuilder:webhook:path=/validate-keys-keyward-dev-v1alpha1-apikey-limit,mutating=false,failurePolicy=ignore,sideEffects=None,groups=keys.keyward.dev,resources=apikeys,verbs=create,versions=v1alpha1,name=vapikey-limit.keys.keyward.dev,admissionReviewVersions=v1,timeoutSeconds=5

// APIKeyLimit refuses an APIKey that would give its namespace more APIKeys
// than allowed (--max-apikeys-per-namespace).
type APIKeyLimit struct {
	// Reader lists APIKeys; the API server itself (not a cache), so two
	// requests in a row see each other.
	Reader client.Reader
	// Max is the cap; 0: none.
	Max int
}

// SetupAPIKeyLimit registers the webhook with the manager's webhook server,
// always: the configuration sends every APIKey create to its path.
func SetupAPIKeyLimit(mgr ctrl.Manager, max int) error {
	return ctrl.NewWebhookManagedBy(mgr, &kw.APIKey{}).
		WithValidator(&APIKeyLimit{Reader: mgr.GetAPIReader(), Max: max}).
		WithValidatorCustomPath(APIKeyLimitPath).
		Complete()
}

// ValidateCreate counts the namespace's APIKeys.
func (v *APIKeyLimit) ValidateCreate(ctx context.Context, key *kw.APIKey) (admission.Warnings, error) {
	if v.Max <= 0 {
		return nil, nil
	}
	list := &kw.APIKeyList{}
	if err := v.Reader.List(ctx, list, client.InNamespace(key.Namespace)); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing API keys: %w", err))
	}
	held := kw.APIKeysAhead(key, list.Items)
	if len(held) < v.Max {
		return nil, nil
	}
	return nil, apierrors.NewForbidden(schema.GroupResource{Group: kw.GroupVersion.Group, Resource: "apikeys"}, key.Name,
		fmt.Errorf("namespace %q already holds %d API keys, the most allowed (%d): %s; delete one first",
			key.Namespace, len(held), v.Max, strings.Join(held, ", ")))
}

// ValidateUpdate allows every update: an update adds no key.
func (v *APIKeyLimit) ValidateUpdate(context.Context, *kw.APIKey, *kw.APIKey) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete allows every deletion.
func (v *APIKeyLimit) ValidateDelete(context.Context, *kw.APIKey) (admission.Warnings, error) {
	return nil, nil
}

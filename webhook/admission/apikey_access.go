package admission

import (
	"context"
	"fmt"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

// APIKeyAccessPath is where the API server sends the requests APIKeyAccess
// checks (beside the APIKeyReferences webhook of the same kind).
const APIKeyAccessPath = "/validate-keys-keyward-dev-v1alpha1-apikey-access"

// The failure policy is Fail, and the matchConditions send only the
// requests it guards: creating an APIKey with importFrom, and adding an age
// recipient to one with a delivery Secret. An unavailable webhook then
// blocks those alone, never suspending, rescoping or deleting a key. The
// controller refuses an import of a key bound elsewhere and never encrypts a
// version that exists to a new recipient on its own; this check adds the
// requester's own permissions, which the controller cannot know, and says
// no at apply time.
//
// +kubebuilder:webhook:path=/validate-keys-keyward-dev-v1alpha1-apikey-access,mutating=false,failurePolicy=fail,sideEffects=None,groups=keys.keyward.dev,resources=apikeys,verbs=create;update,versions=v1alpha1,name=vapikey-access.keys.keyward.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"imports-or-adds-age-recipients","expression":"(request.operation == 'CREATE' && has(object.spec.importFrom)) || (request.operation == 'UPDATE' && has(object.spec.secretName) && has(object.spec.delivery) && object.spec.delivery.ageRecipients.exists(r, !has(oldObject.spec.delivery) || !(r in oldObject.spec.delivery.ageRecipients)))"}]}`
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// APIKeyAccess refuses, by a SubjectAccessReview for the requesting user,
// what would hand someone a key they may not read (issue 12): an importFrom
// naming a Secret they may not get (Keyward would derive a key id from it,
// and vouch for a key its importer never saw), an importFrom naming a Secret
// Keyward writes (a key bound to its owner already), and an age recipient
// added to an APIKey whose delivery Secret, the key in use, they may not get.
type APIKeyAccess struct {
	// Reader reads Secrets' metadata live: the webhook has no cache of them.
	Reader client.Reader
	// Reviews creates the SubjectAccessReviews.
	Reviews client.Writer
}

// SetupAPIKeyAccess registers the webhook with the manager's webhook server.
func SetupAPIKeyAccess(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &kw.APIKey{}).
		WithValidator(&APIKeyAccess{Reader: mgr.GetAPIReader(), Reviews: mgr.GetClient()}).
		WithValidatorCustomPath(APIKeyAccessPath).
		Complete()
}

// ValidateCreate checks an import: the requester may read its Secret, and
// the Secret is not one Keyward writes.
func (v *APIKeyAccess) ValidateCreate(ctx context.Context, key *kw.APIKey) (admission.Warnings, error) {
	ref := key.Spec.ImportFrom
	if ref == nil {
		return nil, nil
	}
	user, err := requester(ctx)
	if err != nil {
		return nil, err
	}
	if ok, err := v.mayGetSecret(ctx, user, key.Namespace, ref.Name); err != nil {
		return nil, err
	} else if !ok {
		return nil, forbidden(key, fmt.Errorf("spec.importFrom: user %q may not get Secret %q in namespace %q: "+
			"only someone who may read a key may import it", user.Username, ref.Name, key.Namespace))
	}
	// Checked after the review, so it tells nothing about a Secret the
	// requester may not read.
	meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}
	switch err := v.Reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: ref.Name}, meta); {
	case apierrors.IsNotFound(err): // APIKeyReferences warns
	case err != nil:
		return nil, apierrors.NewInternalError(fmt.Errorf("reading Secret %q: %w", ref.Name, err))
	default:
		if by := hashsecret.WrittenBy(meta); by != "" {
			return nil, forbidden(key, fmt.Errorf("spec.importFrom: Secret %q is written by Keyward (%s): the key in it is bound to that owner "+
				"and is never imported into another; use that key, or import a Secret of your own", ref.Name, by))
		}
	}
	return nil, nil
}

// ValidateUpdate checks an added age recipient: the requester may read the
// key in use, in the delivery Secret. (importFrom is immutable.)
func (v *APIKeyAccess) ValidateUpdate(ctx context.Context, old, key *kw.APIKey) (admission.Warnings, error) {
	if key.Spec.SecretName == "" || !addsRecipient(recipientsOf(key), recipientsOf(old)) {
		return nil, nil
	}
	user, err := requester(ctx)
	if err != nil {
		return nil, err
	}
	if ok, err := v.mayGetSecret(ctx, user, key.Namespace, key.Spec.SecretName); err != nil {
		return nil, err
	} else if !ok {
		return nil, forbidden(key, fmt.Errorf("spec.delivery.ageRecipients: adding an age recipient requires permission to get Secret %q "+
			"(spec.secretName), which holds the key in use, and user %q may not; ask someone who may, or create another APIKey",
			key.Spec.SecretName, user.Username))
	}
	return nil, nil
}

// ValidateDelete allows every deletion (the webhook is not registered for them).
func (v *APIKeyAccess) ValidateDelete(context.Context, *kw.APIKey) (admission.Warnings, error) {
	return nil, nil
}

// mayGetSecret asks the API server whether user may get Secret
// namespace/name: the requester's own rights, never the webhook's.
func (v *APIKeyAccess) mayGetSecret(ctx context.Context, user authenticationv1.UserInfo, namespace, name string) (bool, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(user.Extra))
	for k, vals := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(vals)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: "get", Version: "v1", Resource: "secrets", Name: name,
		},
	}}
	if err := v.Reviews.Create(ctx, sar); err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("asking whether %q may get Secret %q: %w", user.Username, name, err))
	}
	return sar.Status.Allowed && !sar.Status.Denied, nil
}

// requester is the user who made the admission request.
func requester(ctx context.Context) (authenticationv1.UserInfo, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return authenticationv1.UserInfo{}, apierrors.NewInternalError(err)
	}
	return req.UserInfo, nil
}

func forbidden(key *kw.APIKey, err error) error {
	return apierrors.NewForbidden(schema.GroupResource{Group: kw.GroupVersion.Group, Resource: "apikeys"}, key.Name, err)
}

func recipientsOf(key *kw.APIKey) []string {
	if key == nil || key.Spec.Delivery == nil {
		return nil
	}
	return key.Spec.Delivery.AgeRecipients
}

// addsRecipient reports whether want holds a recipient had lacks.
func addsRecipient(want, had []string) bool {
	return slices.ContainsFunc(want, func(r string) bool { return !slices.Contains(had, r) })
}

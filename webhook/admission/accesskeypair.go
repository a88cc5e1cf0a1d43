// Package admission holds the validating admission webhooks for rules the
// API server cannot check alone from one object (CEL covers the rest).
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

// The failure policy is Fail: when the operator is down no pair can be
// issued anyway, and Ignore would let a burst of creations past the limit
// (the controller would still refuse them, but as objects users must clean up).
//
// +kubebuilder:webhook:path=/validate-keys-keyward-dev-v1alpha1-accesskeypair,mutating=false,failurePolicy=fail,sideEffects=None,groups=keys.keyward.dev,resources=accesskeypairs,verbs=create,versions=v1alpha1,name=vaccesskeypair.keys.keyward.dev,admissionReviewVersions=v1,timeoutSeconds=5

// PairLimit refuses an AccessKeyPair that would give its subject more pairs
// in the namespace than allowed.
type PairLimit struct {
	// Reader lists pairs; the API server itself (not a cache), so two
	// requests in a row see each other.
	Reader client.Reader
	Max    int
}

// SetupPairLimit registers the webhook with the manager's webhook server.
func SetupPairLimit(mgr ctrl.Manager, max int) error {
	return ctrl.NewWebhookManagedBy(mgr, &kw.AccessKeyPair{}).
		WithValidator(&PairLimit{Reader: mgr.GetAPIReader(), Max: max}).
		Complete()
}

// ValidateCreate counts the subject's pairs.
func (v *PairLimit) ValidateCreate(ctx context.Context, pair *kw.AccessKeyPair) (admission.Warnings, error) {
	list := &kw.AccessKeyPairList{}
	if err := v.Reader.List(ctx, list, client.InNamespace(pair.Namespace)); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing access key pairs: %w", err))
	}
	subject := pair.EffectiveSubject()
	held := kw.PairsAhead(pair, list.Items)
	if len(held) < v.Max {
		return nil, nil
	}
	return nil, apierrors.NewForbidden(schema.GroupResource{Group: kw.GroupVersion.Group, Resource: "accesskeypairs"}, pair.Name,
		fmt.Errorf("subject %q already holds %d access key pairs in namespace %q, the most allowed (%d): %s; delete one first",
			subject, len(held), pair.Namespace, v.Max, strings.Join(held, ", ")))
}

// ValidateUpdate allows every update: the subject is immutable (CEL).
func (v *PairLimit) ValidateUpdate(context.Context, *kw.AccessKeyPair, *kw.AccessKeyPair) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete allows every deletion.
func (v *PairLimit) ValidateDelete(context.Context, *kw.AccessKeyPair) (admission.Warnings, error) {
	return nil, nil
}

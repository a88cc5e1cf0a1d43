// Package keypolicy is the controller of KeyPolicy status: whether each
// policy is accepted, and how many of its hosts the key server applies it
// to. It writes nothing else; the key server reads the policies themselves
// and settles conflicts with the same function (internal/keypolicy), so a
// status never disagrees with what the key server does.
package keypolicy

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kw "github.com/keyward/keyward/api/v1alpha1"
	policy "github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/tracing"
)

// Options tune the controller.
type Options struct {
	// Clock stamps condition transitions; nil means the real clock.
	Clock clock.PassiveClock
}

// Setup registers the KeyPolicy status controller with the manager.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return (&Reconciler{Client: mgr.GetClient(), Clock: o.Clock}).SetupWithManager(mgr)
}

// Reconciler sets the status of every KeyPolicy.
type Reconciler struct {
	Client client.Client
	Clock  clock.PassiveClock
}

// everyPolicy is the one request every KeyPolicy event maps to.
//
// Whether a policy holds a host depends on every other policy naming it,
// in any namespace: a change to one can change the status of many (the
// winner deleted, the loser takes over). So the whole set is one unit of
// work: the queue folds a burst of events into one pass over the cache,
// O(n) per pass, where a reconcile per object would list every policy for
// each of them, O(n²), and could report from two different snapshots.
var everyPolicy = reconcile.Request{NamespacedName: types.NamespacedName{Name: "every-keypolicy"}}

// SetupWithManager watches every KeyPolicy. Status changes (ours included)
// are watched too: a status someone else edited is put back; ours cost one
// more pass that patches nothing.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("keypolicy").
		Watches(&kw.KeyPolicy{}, handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
			return []reconcile.Request{everyPolicy}
		})).
		Complete(tracing.Reconciler("keypolicy", r))
}

// +kubebuilder:rbac:groups=keys.keyward.dev,resources=keypolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=keys.keyward.dev,resources=keypolicies/status,verbs=patch

// Reconcile resolves every policy and patches the status of each whose
// status differs: one patch per object, none when nothing changed.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	var list kw.KeyPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		return ctrl.Result{}, err
	}
	table := policy.Build(list.Items)
	now := metav1.NewTime(r.Clock.Now())
	var errs []error
	for i := range list.Items {
		obj := &list.Items[i]
		st, ok := table.Status(policy.Ref{Namespace: obj.Namespace, Name: obj.Name})
		if !ok {
			continue // being deleted
		}
		want := desiredStatus(obj, st, now)
		if equality.Semantic.DeepEqual(obj.Status, want) {
			continue
		}
		patch := client.MergeFrom(obj.DeepCopy())
		obj.Status = want
		if err := r.Client.Status().Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	// The queue retries with backoff; what was patched stays patched.
	return ctrl.Result{}, errors.Join(errs...)
}

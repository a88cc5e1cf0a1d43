// Package signingkey is the controller of the key server's ES256 signing
// keys: it creates the key set on first start, rotates it every period and
// drops retired public keys once no token they signed can still be valid.
package signingkey

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/signingkeys"
	"github.com/keyward/keyward/internal/tracing"
)

// Defaults for the flags.
const (
	DefaultPeriod           = 30 * 24 * time.Hour
	DefaultMaxTokenLifetime = 7 * 24 * time.Hour
)

// Reconciler keeps the signing key Secret current.
type Reconciler struct {
	Client    client.Client
	Clock     clock.PassiveClock
	Namespace string
	Period    time.Duration
	// MaxTokenLifetime is the longest lifetime the key server grants; a
	// retired key stays published this long.
	MaxTokenLifetime time.Duration
}

// SetupWithManager registers the controller; it runs once at start and on
// every change to the Secret.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	start := make(chan event.GenericEvent, 1)
	start <- event.GenericEvent{Object: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: signingkeys.SecretName}}}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.Namespace && o.GetName() == signingkeys.SecretName
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("signingkey").
		WatchesRawSource(source.Channel(start, &handler.EnqueueRequestForObject{})).
		Watches(&corev1.Secret{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(ours)).
		Complete(tracing.Reconciler("signingkey", r))
}

// Reconcile creates, rotates and prunes the key set.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	now := r.Clock.Now().UTC()
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: signingkeys.SecretName}, sec)
	switch {
	case apierrors.IsNotFound(err):
		sec = nil
	case err != nil:
		return ctrl.Result{}, err
	}
	var ks *signingkeys.KeySet
	if sec != nil {
		// A corrupt set is replaced: tokens it signed fail, new ones work.
		ks, _ = signingkeys.Decode(sec)
	}
	plan := signingkeys.Decide(ks, now, r.Period)
	if !plan.Generate && len(plan.Prune) == 0 {
		return ctrl.Result{RequeueAfter: plan.Next}, nil
	}
	next, err := signingkeys.Apply(ks, plan, now, r.MaxTokenLifetime)
	if err != nil {
		return ctrl.Result{}, err
	}
	raw, err := signingkeys.Encode(next)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sec == nil {
		// Create, never Update, a missing set: when two replicas race,
		// one wins and the other retries against the winner's keys.
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: signingkeys.SecretName, Labels: map[string]string{
				hashsecret.LabelManagedBy: hashsecret.ManagedBy, signingkeys.LabelSigningKeys: "true",
			}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{signingkeys.DataKeySet: raw},
		}
		err = r.Client.Create(ctx, sec)
	} else {
		sec = sec.DeepCopy()
		sec.Data = map[string][]byte{signingkeys.DataKeySet: raw}
		err = r.Client.Update(ctx, sec) // resourceVersion: a racing writer conflicts
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	logf.FromContext(ctx).Info("signing keys updated", "activeKeyID", next.Keys[0].ID, "keys", len(next.Keys), "rotated", plan.Generate)
	return ctrl.Result{RequeueAfter: signingkeys.Decide(next, now, r.Period).Next}, nil
}

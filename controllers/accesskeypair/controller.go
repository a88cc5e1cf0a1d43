// Package accesskeypair is the AccessKeyPair controller: it issues an access
// key id and secret key, delivers both to spec.secretName, keeps only the
// secret key's hash in the hash Secret, enforces the per-subject limit, and
// revokes on suspension, expiry and deletion. The lifecycle it shares with
// APIKeys is keylifecycle's; this package supplies what only pairs do: one
// version, the per-subject limit and the token policy, decided as a plan
// (decide.go) and run as phases (phases.go).
package accesskeypair

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/hashsecret"
)

// DefaultMaxPerSubject is how many pairs one subject may hold in a
// namespace (DCE's limit).
const DefaultMaxPerSubject = 2

// Step names a point between two writes, for fault injection in tests.
type Step = keylifecycle.Step

// StepDelivered: a new pair is in the delivery Secret, not yet recorded.
const StepDelivered = keylifecycle.StepDelivered

// Reconciler reconciles AccessKeyPairs (keylifecycle.Config describes the
// fields it shares with APIKeys).
type Reconciler struct {
	Client             client.Client
	APIReader          client.Reader
	Clock              clock.PassiveClock
	Recorder           events.EventRecorder
	MaxPerSubject      int
	ExpiringSoonWindow time.Duration
	HashNamespace      string
	Resync             time.Duration
	AfterWrite         func(context.Context, client.ObjectKey, Step) error
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.MaxPerSubject == 0 {
		r.MaxPerSubject = DefaultMaxPerSubject
	}
	lc, err := keylifecycle.New(keylifecycle.Config{
		Client: r.Client, APIReader: r.APIReader, Clock: r.Clock, Recorder: r.Recorder, HashNamespace: r.HashNamespace,
		ExpiringSoonWindow: r.ExpiringSoonWindow, Resync: r.Resync, AfterWrite: r.AfterWrite,
	}, pairs{r})
	if err != nil {
		return err
	}
	return lc.SetupWithManager(mgr, predicate.GenerationChangedPredicate{}, func(b *builder.Builder) *builder.Builder {
		// A pair leaving frees a place under its subject's limit.
		return b.Watches(&kw.AccessKeyPair{}, handler.EnqueueRequestsFromMapFunc(r.siblings))
	})
}

func (r *Reconciler) siblings(ctx context.Context, obj client.Object) []reconcile.Request {
	list := &kw.AccessKeyPairList{}
	if err := r.Client.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, p := range list.Items {
		if p.Name != obj.GetName() {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
	}
	return out
}

// pairs is the AccessKeyPair kind of keylifecycle.
type pairs struct{ r *Reconciler }

var names = keylifecycle.Names{Kind: hashsecret.KindAccessKeyPair, TypeName: "AccessKeyPair", Words: keylifecycle.Words{
	Noun: "pair", Version: "access key", Pending: "no access key is issued yet",
	Suspended: "the pair is suspended: no tokens are issued and issued tokens are refused"}}

func (pairs) Names() keylifecycle.Names { return names }

func (pairs) New() *kw.AccessKeyPair { return &kw.AccessKeyPair{} }

func (pairs) View(p *kw.AccessKeyPair) keylifecycle.View {
	st := &p.Status
	return keylifecycle.View{Status: st, Conditions: &st.Conditions, ObservedGeneration: &st.ObservedGeneration, CurrentID: &st.AccessKeyID,
		SecretName: p.Spec.SecretName, Suspended: p.Spec.Suspended, Expiry: expiryOf(p.Spec)}
}

// Gauges: a pair has no scheduled rotation.
func (pairs) Gauges(p *kw.AccessKeyPair) (expiresAt, rotatesAt *time.Time) {
	return expiryOf(p.Spec), nil
}

// Converge observes what only pairs read (the delivered pair, the subject's
// other pairs), plans and runs the phases.
func (k pairs) Converge(ctx context.Context, sc *keylifecycle.Scope[*kw.AccessKeyPair]) (ctrl.Result, error) {
	s, err := k.r.observe(ctx, sc)
	if err != nil {
		return ctrl.Result{}, err
	}
	return keylifecycle.Run(ctx, s, phases...)
}

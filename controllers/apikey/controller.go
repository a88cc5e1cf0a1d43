// Package apikey is the APIKey controller: it issues key versions, writes
// the hash Secret and the deliveries, rotates and expires keys on time, and
// removes everything on deletion. The lifecycle it shares with
// AccessKeyPairs is keylifecycle's; this package supplies what only APIKeys
// do: versions with grace, imports, age delivery and self-rotation, decided
// as a plan (plan.go) and run as phases (phases.go).
package apikey

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keylimit"
)

// Step names a point between two writes of one reconcile, for fault
// injection in tests (Reconciler.AfterWrite).
type Step = keylifecycle.Step

// The points AfterWrite is called at.
const (
	StepDelivered = keylifecycle.StepDelivered
	StepRecorded  = keylifecycle.StepRecorded
)

// Defaults for the Reconciler's tunables, and how many keys are reconciled
// at once: keylifecycle's.
const (
	DefaultExpiringSoonWindow = keylifecycle.DefaultExpiringSoonWindow
	DefaultResync             = keylifecycle.DefaultResync
	MaxConcurrentReconciles   = keylifecycle.MaxConcurrentReconciles
)

// Defaults of Reconciler.RequestedRotations: rotations by annotation, per
// key, like self-rotations: 2 at once, then one a minute. An incident that
// must cut a key off deletes or suspends it, which is never limited.
const (
	DefaultRequestedRotationBurst  = 2
	DefaultRequestedRotationRefill = time.Minute
)

// Reconciler reconciles APIKeys (keylifecycle.Config describes the fields
// it shares with AccessKeyPairs).
type Reconciler struct {
	Client client.Client
	// APIReader reads live from the API server: the user's importFrom
	// Secret, and a freshness check before a new version is issued.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	// HashNamespace is where hash Secrets live: the keys namespace.
	HashNamespace      string
	ExpiringSoonWindow time.Duration
	Resync             time.Duration
	AfterWrite         func(context.Context, client.ObjectKey, Step) error
	// RequestedRotations limits, per key, the rotations asked for with the
	// rotate annotation (the excess is deferred, not dropped); nil: none.
	RequestedRotations *keylimit.Limiter
	// MaxPerNamespace caps the APIKeys of a namespace
	// (--max-apikeys-per-namespace); a key past it is not issued. 0: no cap.
	MaxPerNamespace int
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	lc, err := keylifecycle.New(keylifecycle.Config{Client: r.Client, APIReader: r.APIReader, Clock: r.Clock, Recorder: r.Recorder,
		HashNamespace: r.HashNamespace, ExpiringSoonWindow: r.ExpiringSoonWindow, Resync: r.Resync, AfterWrite: r.AfterWrite}, apiKeys{r})
	if err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Secret{}, IndexHashes, hashesOf); err != nil {
		return err
	}
	// Spec changes, the rotate annotation, deletion and the key server's
	// self-rotation requests; not our own status writes.
	var extend func(*builder.Builder) *builder.Builder
	if r.MaxPerNamespace > 0 {
		// A key leaving frees a place under the cap.
		extend = func(b *builder.Builder) *builder.Builder {
			return b.Watches(&kw.APIKey{}, handler.EnqueueRequestsFromMapFunc(r.overCapSiblings))
		}
	}
	return lc.SetupWithManager(mgr, predicate.Or[client.Object](
		predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, selfRotationRequested), extend)
}

// selfRotationRequested passes updates that bring a new self-rotation
// request.
var selfRotationRequested = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*kw.APIKey)
	n, ok2 := e.ObjectNew.(*kw.APIKey)
	if !ok1 || !ok2 || n.Status.SelfRotationRequest == nil {
		return false
	}
	return o.Status.SelfRotationRequest == nil || o.Status.SelfRotationRequest.ID != n.Status.SelfRotationRequest.ID
}}

// apiKeys is the APIKey kind of keylifecycle.
type apiKeys struct{ r *Reconciler }

var names = keylifecycle.Names{Kind: hashsecret.KindAPIKey, TypeName: "APIKey", Words: keylifecycle.Words{
	Noun: "key", Version: "version", Suspended: "the key is suspended", Pending: "no key version is issued yet"}}

func (apiKeys) Names() keylifecycle.Names { return names }

func (apiKeys) New() *kw.APIKey { return &kw.APIKey{} }

func (apiKeys) View(k *kw.APIKey) keylifecycle.View {
	return keylifecycle.View{Status: &k.Status, Conditions: &k.Status.Conditions, ObservedGeneration: &k.Status.ObservedGeneration,
		CurrentID: &k.Status.KeyID, SecretName: k.Spec.SecretName, Suspended: k.Spec.Suspended, Expiry: effectiveExpiry(k.Spec, k.CreationTimestamp)}
}

func (apiKeys) Gauges(k *kw.APIKey) (expiresAt, rotatesAt *time.Time) {
	return timeOf(k.Status.ExpiresAt), timeOf(k.Status.NextRotationAt)
}

// Converge observes what only APIKeys read, plans and runs the phases; a
// self-rotation answer reaches the status once they all succeeded.
func (a apiKeys) Converge(ctx context.Context, sc *keylifecycle.Scope[*kw.APIKey]) (ctrl.Result, error) {
	s, err := a.r.observe(ctx, sc)
	if err != nil {
		return ctrl.Result{}, err
	}
	planSelfRotation(s)
	res, err := keylifecycle.Run(ctx, s, phases...)
	if err == nil && s.answer != nil {
		s.key.Status.SelfRotationResponse = s.answer
	}
	return res, err
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

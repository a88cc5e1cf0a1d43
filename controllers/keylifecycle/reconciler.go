// Package keylifecycle is the lifecycle APIKeys and AccessKeyPairs share:
// Reconcile's skeleton (get, finalizer, observe, converge, one status
// patch), deletion, the reads of the hash and delivery Secrets, the
// freshness guard before an overwrite, the record write, the Ready
// condition with its events, and when to look again. A kind supplies what
// differs through Kind: what else it observes, its decide step (a plan) and
// the record it writes, run as phases (Run).
package keylifecycle

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keymetrics"
	"github.com/keyward/keyward/controllers/ownedsecret"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/tracing"
)

// Defaults of Config, and how the controllers run.
const (
	DefaultExpiringSoonWindow = 7 * 24 * time.Hour
	// DefaultResync: delivery and importFrom Secrets live in the users'
	// namespaces, where the controllers may not list or watch Secrets, so a
	// key that has one is re-read this often (an edit or deletion of either
	// is repaired within it).
	DefaultResync = 5 * time.Minute
	// MaxConcurrentReconciles: keys are independent and each is handled by
	// one worker at a time; one worker made 1,000 keys take 30x the API
	// server's write floor, and 8 left it idle half the time
	// (docs/performance-log.md).
	MaxConcurrentReconciles = 16
)

// Step names a point between two writes of one reconcile, for fault
// injection in tests (Config.AfterWrite).
type Step string

const (
	// StepDelivered: a new version is in the delivery Secret; for a first
	// or self-rotated version, not yet in the hash Secret.
	StepDelivered Step = "delivered"
	// StepRecorded: the hash Secret is written, the status is not (and a
	// scheduled or requested rotation is not delivered yet).
	StepRecorded Step = "recorded"
)

// Config is what the controller of either kind is given.
type Config struct {
	Client client.Client
	// APIReader reads live from the API server: delivery and importFrom
	// Secrets (outside the cache), and the freshness check before an
	// overwrite.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	// HashNamespace is where hash Secrets live: the keys namespace.
	HashNamespace string
	// ExpiringSoonWindow: how long before expiry Ready's reason becomes
	// ExpiringSoon and the ExpiringSoon event is emitted.
	ExpiringSoonWindow time.Duration
	Resync             time.Duration
	// AfterWrite, when set (tests only), runs after each write of a
	// reconcile; an error ends the reconcile there, as a crash would.
	AfterWrite func(context.Context, client.ObjectKey, Step) error
}

// Names name a kind: in its controller, its Secrets and its messages.
type Names struct {
	// Kind is the hash Secrets' kind (hashsecret.KindAPIKey), which also
	// names the controller and labels the metrics.
	Kind string
	// TypeName is the API kind, "APIKey": owner references and messages.
	TypeName string
	Words    Words
}

// Kind is what one kind of key supplies to the lifecycle.
type Kind[O client.Object] interface {
	Names() Names
	// New returns an empty object of the kind.
	New() O
	// View shows the lifecycle the parts of obj it reads and writes.
	View(obj O) View
	// Converge observes what else the kind needs, decides and writes, as
	// phases (Run); the status is patched after it, once.
	Converge(ctx context.Context, sc *Scope[O]) (ctrl.Result, error)
	// Gauges are the times the key's metrics report.
	Gauges(obj O) (expiresAt, rotatesAt *time.Time)
}

// View is the part of a key's object the lifecycle reads and writes:
// pointers into its status, and facts of its spec.
type View struct {
	// Status is the whole status, compared and patched after a reconcile.
	Status             any
	Conditions         *[]metav1.Condition
	ObservedGeneration *int64
	// CurrentID is the status's current version (keyID, accessKeyID):
	// Ready is Pending without one.
	CurrentID  *string
	SecretName string
	Suspended  bool
	Expiry     *time.Time
}

// Reconciler runs the lifecycle of one kind of key.
type Reconciler[O client.Object] struct {
	cfg   Config
	kind  Kind[O]
	names Names
	// own: hash Secret writes whose watch events need no reconcile.
	own ownedsecret.OwnWrites
}

// New checks cfg, fills in its defaults and returns the kind's reconciler.
func New[O client.Object](cfg Config, kind Kind[O]) (*Reconciler[O], error) {
	names := kind.Names()
	if cfg.HashNamespace == "" {
		return nil, errors.New(names.Kind + ": HashNamespace (the keys namespace) is required")
	}
	if cfg.ExpiringSoonWindow == 0 {
		cfg.ExpiringSoonWindow = DefaultExpiringSoonWindow
	}
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	return &Reconciler[O]{cfg: cfg, kind: kind, names: names}, nil
}

// SetupWithManager registers the controller: the kind's objects that pass
// pred, the hash Secrets they own (the cache holds Secrets of Keyward's
// namespaces only: an edit or deletion is repaired, one whose owner is gone
// is removed), and what extend adds.
func (r *Reconciler[O]) SetupWithManager(mgr ctrl.Manager, pred predicate.Predicate, extend func(*builder.Builder) *builder.Builder) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named(r.names.Kind).
		WithOptions(controller.Options{MaxConcurrentReconciles: MaxConcurrentReconciles}).
		For(r.kind.New(), builder.WithPredicates(pred)).
		Watches(&corev1.Secret{}, ownedsecret.EnqueueHashOwner(r.names.Kind, &r.own))
	if extend != nil {
		b = extend(b)
	}
	return b.Complete(tracing.Reconciler(r.names.Kind, r))
}

// Reconcile converges one key: it reads the object, lets a deleted one go,
// ensures the finalizer, observes, lets the kind converge, and patches the
// status once.
func (r *Reconciler[O]) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.kind.New()
	if err := r.cfg.Client.Get(ctx, req.NamespacedName, obj); apierrors.IsNotFound(err) {
		return ctrl.Result{}, ownedsecret.DeleteOrphan(ctx, r.cfg.APIReader, r.cfg.Client, r.kind.New(), req.NamespacedName,
			r.cfg.HashNamespace, r.hashName(req.Namespace, req.Name))
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, r.finalize(ctx, obj)
	}
	if !controllerutil.ContainsFinalizer(obj, kw.FinalizerCleanup) {
		patch := client.MergeFrom(obj.DeepCopyObject().(O))
		controllerutil.AddFinalizer(obj, kw.FinalizerCleanup)
		if err := r.cfg.Client.Patch(ctx, obj, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	orig := obj.DeepCopyObject().(O)
	sc, err := r.observe(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	res, err := r.kind.Converge(ctx, sc)
	return r.settle(ctx, sc, orig, res, err)
}

// settle stamps observedGeneration when the reconcile succeeded, patches the
// status once (not after a crash injected by AfterWrite: no write follows
// one), and reports the key's gauges.
func (r *Reconciler[O]) settle(ctx context.Context, sc *Scope[O], orig O, res ctrl.Result, err error) (ctrl.Result, error) {
	if errors.Is(err, errCrashed) {
		return ctrl.Result{}, err
	}
	obj := sc.Object
	if err == nil {
		*sc.View.ObservedGeneration = obj.GetGeneration()
	}
	if perr := PatchStatus(ctx, r.cfg.Client, obj, orig, sc.View.Status, r.kind.View(orig).Status); perr != nil {
		return ctrl.Result{}, errors.Join(err, perr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	expires, rotates := r.kind.Gauges(obj)
	keymetrics.Observe(r.names.Kind, obj.GetNamespace(), obj.GetName(),
		meta.IsStatusConditionTrue(*sc.View.Conditions, kw.ConditionReady), expires, rotates)
	logf.FromContext(ctx).V(1).Info("reconciled", "keyID", *sc.View.CurrentID, "requeueAfter", res.RequeueAfter)
	return res, nil
}

// finalize revokes the key at once: it deletes the hash Secret (which the
// key server watches) and the delivery Secret, then lets the object go.
func (r *Reconciler[O]) finalize(ctx context.Context, obj O) error {
	if !controllerutil.ContainsFinalizer(obj, kw.FinalizerCleanup) {
		return nil
	}
	hashName := r.hashName(obj.GetNamespace(), obj.GetName())
	// Live reads: a cache that lags must not leave a valid hash Secret behind.
	if err := ownedsecret.DeleteOwned(ctx, r.cfg.APIReader, r.cfg.Client, obj, r.cfg.HashNamespace, hashName); err != nil {
		return err
	}
	if err := ownedsecret.DeleteOwned(ctx, r.cfg.APIReader, r.cfg.Client, obj, "", r.kind.View(obj).SecretName); err != nil {
		return err
	}
	keymetrics.Forget(r.names.Kind, obj.GetNamespace(), obj.GetName())
	r.own.Forget(r.cfg.HashNamespace, hashName)
	patch := client.MergeFrom(obj.DeepCopyObject().(O))
	controllerutil.RemoveFinalizer(obj, kw.FinalizerCleanup)
	return r.cfg.Client.Patch(ctx, obj, patch)
}

func (r *Reconciler[O]) hashName(namespace, name string) string {
	return hashsecret.Name(r.names.Kind, namespace, name)
}

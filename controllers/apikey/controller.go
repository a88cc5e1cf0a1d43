// Package apikey is the APIKey controller: it issues key versions, writes
// the hash Secret and the deliveries, rotates and expires keys on time, and
// removes everything on deletion.
package apikey

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
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keymetrics"
	"github.com/keyward/keyward/controllers/keystatus"
	"github.com/keyward/keyward/controllers/ownedsecret"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keylimit"
)

// Step names a point between two writes of one reconcile, for fault
// injection in tests (Reconciler.AfterWrite).
type Step string

const (
	// StepDelivered: a new version is in the delivery Secret; for a first
	// or self-rotated version, not yet in the hash Secret.
	StepDelivered Step = "delivered"
	// StepRecorded: the hash Secret is written, the status is not (and a
	// scheduled or requested rotation is not delivered yet).
	StepRecorded Step = "recorded"
)

// Defaults for the Reconciler's tunables.
const (
	DefaultExpiringSoonWindow = 7 * 24 * time.Hour
	// DefaultResync: importFrom and delivery Secrets live in the users'
	// namespaces, where the controllers may not list or watch Secrets, so a
	// key that has one is re-read this often (an edit or deletion of either
	// is repaired within it).
	DefaultResync = 5 * time.Minute
)

// Defaults of Reconciler.RequestedRotations: rotations by annotation, per
// key, like self-rotations: 2 at once, then one a minute. An incident that
// must cut a key off deletes or suspends it, which is never limited.
const (
	DefaultRequestedRotationBurst  = 2
	DefaultRequestedRotationRefill = time.Minute
)

// MaxConcurrentReconciles is how many keys are reconciled at once.
const MaxConcurrentReconciles = 16

// Reconciler reconciles APIKeys.
type Reconciler struct {
	Client client.Client
	// APIReader reads live from the API server: the user's importFrom
	// Secret, and a freshness check before a new version is issued.
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
	// RequestedRotations limits, per key, the rotations asked for with the
	// rotate annotation (the excess is deferred, not dropped); nil: none.
	RequestedRotations *keylimit.Limiter

	// own: hash Secret writes whose watch events need no reconcile.
	own ownedsecret.OwnWrites
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.ExpiringSoonWindow == 0 {
		r.ExpiringSoonWindow = DefaultExpiringSoonWindow
	}
	if r.Resync == 0 {
		r.Resync = DefaultResync
	}
	if r.HashNamespace == "" {
		return errors.New("apikey: HashNamespace (the keys namespace) is required")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Secret{}, IndexHashes, hashesOf); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("apikey").
		// Keys are independent and each is handled by one worker at a
		// time; one worker made 1,000 keys take 30x the API server's
		// write floor, and 8 left it idle half the time
		// (docs/performance-log.md).
		WithOptions(controller.Options{MaxConcurrentReconciles: MaxConcurrentReconciles}).
		// Spec changes, the rotate annotation, deletion and the key
		// server's self-rotation requests; not our own status writes.
		For(&kw.APIKey{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, selfRotationRequested))).
		// Hash Secrets (the cache holds Secrets of Keyward's namespaces only): an
		// edit or deletion is repaired, one whose owner is gone is removed.
		Watches(&corev1.Secret{}, ownedsecret.EnqueueHashOwner(hashsecret.KindAPIKey, &r.own)).
		Complete(r)
}

// Reconcile converges one APIKey.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := &kw.APIKey{}
	if err := r.Client.Get(ctx, req.NamespacedName, key); apierrors.IsNotFound(err) {
		return ctrl.Result{}, ownedsecret.DeleteOrphan(ctx, r.APIReader, r.Client, &kw.APIKey{}, req.NamespacedName,
			r.HashNamespace, hashsecret.Name(hashsecret.KindAPIKey, req.Namespace, req.Name))
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if !key.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, key)
	}
	if !controllerutil.ContainsFinalizer(key, kw.FinalizerCleanup) {
		patch := client.MergeFrom(key.DeepCopy())
		controllerutil.AddFinalizer(key, kw.FinalizerCleanup)
		if err := r.Client.Patch(ctx, key, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	orig := key.DeepCopy()
	s, err := r.observe(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.planSelfRotation(key, s, r.Clock.Now())
	wait, err := r.converge(ctx, key, s)
	if errors.Is(err, errCrashed) {
		return ctrl.Result{}, err
	}
	if err == nil {
		key.Status.ObservedGeneration = key.Generation
		if s.answer != nil {
			key.Status.SelfRotationResponse = s.answer
		}
	}
	if perr := keystatus.PatchStatus(ctx, r.Client, key, orig, &key.Status, &orig.Status); perr != nil {
		return ctrl.Result{}, errors.Join(err, perr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	keymetrics.Observe(hashsecret.KindAPIKey, key.Namespace, key.Name,
		meta.IsStatusConditionTrue(key.Status.Conditions, kw.ConditionReady), timeOf(key.Status.ExpiresAt), timeOf(key.Status.NextRotationAt))
	logf.FromContext(ctx).V(1).Info("reconciled", "keyID", key.Status.KeyID, "requeueAfter", wait)
	return ctrl.Result{RequeueAfter: wait}, nil
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

// errCrashed marks an AfterWrite failure: the reconcile stops with no
// further write, status included.
var errCrashed = errors.New("reconcile stopped after a write (fault injection)")

func (r *Reconciler) afterWrite(ctx context.Context, key *kw.APIKey, step Step) error {
	if r.AfterWrite == nil {
		return nil
	}
	if err := r.AfterWrite(ctx, client.ObjectKeyFromObject(key), step); err != nil {
		return errors.Join(errCrashed, err)
	}
	return nil
}

// finalize revokes the key at once: it deletes the hash Secret (which the
// key server watches) and the delivery Secret, then lets the APIKey go.
func (r *Reconciler) finalize(ctx context.Context, key *kw.APIKey) error {
	if !controllerutil.ContainsFinalizer(key, kw.FinalizerCleanup) {
		return nil
	}
	// Live reads: a cache that lags must not leave a valid hash Secret behind.
	if err := ownedsecret.DeleteOwned(ctx, r.APIReader, r.Client, key, r.HashNamespace,
		hashsecret.Name(hashsecret.KindAPIKey, key.Namespace, key.Name)); err != nil {
		return err
	}
	if err := ownedsecret.DeleteOwned(ctx, r.APIReader, r.Client, key, "", key.Spec.SecretName); err != nil {
		return err
	}
	keymetrics.Forget(hashsecret.KindAPIKey, key.Namespace, key.Name)
	r.own.Forget(r.HashNamespace, hashsecret.Name(hashsecret.KindAPIKey, key.Namespace, key.Name))
	patch := client.MergeFrom(key.DeepCopy())
	controllerutil.RemoveFinalizer(key, kw.FinalizerCleanup)
	return r.Client.Patch(ctx, key, patch)
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

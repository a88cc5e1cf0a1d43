// Package accesskeypair is the AccessKeyPair controller: it issues an access
// key id and secret key, delivers both to spec.secretName, keeps only the
// secret key's hash in the hash Secret, enforces the per-subject limit, and
// revokes on suspension, expiry and deletion.
package accesskeypair

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keymetrics"
	"github.com/keyward/keyward/controllers/keystatus"
	"github.com/keyward/keyward/controllers/ownedsecret"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// Data keys of the delivery Secret.
const (
	DataAccessKeyID = "accessKeyID"
	DataSecretKey   = "secretKey"
)

// DefaultMaxPerSubject is how many pairs one subject may hold in a
// namespace (DCE's limit).
const DefaultMaxPerSubject = 2

// Step names a point between two writes, for fault injection in tests.
type Step string

// StepDelivered: a new pair is in the delivery Secret, not yet recorded.
const StepDelivered Step = "delivered"

// DefaultResync: see Reconciler.Resync.
const DefaultResync = 5 * time.Minute

// MaxConcurrentReconciles is how many keys are reconciled at once.
const MaxConcurrentReconciles = 16

// Reconciler reconciles AccessKeyPairs.
type Reconciler struct {
	Client             client.Client
	APIReader          client.Reader
	Clock              clock.PassiveClock
	Recorder           events.EventRecorder
	MaxPerSubject      int
	ExpiringSoonWindow time.Duration
	// HashNamespace is where hash Secrets live: the keys namespace.
	HashNamespace string
	// Resync is how often the delivery Secret is re-read: it lives where
	// the controllers may not watch Secrets. Defaults to DefaultResync.
	Resync time.Duration
	// AfterWrite, when set (tests only), runs after each write; an error
	// ends the reconcile there, as a crash would.
	AfterWrite func(context.Context, client.ObjectKey, Step) error

	// own: hash Secret writes whose watch events need no reconcile.
	own ownedsecret.OwnWrites
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.MaxPerSubject == 0 {
		r.MaxPerSubject = DefaultMaxPerSubject
	}
	if r.Resync == 0 {
		r.Resync = DefaultResync
	}
	if r.HashNamespace == "" {
		return errors.New("accesskeypair: HashNamespace (the keys namespace) is required")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("accesskeypair").
		// Keys are independent and each is handled by one worker at a
		// time; one worker made 1,000 keys take 30x the API server's
		// write floor, and 8 left it idle half the time
		// (docs/performance-log.md).
		WithOptions(controller.Options{MaxConcurrentReconciles: MaxConcurrentReconciles}).
		For(&kw.AccessKeyPair{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Hash Secrets (the cache holds Secrets of Keyward's namespaces only).
		Watches(&corev1.Secret{}, ownedsecret.EnqueueHashOwner(hashsecret.KindAccessKeyPair, &r.own)).
		// A pair leaving frees a place under its subject's limit.
		Watches(&kw.AccessKeyPair{}, handler.EnqueueRequestsFromMapFunc(r.siblings)).
		Complete(r)
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

// Reconcile converges one AccessKeyPair.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pair := &kw.AccessKeyPair{}
	if err := r.Client.Get(ctx, req.NamespacedName, pair); apierrors.IsNotFound(err) {
		return ctrl.Result{}, ownedsecret.DeleteOrphan(ctx, r.APIReader, r.Client, &kw.AccessKeyPair{}, req.NamespacedName,
			r.HashNamespace, hashsecret.Name(hashsecret.KindAccessKeyPair, req.Namespace, req.Name))
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if !pair.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, pair)
	}
	if !controllerutil.ContainsFinalizer(pair, kw.FinalizerCleanup) {
		patch := client.MergeFrom(pair.DeepCopy())
		controllerutil.AddFinalizer(pair, kw.FinalizerCleanup)
		if err := r.Client.Patch(ctx, pair, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	orig := pair.DeepCopy()
	s, err := r.observe(ctx, pair)
	if err != nil {
		return ctrl.Result{}, err
	}
	wait, err := r.converge(ctx, pair, s)
	if errors.Is(err, errCrashed) {
		return ctrl.Result{}, err
	}
	if err == nil {
		pair.Status.ObservedGeneration = pair.Generation
	}
	if perr := keystatus.PatchStatus(ctx, r.Client, pair, orig, &pair.Status, &orig.Status); perr != nil {
		return ctrl.Result{}, errors.Join(err, perr)
	}
	if err == nil {
		keymetrics.Observe(hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name,
			meta.IsStatusConditionTrue(pair.Status.Conditions, kw.ConditionReady), expiryOf(pair.Spec), nil)
	}
	return ctrl.Result{RequeueAfter: wait}, err
}

var errCrashed = errors.New("reconcile stopped after a write (fault injection)")

type state struct {
	hashName   string
	hashSecret *corev1.Secret
	record     *hashsecret.Record
	delivery   *corev1.Secret
	conflict   bool
	// deliveredID/deliveredSK are the pair in the delivery Secret.
	deliveredID, deliveredSK string
	overLimit                bool
}

func (r *Reconciler) observe(ctx context.Context, pair *kw.AccessKeyPair) (*state, error) {
	s := &state{hashName: hashsecret.Name(hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name)}
	hs, err := ownedsecret.GetHash(ctx, r.Client, pair, "AccessKeyPair", r.HashNamespace, s.hashName)
	if err != nil {
		return nil, err
	}
	if hs != nil {
		s.hashSecret = hs
		if rec, err := hashsecret.Decode(hs); err == nil {
			s.record = rec
		}
	}

	// Read live: the controllers may not list or watch Secrets outside the
	// Keyward's own namespaces (docs/security.md).
	ds := &corev1.Secret{}
	switch err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pair.Namespace, Name: pair.Spec.SecretName}, ds); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	case !metav1.IsControlledBy(ds, pair):
		s.conflict = true // someone else's Secret: never overwritten
	default:
		s.delivery = ds
		id, sk := string(ds.Data[DataAccessKeyID]), string(ds.Data[DataSecretKey])
		if id != "" && len(id) <= 64 && sk != "" {
			s.deliveredID, s.deliveredSK = id, sk
		}
	}

	list := &kw.AccessKeyPairList{}
	if err := r.Client.List(ctx, list, client.InNamespace(pair.Namespace)); err != nil {
		return nil, err
	}
	s.overLimit = !withinLimit(pair, list.Items, r.MaxPerSubject)
	return s, nil
}

func (r *Reconciler) converge(ctx context.Context, pair *kw.AccessKeyPair, s *state) (time.Duration, error) {
	now := r.Clock.Now().UTC()
	expiry := expiryOf(pair.Spec)
	st := &pair.Status
	st.Subject, st.HashSecretName = SubjectOf(pair), s.hashName
	if s.conflict {
		// Suspension and expiry still reach an existing record.
		if s.record != nil {
			rec := *s.record
			rec.Suspended, rec.ExpiresAt = pair.Spec.Suspended, expiry
			if err := r.writeRecord(ctx, pair, s, &rec); err != nil {
				return 0, err
			}
		}
		r.setConditions(pair, now, expiry, kw.ReasonDeliveryConflict,
			fmt.Sprintf("Secret %q exists and is not owned by this AccessKeyPair; Keyward will not overwrite it", pair.Spec.SecretName))
		return time.Minute, nil
	}

	rec := &hashsecret.Record{}
	if s.record != nil {
		rec = s.record
	}
	in := pairInput{current: rec.Current, expired: keystatus.ExpiredAt(expiry, now), overLimit: s.overLimit, deliveredID: s.deliveredID}
	if rec.Current != nil && s.deliveredID == rec.Current.ID {
		in.deliveredMatches = keymaterial.Verify(rec.Current.Hash, s.deliveredSK)
		if !in.deliveredMatches && s.record != nil {
			// The record was edited: the delivered secret key is the truth.
			rec.Current.Hash = keymaterial.Hash(s.deliveredSK)
			in.deliveredMatches = true
		}
	}
	hadPair := rec.Current != nil || st.AccessKeyID != ""
	switch decidePair(in) {
	case issuePair:
		// A first pair is written by creates alone, which fail rather than
		// overwrite; a later one overwrites: the cache must be current.
		if s.hashSecret != nil || s.delivery != nil {
			if err := ownedsecret.CheckFresh(ctx, r.APIReader, r.HashNamespace, s.hashName, s.hashSecret); err != nil {
				return 0, err
			}
		}
		id, err := keymaterial.GenerateAccessKeyID()
		if err != nil {
			return 0, err
		}
		sk, err := keymaterial.GenerateSecretKey()
		if err != nil {
			return 0, err
		}
		if _, _, err := ownedsecret.Put(ctx, r.Client, pair, s.delivery, ownedsecret.Desired{
			Name: pair.Spec.SecretName, Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{DataAccessKeyID: []byte(id), DataSecretKey: []byte(sk)},
		}); err != nil {
			return 0, err
		}
		if r.AfterWrite != nil {
			if err := r.AfterWrite(ctx, client.ObjectKeyFromObject(pair), StepDelivered); err != nil {
				return 0, errors.Join(errCrashed, err)
			}
		}
		rec.Current = &hashsecret.Version{ID: id, Hash: keymaterial.Hash(sk), NotBefore: now}
		r.event(pair, corev1.EventTypeNormal, kw.ReasonIssued, "Issue", "issued access key %s", id)
		if hadPair {
			r.event(pair, corev1.EventTypeWarning, kw.EventKeyReissued, "Issue", "the delivered secret key was lost; issued access key %s", id)
		}
	case adoptPair:
		rec.Current = &hashsecret.Version{ID: s.deliveredID, Hash: keymaterial.Hash(s.deliveredSK), NotBefore: now}
		if !hadPair {
			r.event(pair, corev1.EventTypeNormal, kw.ReasonIssued, "Issue", "issued access key %s", s.deliveredID)
		}
	case revokePair:
		rec.Current = nil
	case keepPair:
	}

	rec.Kind, rec.Namespace, rec.Name = hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name
	rec.Subject = SubjectOf(pair)
	rec.Groups, rec.Scopes = slices.Clone(pair.Spec.Groups), slices.Clone(pair.Spec.Scopes)
	rec.Suspended = pair.Spec.Suspended
	rec.Tokens = tokenPolicy(pair.Spec)
	rec.ExpiresAt = expiry
	if rec.Current != nil {
		// Exactly the expiry: an extended or removed expiry revives the pair.
		rec.Current.NotAfter = nil
		if expiry != nil {
			end := *expiry
			rec.Current.NotAfter = &end
		}
	}
	if err := r.writeRecord(ctx, pair, s, rec); err != nil {
		return 0, err
	}

	st.AccessKeyID, st.IssuedAt = "", nil
	if rec.Current != nil {
		st.AccessKeyID, st.IssuedAt = rec.Current.ID, keystatus.TimePtr(&rec.Current.NotBefore)
	}
	st.ExpiresAt = keystatus.TimePtr(expiry)
	if s.overLimit {
		r.setConditions(pair, now, expiry, kw.ReasonLimitExceeded, fmt.Sprintf(
			"subject %q already holds %d access key pairs in this namespace, the most allowed; delete one to issue this pair",
			SubjectOf(pair), r.MaxPerSubject))
		return 0, nil
	}
	r.setConditions(pair, now, expiry, "", "")
	var instants []*time.Time
	if expiry != nil {
		soon := expiry.Add(-r.ExpiringSoonWindow)
		instants = append(instants, expiry, &soon)
	}
	resync := now.Add(r.Resync)
	return requeueAfter(now, append(instants, &resync)...), nil
}

func (r *Reconciler) writeRecord(ctx context.Context, pair *kw.AccessKeyPair, s *state, rec *hashsecret.Record) error {
	raw, err := hashsecret.Encode(rec)
	if err != nil {
		return err
	}
	sec, wrote, err := ownedsecret.Put(ctx, r.Client, pair, s.hashSecret, ownedsecret.Desired{
		Namespace: r.HashNamespace, Name: s.hashName, Type: hashsecret.SecretType,
		Labels: map[string]string{hashsecret.LabelKind: hashsecret.KindAccessKeyPair},
		Data:   map[string][]byte{hashsecret.DataRecord: raw},
	})
	if err == nil {
		s.hashSecret = sec
		if wrote {
			r.own.Wrote(sec)
		}
	}
	return err
}

func requeueAfter(now time.Time, instants ...*time.Time) time.Duration {
	var next time.Duration
	for _, t := range instants {
		if t != nil && t.After(now) && (next == 0 || t.Sub(now) < next) {
			next = t.Sub(now)
		}
	}
	return next
}

func (r *Reconciler) setConditions(pair *kw.AccessKeyPair, now time.Time, expiry *time.Time, blockedReason, blockedMessage string) {
	ready := readyCondition(pair, now, expiry, r.ExpiringSoonWindow, blockedReason, blockedMessage)
	prev := keystatus.Set(&pair.Status.Conditions, pair.Generation, now,
		ready, keystatus.Expired(expiry, now), keystatus.Suspended(pair.Spec.Suspended))
	if prev == ready.Reason {
		return
	}
	switch ready.Reason {
	case kw.ReasonExpiringSoon, kw.ReasonExpired, kw.ReasonLimitExceeded, kw.ReasonDeliveryConflict:
		r.event(pair, corev1.EventTypeWarning, ready.Reason, "Issue", "%s", ready.Message)
	}
}

func (r *Reconciler) event(pair *kw.AccessKeyPair, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(pair, nil, eventType, reason, action, note, args...)
	}
}

// finalize revokes at once: the hash Secret goes (the key server drops the
// pair and every token it issued), then the delivery Secret, then the pair.
func (r *Reconciler) finalize(ctx context.Context, pair *kw.AccessKeyPair) error {
	if !controllerutil.ContainsFinalizer(pair, kw.FinalizerCleanup) {
		return nil
	}
	if err := ownedsecret.DeleteOwned(ctx, r.APIReader, r.Client, pair, r.HashNamespace,
		hashsecret.Name(hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name)); err != nil {
		return err
	}
	if err := ownedsecret.DeleteOwned(ctx, r.APIReader, r.Client, pair, "", pair.Spec.SecretName); err != nil {
		return err
	}
	keymetrics.Forget(hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name)
	r.own.Forget(r.HashNamespace, hashsecret.Name(hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name))
	patch := client.MergeFrom(pair.DeepCopy())
	controllerutil.RemoveFinalizer(pair, kw.FinalizerCleanup)
	return r.Client.Patch(ctx, pair, patch)
}

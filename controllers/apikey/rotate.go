package apikey

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keystatus"
	"github.com/keyward/keyward/controllers/ownedsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// ErrNotRotatable: imported keys belong to someone else; suspended and
// expired keys must not get a successor.
var ErrNotRotatable = errors.New("this key cannot be rotated: it is imported, suspended, expired or being deleted, or the presented version is not the current one")

// MinSelfRotationGrace keeps the caller's key working briefly after a
// self-rotation even without spec.rotation.gracePeriod, so a response lost
// on the way back cannot lock the caller out before it retries.
const MinSelfRotationGrace = 5 * time.Minute

// Rotate issues a new version of an APIKey now and returns its plaintext,
// for the key server's self-rotate endpoint. It runs the controller's own
// converge with the same write order, so a crash or a racing reconcile ends
// in the same states a scheduled rotation can. The Reconciler's Client
// should read live (the key server has no cache of APIKeys).
func (r *Reconciler) Rotate(ctx context.Context, namespace, name, presentedKeyID string) (key, keyID string, err error) {
	// A reconcile racing us makes a write conflict; the retry observes what
	// the race left. A version this call delivered may meanwhile have been
	// adopted by the controller: it is then this call's result, not a reason
	// to refuse (the presented version is no longer current because of us).
	var ours *keymaterial.Key
	err = retry.OnError(rotateBackoff, func(err error) bool {
		return apierrors.IsConflict(err) || errors.Is(err, ownedsecret.ErrStale)
	}, func() error {
		var issued *keymaterial.Key
		issued, err = r.rotateOnce(ctx, namespace, name, presentedKeyID, ours)
		if issued != nil {
			ours = issued
		}
		if err == nil && issued != nil {
			key, keyID = issued.String(), issued.ID
		}
		return err
	})
	return key, keyID, err
}

// rotateBackoff outlasts a burst of reconciles of the same key (~5 s).
var rotateBackoff = wait.Backoff{Steps: 8, Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.2}

// rotateOnce makes one attempt. ours is a version an earlier attempt of the
// same call delivered; the version it returns (nil if none) is ours.
func (r *Reconciler) rotateOnce(ctx context.Context, namespace, name, presentedKeyID string, ours *keymaterial.Key) (*keymaterial.Key, error) {
	obj := &kw.APIKey{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj); err != nil {
		return nil, err
	}
	now := r.Clock.Now()
	if obj.Spec.ImportFrom != nil || obj.Spec.Suspended || !obj.DeletionTimestamp.IsZero() ||
		keystatus.ExpiredAt(effectiveExpiry(obj.Spec, obj.CreationTimestamp), now) {
		return nil, ErrNotRotatable
	}
	orig := obj.DeepCopy()
	s, err := r.observe(ctx, obj)
	if err != nil {
		return nil, err
	}
	cur := ""
	if s.record != nil && s.record.Current != nil {
		cur = s.record.Current.ID
	}
	if ours != nil && cur == ours.ID {
		return ours, nil // an earlier attempt's version, adopted meanwhile
	}
	if cur != presentedKeyID {
		return nil, ErrNotRotatable
	}
	s.forceRotate = true
	if _, err := r.converge(ctx, obj, s); err != nil {
		return s.issued, err
	}
	if s.issued == nil {
		return nil, errors.New("no new version was issued")
	}
	// The new version is recorded and valid: hand it out even if the status
	// patch fails (the next reconcile rewrites status from the record).
	obj.Status.ObservedGeneration = obj.Generation
	if err := r.Client.Status().Patch(ctx, obj, client.MergeFrom(orig)); err != nil {
		logf.FromContext(ctx).Error(err, "status after self-rotation not written; the next reconcile will", "keyID", s.issued.ID)
	}
	return s.issued, nil
}

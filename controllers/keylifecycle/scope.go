package keylifecycle

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward/keyward/controllers/ownedsecret"
	"github.com/keyward/keyward/internal/hashsecret"
)

// Scope is the world as one reconcile sees it, gathered once, and the
// writes the lifecycle makes for the kind's phases.
type Scope[O client.Object] struct {
	Object O
	View   View
	// Now is the controllers' clock, read once (UTC).
	Now time.Time

	HashName   string
	HashSecret *corev1.Secret // nil when absent
	// Record is the hash Secret's record; nil when absent, or Corrupt.
	Record  *hashsecret.Record
	Corrupt bool

	// Delivery is the delivery Secret, when Keyward owns it.
	Delivery *corev1.Secret
	// Conflict: the delivery Secret's name is taken by a Secret Keyward
	// does not own; it is never overwritten.
	Conflict bool

	r *Reconciler[O]
	// stopped: the reconcile is blocked; the phases after the one that
	// blocked it do not run.
	stopped bool
}

// observe reads the hash Secret (from the cache) and the delivery Secret
// (live: the controllers may not list or watch Secrets outside Keyward's own
// namespaces, docs/security.md).
func (r *Reconciler[O]) observe(ctx context.Context, obj O) (*Scope[O], error) {
	sc := &Scope[O]{Object: obj, View: r.kind.View(obj), Now: r.cfg.Clock.Now().UTC(),
		HashName: r.hashName(obj.GetNamespace(), obj.GetName()), r: r}
	hs, err := ownedsecret.GetHash(ctx, r.cfg.Client, obj, r.names.TypeName, r.cfg.HashNamespace, sc.HashName)
	if err != nil {
		return nil, err
	}
	if hs != nil {
		sc.HashSecret = hs
		if rec, err := hashsecret.Decode(hs); err != nil {
			sc.Corrupt = true
		} else {
			sc.Record = rec
		}
	}
	name := sc.View.SecretName
	if name == "" {
		return sc, nil
	}
	ds := &corev1.Secret{}
	switch err := r.cfg.APIReader.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}, ds); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	case !metav1.IsControlledBy(ds, obj):
		sc.Conflict = true // someone else's Secret: never overwritten
	default:
		sc.Delivery = ds
	}
	return sc, nil
}

// Stopped reports whether a phase blocked the reconcile (Run stops there).
func (sc *Scope[O]) Stopped() bool { return sc.stopped }

// Clock is the controllers' clock, for a check that must read it again.
func (sc *Scope[O]) Clock() clock.PassiveClock { return sc.r.cfg.Clock }

// CheckFresh guards an overwrite: a first version is written by creates
// alone (the delivery Secret was read live and is absent), which fail rather
// than overwrite; a later one overwrites, so the cached hash Secret must be
// current.
func (sc *Scope[O]) CheckFresh(ctx context.Context) error {
	if sc.HashSecret == nil && sc.Delivery == nil {
		return nil
	}
	return ownedsecret.CheckFresh(ctx, sc.r.cfg.APIReader, sc.r.cfg.HashNamespace, sc.HashName, sc.HashSecret)
}

// WriteRecord writes the hash Secret when it differs from rec (with extra
// data keys beside the record); it reports whether it wrote.
func (sc *Scope[O]) WriteRecord(ctx context.Context, rec *hashsecret.Record, extra map[string][]byte) (bool, error) {
	raw, err := hashsecret.Encode(rec)
	if err != nil {
		return false, err
	}
	data := map[string][]byte{hashsecret.DataRecord: raw}
	for k, v := range extra {
		data[k] = v
	}
	sec, wrote, err := ownedsecret.Put(ctx, sc.r.cfg.Client, sc.Object, sc.HashSecret, ownedsecret.Desired{
		Namespace: sc.r.cfg.HashNamespace,
		Name:      sc.HashName,
		Type:      hashsecret.SecretType,
		Labels:    map[string]string{hashsecret.LabelKind: sc.r.names.Kind},
		Data:      data,
	})
	if err == nil {
		sc.HashSecret = sec
		if wrote {
			sc.r.own.Wrote(sec)
		}
	}
	return wrote, err
}

// Deliver writes the delivery Secret.
func (sc *Scope[O]) Deliver(ctx context.Context, annotations map[string]string, data map[string][]byte) error {
	_, _, err := ownedsecret.Put(ctx, sc.r.cfg.Client, sc.Object, sc.Delivery, ownedsecret.Desired{
		Name:        sc.View.SecretName,
		Type:        corev1.SecretTypeOpaque,
		Annotations: annotations,
		Data:        data,
	})
	return err
}

// errCrashed marks an AfterWrite failure: the reconcile stops with no
// further write, status included.
var errCrashed = errors.New("reconcile stopped after a write (fault injection)")

// AfterWrite runs Config.AfterWrite (tests only) after a write.
func (sc *Scope[O]) AfterWrite(ctx context.Context, step Step) error {
	if sc.r.cfg.AfterWrite == nil {
		return nil
	}
	if err := sc.r.cfg.AfterWrite(ctx, client.ObjectKeyFromObject(sc.Object), step); err != nil {
		return errors.Join(errCrashed, err)
	}
	return nil
}

// Event emits an event about the key. Notes carry ids and times only, never
// key material.
func (sc *Scope[O]) Event(eventType, reason, action, note string, args ...any) {
	if sc.r.cfg.Recorder != nil {
		sc.r.cfg.Recorder.Eventf(sc.Object, nil, eventType, reason, action, note, args...)
	}
}

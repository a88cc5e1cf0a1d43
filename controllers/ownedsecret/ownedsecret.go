// Package ownedsecret writes the Secrets a Keyward resource owns (its hash
// Secret in the keys namespace and its delivery Secret in its own):
// labelled so the caches select them, owned — by an owner reference in the
// owner's namespace, so a real cluster's garbage collector also cleans them
// up, and by owner labels across namespaces, where references cannot point —
// and written with optimistic concurrency so a stale cache can never
// overwrite a newer write.
package ownedsecret

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyward/keyward/internal/hashsecret"
)

// Desired is what a Secret should hold.
type Desired struct {
	// Namespace defaults to the owner's.
	Namespace   string
	Name        string
	Type        corev1.SecretType
	Labels      map[string]string // beyond the managed-by and owner labels
	Annotations map[string]string
	Data        map[string][]byte
}

// Put creates the Secret, or updates current (the cached copy, nil when
// absent) when it differs from d. It reports whether it wrote.
func Put(ctx context.Context, c client.Client, owner client.Object, current *corev1.Secret, d Desired) (*corev1.Secret, bool, error) {
	ns := d.Namespace
	if ns == "" {
		ns = owner.GetNamespace()
	}
	sec := current
	if sec == nil {
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: d.Name}, Type: d.Type}
	} else {
		sec = sec.DeepCopy()
	}
	crossNamespace := ns != owner.GetNamespace()
	labels, annotations := ownerMarks(owner, d, crossNamespace)
	if current != nil && subset(labels, current.Labels) && subset(annotations, current.Annotations) &&
		maps.EqualFunc(current.Data, d.Data, bytes.Equal) && Controls(owner, current) {
		return current, false, nil
	}
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	maps.Copy(sec.Labels, labels)
	if len(annotations) > 0 {
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		maps.Copy(sec.Annotations, annotations)
	}
	sec.Data = d.Data
	if !crossNamespace {
		if err := controllerutil.SetControllerReference(owner, sec, c.Scheme()); err != nil {
			return nil, false, err
		}
	}
	var err error
	if current == nil {
		err = c.Create(ctx, sec)
	} else {
		err = c.Update(ctx, sec) // carries resourceVersion: conflicts instead of overwriting
	}
	if err != nil {
		return nil, false, err
	}
	return sec, true, nil
}

// ownerMarks are the labels and annotations d's Secret gets: d's, and those
// that mark it as owner's.
func ownerMarks(owner client.Object, d Desired, crossNamespace bool) (labels, annotations map[string]string) {
	labels = maps.Clone(d.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	// Outside Keyward's namespaces the API server accepts the controllers'
	// Secret writes only for Secrets with this label and a controller
	// reference to an APIKey or AccessKeyPair (config/policy): no caller
	// may drop it. An existing Secret missing it gets it back.
	labels[hashsecret.LabelManagedBy] = hashsecret.ManagedBy
	labels[hashsecret.LabelOwner] = OwnerLabel(owner.GetName())
	annotations = maps.Clone(d.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	// The owner annotation maps a watch event back to the owner, in any
	// namespace (a key may live in the keys namespace itself).
	annotations[hashsecret.AnnotationOwner] = owner.GetNamespace() + "/" + owner.GetName()
	if crossNamespace {
		labels[hashsecret.LabelOwnerNamespace] = owner.GetNamespace()
		labels[hashsecret.LabelOwnerUID] = string(owner.GetUID())
	}
	return labels, annotations
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// ErrStale says the cache lags the API server; the reconcile is retried.
var ErrStale = errors.New("the cached Secret is older than the live one; retrying")

// CheckFresh compares the cached copy of a Secret (nil when the cache has
// none) with the live one, before a write that must not be repeated (issuing
// a new key version).
func CheckFresh(ctx context.Context, live client.Reader, namespace, name string, cached *corev1.Secret) error {
	got := &corev1.Secret{}
	err := live.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, got)
	switch {
	case apierrors.IsNotFound(err):
		if cached != nil {
			return ErrStale
		}
		return nil
	case err != nil:
		return err
	case cached == nil || cached.ResourceVersion != got.ResourceVersion:
		return ErrStale
	}
	return nil
}

// OwnerLabel fits an owner's name into a label value (63 characters).
func OwnerLabel(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:54] + "-" + hex.EncodeToString(sum[:4])
}

// Stale reports whether sec, named for owner (of the given kind), was left by an earlier object
// of the same name and kind in the same namespace (its finalizer removed by
// hand): it carries their owner labels with another UID. Anything else not
// controlled by owner is someone else's and must be left alone.
func Stale(owner client.Object, kind string, sec *corev1.Secret) bool {
	if sec.Namespace == owner.GetNamespace() {
		// Owner references say it: the same kind and name, another object.
		ref := metav1.GetControllerOf(sec)
		return ref != nil && ref.UID != owner.GetUID() && ref.Name == owner.GetName() && ref.Kind == kind
	}
	uid, ok := sec.Labels[hashsecret.LabelOwnerUID]
	return ok && uid != string(owner.GetUID()) && sec.Labels[hashsecret.LabelOwnerNamespace] == owner.GetNamespace() &&
		sec.Labels[hashsecret.LabelOwner] == OwnerLabel(owner.GetName())
}

// GetHash reads owner's hash Secret namespace/name through c (the cache):
// nil when it is absent, or when it was left by an earlier object of the
// same name (it is then deleted: it must validate nothing, nor be adopted);
// an error when it belongs to someone else.
func GetHash(ctx context.Context, c client.Client, owner client.Object, kind, namespace, name string) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sec); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case Stale(owner, kind, sec):
		return nil, Delete(ctx, c, sec)
	case !Controls(owner, sec):
		return nil, fmt.Errorf("secret %s/%s exists and is not owned by this %s", namespace, name, kind)
	}
	return sec, nil
}

// Controls reports whether owner owns sec: by its controller reference in
// the owner's namespace, by the owner labels in another.
func Controls(owner client.Object, sec *corev1.Secret) bool {
	if sec.Namespace == owner.GetNamespace() {
		return metav1.IsControlledBy(sec, owner)
	}
	return sec.Labels[hashsecret.LabelOwnerNamespace] == owner.GetNamespace() &&
		sec.Labels[hashsecret.LabelOwnerUID] == string(owner.GetUID()) && owner.GetUID() != ""
}

// DeleteOwned deletes, by name and read live, each Secret of namespace (the
// owner's when empty) that owner controls; Secrets of the same name that it
// does not control are left alone. Live reads, because a cache that lags
// behind a fast create-and-delete must not leave a valid hash Secret behind.
func DeleteOwned(ctx context.Context, live client.Reader, c client.Client, owner client.Object, namespace string, names ...string) error {
	if namespace == "" {
		namespace = owner.GetNamespace()
	}
	for _, name := range names {
		if name == "" {
			continue
		}
		sec := &corev1.Secret{}
		err := live.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sec)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if !Controls(owner, sec) {
			continue
		}
		if err := Delete(ctx, c, sec); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the given Secrets (nil entries are skipped), each only if
// it is still the object that was read.
func Delete(ctx context.Context, c client.Client, secrets ...*corev1.Secret) error {
	for _, sec := range secrets {
		if sec == nil {
			continue
		}
		if err := c.Delete(ctx, sec, client.Preconditions{UID: &sec.UID}); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// OwnWrites remembers the resourceVersion of each Secret this process last
// wrote, so that the watch event of its own write does not trigger another
// reconcile: it would only re-read what that reconcile just wrote (a live
// read of the delivery Secret and more, per key). Safe for concurrent use.
type OwnWrites struct{ m sync.Map }

// Wrote records a write that returned sec.
func (w *OwnWrites) Wrote(sec *corev1.Secret) {
	w.m.Store(types.NamespacedName{Namespace: sec.Namespace, Name: sec.Name}, sec.ResourceVersion)
}

// Forget drops what is remembered of a Secret (it was deleted).
func (w *OwnWrites) Forget(namespace, name string) {
	w.m.Delete(types.NamespacedName{Namespace: namespace, Name: name})
}

func (w *OwnWrites) isOwn(obj client.Object) bool {
	if w == nil {
		return false
	}
	rv, ok := w.m.Load(types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()})
	return ok && rv == obj.GetResourceVersion()
}

// EnqueueHashOwner maps an event on a hash Secret of the given kind to a
// request for its owner, named by the owner annotation (an owner reference
// cannot cross namespaces). Creates and updates that are own's writes are
// dropped; deletions never are.
func EnqueueHashOwner(kind string, own *OwnWrites) handler.EventHandler {
	owner := func(obj client.Object) (reconcile.Request, bool) {
		if obj.GetLabels()[hashsecret.LabelKind] != kind {
			return reconcile.Request{}, false
		}
		ns, name, ok := strings.Cut(obj.GetAnnotations()[hashsecret.AnnotationOwner], "/")
		if !ok || ns == "" || name == "" {
			return reconcile.Request{}, false
		}
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}, true
	}
	add := func(obj client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if req, ok := owner(obj); ok {
			q.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if !own.isOwn(e.Object) {
				add(e.Object, q)
			}
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if !own.isOwn(e.ObjectNew) {
				add(e.ObjectNew, q)
			}
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
	}
}

// DeleteOrphan deletes the hash Secret hashNamespace/hashName when its owner,
// key, no longer exists. The owner's absence is confirmed live: the cache of
// owners may lag the cache of hash Secrets (a new leader's first sync), and
// deleting a live key's hash Secret would revoke it. empty is an object of
// the owner's kind to read into.
func DeleteOrphan(ctx context.Context, live client.Reader, c client.Client, empty client.Object, key types.NamespacedName, hashNamespace, hashName string) error {
	sec := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: hashNamespace, Name: hashName}, sec); err != nil {
		return client.IgnoreNotFound(err)
	}
	err := live.Get(ctx, key, empty)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case Controls(empty, sec):
		return nil // alive after all: its own reconcile owns the Secret
	}
	return Delete(ctx, c, sec)
}

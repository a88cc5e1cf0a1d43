// Package ownedsecret writes the Secrets a Keyward resource owns (its hash
// Secret and its delivery Secret): labelled so the caches select them, owned
// so a real cluster's garbage collector also cleans them up, and written with
// optimistic concurrency so a stale cache can never overwrite a newer write.
package ownedsecret

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/keyward/keyward/internal/hashsecret"
)

// Desired is what a Secret should hold.
type Desired struct {
	Name        string
	Type        corev1.SecretType
	Labels      map[string]string // beyond the managed-by and owner labels
	Annotations map[string]string
	Data        map[string][]byte
}

// Put creates the Secret, or updates current (the cached copy, nil when
// absent) when it differs from d. It reports whether it wrote.
func Put(ctx context.Context, c client.Client, owner client.Object, current *corev1.Secret, d Desired) (*corev1.Secret, bool, error) {
	sec := current
	if sec == nil {
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: owner.GetNamespace(), Name: d.Name}, Type: d.Type}
	} else {
		sec = sec.DeepCopy()
	}
	labels := map[string]string{
		hashsecret.LabelManagedBy: hashsecret.ManagedBy,
		hashsecret.LabelOwner:     OwnerLabel(owner.GetName()),
	}
	maps.Copy(labels, d.Labels)
	if current != nil && subset(labels, current.Labels) && subset(d.Annotations, current.Annotations) &&
		maps.EqualFunc(current.Data, d.Data, bytes.Equal) && metav1.IsControlledBy(current, owner) {
		return current, false, nil
	}
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	maps.Copy(sec.Labels, labels)
	if len(d.Annotations) > 0 {
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		maps.Copy(sec.Annotations, d.Annotations)
	}
	sec.Data = d.Data
	if err := controllerutil.SetControllerReference(owner, sec, c.Scheme()); err != nil {
		return nil, false, err
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

// DeleteOwned deletes, by name and read live, each named Secret that owner
// controls; Secrets of the same name that it does not control are left alone.
// Live reads, because a cache that lags behind a fast create-and-delete must
// not leave a valid hash Secret behind.
func DeleteOwned(ctx context.Context, live client.Reader, c client.Client, owner client.Object, names ...string) error {
	for _, name := range names {
		if name == "" {
			continue
		}
		sec := &corev1.Secret{}
		err := live.Get(ctx, types.NamespacedName{Namespace: owner.GetNamespace(), Name: name}, sec)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if !metav1.IsControlledBy(sec, owner) {
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

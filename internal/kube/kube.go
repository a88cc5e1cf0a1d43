// Package kube holds what every Keyward client and manager shares: the
// scheme and the cache layout.
package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keysv1alpha1 "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

// Scheme knows the built-in kinds and Keyward's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(keysv1alpha1.AddToScheme(s))
	return s
}

// CacheOptions keep only the Secrets Keyward writes in its own namespaces
// (the operator's, and the keys namespace of the hash Secrets) in the cache:
// memory is bounded by the keys Keyward manages, not by every Secret in the
// cluster, and the controllers need no right to list or watch Secrets
// anywhere else (docs/security.md).
func CacheOptions(namespaces ...string) cache.Options {
	ns := map[string]cache.Config{}
	for _, n := range namespaces {
		ns[n] = cache.Config{}
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {
			Namespaces: ns,
			Label:      labels.SelectorFromSet(labels.Set{hashsecret.LabelManagedBy: hashsecret.ManagedBy}),
		},
	}}
}

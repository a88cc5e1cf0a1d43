// Package feed keeps a key server's index, signing keys and KeyPolicies
// current: it gives the server informers of its own, on the hash Secrets
// (each Upsert into the index, each deletion a Delete), on the signing key
// Secret, on KeyPolicies (a new table of compiled policies on each change)
// and on Namespaces' labels (for namespaceSelector), and tells the server
// when they have synced (its readiness). It is the only way records reach a
// running key server; the HTTP side (webhook/keyserver) only reads them.
package feed

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/signingkeys"
	"github.com/keyward/keyward/webhook/keyserver"
)

// Add gives the server s its own caches, separate from the controllers', of
// the only namespaces where the key server may read Secrets: one of hash
// Secrets in keysNamespace (selected by label and stripped, StripHashSecret)
// feeding the index, and one of the signing key Secret in operatorNamespace.
// Neither can hold a delivery Secret.
func Add(mgr ctrl.Manager, s *keyserver.Server, operatorNamespace, keysNamespace string) error {
	hasKind, err := labels.NewRequirement(hashsecret.LabelKind, selection.Exists, nil)
	if err != nil {
		return err
	}
	hashes, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{keysNamespace: {}},
		ByObject:          map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: labels.NewSelector().Add(*hasKind)}},
		DefaultTransform:  StripHashSecret,
	})
	if err != nil {
		return err
	}
	keys, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{operatorNamespace: {}},
		ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {
			Label: labels.SelectorFromSet(labels.Set{signingkeys.LabelSigningKeys: "true"}),
		}},
	})
	if err != nil {
		return err
	}
	// KeyPolicies of every namespace (they are few, and stripped), and
	// Namespaces as metadata, stripped to their labels.
	pols, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&kw.KeyPolicy{}: {Transform: StripKeyPolicy},
			namespaceMeta(): {Transform: StripNamespace},
		},
	})
	if err != nil {
		return err
	}
	for _, c := range []cache.Cache{hashes, keys, pols} {
		if err := mgr.Add(c); err != nil {
			return err
		}
	}
	// Until the policies are loaded nothing is judged: an empty table
	// under --default-policy=allow-valid-key would open every host.
	s.SetPolicies(nil)
	ns := &namespaceLabels{byName: map[string]labels.Set{}}
	s.SetNamespaceLabels(ns.lookup)
	return mgr.Add(&sources{server: s, hashes: hashes, keys: keys, policyCache: pols,
		policies: newPolicies(s), namespaces: ns})
}

// StripHashSecret is the key server's cache transform: it keeps only what
// validation and the informer read (name, namespace, resourceVersion, type
// and the record). The age ciphertext, the self-rotation answer, labels,
// annotations, owner references and managed fields would only cost memory,
// per key, in every replica.
func StripHashSecret(obj any) (any, error) {
	if sec, ok := obj.(*corev1.Secret); ok {
		sec.ObjectMeta = metav1.ObjectMeta{Name: sec.Name, Namespace: sec.Namespace, ResourceVersion: sec.ResourceVersion}
		sec.TypeMeta = metav1.TypeMeta{}
		for k := range sec.Data {
			if k != hashsecret.DataRecord {
				delete(sec.Data, k)
			}
		}
		sec.StringData = nil
	}
	return obj, nil
}

type sources struct {
	server       *keyserver.Server
	hashes, keys cache.Cache
	// policyCache holds KeyPolicies and Namespaces.
	policyCache cache.Cache
	policies    *policies
	namespaces  *namespaceLabels
}

func (src *sources) NeedLeaderElection() bool { return false }

// Start registers the event handlers; informers replay existing objects to
// a new handler, so the index starts complete.
func (src *sources) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("key-server-sources")
	hashInf, err := src.hashes.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("hash Secret informer: %w", err)
	}
	keyInf, err := src.keys.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("signing key informer: %w", err)
	}
	idx := src.server.Index()
	hashReg, err := hashInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { src.upsert(obj, log) },
		UpdateFunc: func(_, obj any) { src.upsert(obj, log) },
		DeleteFunc: func(obj any) {
			if sec := secretOf(obj); sec != nil {
				idx.Delete(sec.Name)
			}
		},
	})
	if err != nil {
		return err
	}
	keyReg, err := keyInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { src.loadKeys(obj, log) },
		UpdateFunc: func(_, obj any) { src.loadKeys(obj, log) },
		DeleteFunc: func(any) { _ = src.server.LoadSigningKeys(nil) },
	})
	if err != nil {
		return err
	}
	polReg, nsReg, err := src.startPolicies(ctx)
	if err != nil {
		return err
	}
	src.server.SetSynced(func() bool {
		return hashReg.HasSynced() && keyReg.HasSynced() && nsReg.HasSynced() && src.policies.loaded.Load()
	})
	// The initial list of KeyPolicies is applied as one table, not one
	// table per policy listed.
	if toolscache.WaitForCacheSync(ctx.Done(), polReg.HasSynced) {
		src.policies.load()
		log.Info("KeyPolicies loaded", "policies", src.server.Policies().Len())
	}
	<-ctx.Done()
	return nil
}

func (src *sources) startPolicies(ctx context.Context) (pol, ns toolscache.ResourceEventHandlerRegistration, err error) {
	polInf, err := src.policyCache.GetInformer(ctx, &kw.KeyPolicy{})
	if err != nil {
		return nil, nil, fmt.Errorf("KeyPolicy informer: %w", err)
	}
	nsInf, err := src.policyCache.GetInformer(ctx, namespaceMeta())
	if err != nil {
		return nil, nil, fmt.Errorf("Namespace informer: %w", err)
	}
	pol, err = polInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: src.policies.upsert,
		UpdateFunc: func(old, obj any) {
			// Status writes (the controllers') change nothing the key
			// server decides by.
			if o, n := keyPolicyOf(old), keyPolicyOf(obj); o != nil && n != nil && o.Generation == n.Generation &&
				o.CreationTimestamp.Equal(&n.CreationTimestamp) && o.DeletionTimestamp.Equal(n.DeletionTimestamp) {
				return
			}
			src.policies.upsert(obj)
		},
		DeleteFunc: src.policies.remove,
	})
	if err != nil {
		return nil, nil, err
	}
	ns, err = nsInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    src.namespaces.set,
		UpdateFunc: func(_, obj any) { src.namespaces.set(obj) },
		DeleteFunc: src.namespaces.remove,
	})
	return pol, ns, err
}

func (src *sources) upsert(obj any, log logr.Logger) {
	sec := secretOf(obj)
	if sec == nil {
		return
	}
	if sec.Type != hashsecret.SecretType {
		// Only the controllers write this type; a labelled Secret of
		// another type is not a hash Secret, whatever it claims.
		src.server.Index().Delete(sec.Name)
		return
	}
	rec, err := hashsecret.Decode(sec)
	if err != nil {
		// An unreadable record validates nothing; the controller repairs it.
		src.server.Index().Delete(sec.Name)
		log.Info("ignoring an unreadable hash Secret", "namespace", sec.Namespace, "name", sec.Name)
		return
	}
	if err := src.server.Index().Upsert(sec.Name, rec); err != nil {
		log.Info("refusing a hash Secret", "namespace", sec.Namespace, "name", sec.Name, "reason", err.Error())
	}
}

func (src *sources) loadKeys(obj any, log logr.Logger) {
	sec := secretOf(obj)
	if sec == nil || sec.Name != signingkeys.SecretName {
		return
	}
	ks, err := signingkeys.Decode(sec)
	if err == nil {
		if err = src.server.LoadSigningKeys(ks); err == nil {
			return
		}
	}
	log.Info("ignoring an unreadable signing key set", "reason", err.Error())
}

func secretOf(obj any) *corev1.Secret {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	sec, _ := obj.(*corev1.Secret)
	return sec
}

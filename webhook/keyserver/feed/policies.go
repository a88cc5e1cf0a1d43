package feed

import (
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/webhook/keyserver"
)

// namespaceMeta is the metadata-only Namespace the key server watches: it
// needs their labels, for namespaceSelector, and nothing else.
func namespaceMeta() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}}
}

// StripKeyPolicy is the transform of the key server's KeyPolicy cache: it
// keeps what Compile reads (name, namespace, generation, creation and
// deletion times, spec) and the resourceVersion the informer needs. Status,
// managed fields, annotations and labels would only cost memory in every
// replica, and a status written by the controllers would wake every key
// server for nothing.
func StripKeyPolicy(obj any) (any, error) {
	if kp, ok := obj.(*kw.KeyPolicy); ok {
		m := kp.ObjectMeta
		kp.ObjectMeta = metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion, Generation: m.Generation,
			CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
		}
		kp.TypeMeta = metav1.TypeMeta{}
		kp.Status = kw.KeyPolicyStatus{}
	}
	return obj, nil
}

// StripNamespace is the transform of the key server's Namespace cache: the
// name and labels, and the resourceVersion.
func StripNamespace(obj any) (any, error) {
	if ns, ok := obj.(*metav1.PartialObjectMetadata); ok {
		ns.ObjectMeta = metav1.ObjectMeta{Name: ns.Name, ResourceVersion: ns.ResourceVersion, Labels: ns.Labels}
	}
	return obj, nil
}

// policies keeps the server's table of KeyPolicies: each event compiles
// the one policy it carries, then (once the initial list is in) a new table
// is built from every compiled policy and swapped in. Policies are few, so
// a rebuild per change is cheap; requests never rebuild.
type policies struct {
	server *keyserver.Server
	mu     sync.Mutex
	byRef  map[keypolicy.Ref]*keypolicy.Policy
	// loaded: the initial list has been compiled and applied; before, the
	// server has no table (it answers 503, never from a partial one).
	loaded atomic.Bool
}

func newPolicies(s *keyserver.Server) *policies {
	return &policies{server: s, byRef: map[keypolicy.Ref]*keypolicy.Policy{}}
}

func (p *policies) upsert(obj any) {
	kp := keyPolicyOf(obj)
	if kp == nil {
		return
	}
	compiled := keypolicy.Compile(kp)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byRef[compiled.Ref()] = compiled
	p.applyLocked()
}

func (p *policies) remove(obj any) {
	kp := keyPolicyOf(obj)
	if kp == nil {
		return
	}
	ref := keypolicy.Ref{Namespace: kp.Namespace, Name: kp.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byRef, ref)
	p.applyLocked()
	p.server.ForgetPolicy(ref)
}

// load applies the policies listed so far: called once the informer has
// delivered its initial list.
func (p *policies) load() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loaded.Store(true)
	p.applyLocked()
}

func (p *policies) applyLocked() {
	if !p.loaded.Load() {
		return
	}
	all := make([]*keypolicy.Policy, 0, len(p.byRef))
	for _, c := range p.byRef {
		all = append(all, c)
	}
	p.server.SetPolicies(keypolicy.NewTable(all))
}

func keyPolicyOf(obj any) *kw.KeyPolicy {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	kp, _ := obj.(*kw.KeyPolicy)
	return kp
}

// namespaceLabels holds every namespace's labels, for namespaceSelector.
type namespaceLabels struct {
	mu     sync.RWMutex
	byName map[string]labels.Set
}

func (n *namespaceLabels) set(obj any) {
	if ns := namespaceOf(obj); ns != nil {
		n.mu.Lock()
		n.byName[ns.Name] = labels.Set(ns.Labels)
		n.mu.Unlock()
	}
}

func (n *namespaceLabels) remove(obj any) {
	if ns := namespaceOf(obj); ns != nil {
		n.mu.Lock()
		delete(n.byName, ns.Name)
		n.mu.Unlock()
	}
}

// lookup is a keypolicy.NamespaceLabels. The sets are the cached objects'
// own maps, which nothing modifies.
func (n *namespaceLabels) lookup(name string) (labels.Labels, bool) {
	n.mu.RLock()
	l, ok := n.byName[name]
	n.mu.RUnlock()
	return l, ok
}

func namespaceOf(obj any) *metav1.PartialObjectMetadata {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	ns, _ := obj.(*metav1.PartialObjectMetadata)
	return ns
}

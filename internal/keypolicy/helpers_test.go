package keypolicy

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// epoch is the creation time of fixtures made without created().
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type option func(*kw.KeyPolicy)

// kp builds a KeyPolicy "ns/name" naming hosts (default "api.example.com").
func kp(ref string, opts ...option) *kw.KeyPolicy {
	r := parseRef(ref)
	p := &kw.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: r.Name, Generation: 1, CreationTimestamp: metav1.NewTime(epoch)},
		Spec:       kw.KeyPolicySpec{Hosts: []kw.Hostname{"api.example.com"}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func parseRef(s string) Ref {
	for i := range len(s) {
		if s[i] == '/' {
			return Ref{Namespace: s[:i], Name: s[i+1:]}
		}
	}
	panic("ref without /: " + s)
}

func hosts(h ...string) option {
	return func(p *kw.KeyPolicy) {
		p.Spec.Hosts = nil
		for _, x := range h {
			p.Spec.Hosts = append(p.Spec.Hosts, kw.Hostname(x))
		}
	}
}

// created sets the creation time to epoch plus seconds.
func created(seconds int) option {
	return func(p *kw.KeyPolicy) {
		p.CreationTimestamp = metav1.NewTime(epoch.Add(time.Duration(seconds) * time.Second))
	}
}

func rules(r ...kw.KeyPolicyRule) option {
	return func(p *kw.KeyPolicy) { p.Spec.Rules = r }
}

func keysOf(ns ...string) option {
	return func(p *kw.KeyPolicy) {
		if p.Spec.Keys == nil {
			p.Spec.Keys = &kw.KeyPolicyKeys{}
		}
		p.Spec.Keys.Namespaces = ns
	}
}

func selector(s *metav1.LabelSelector) option {
	return func(p *kw.KeyPolicy) {
		if p.Spec.Keys == nil {
			p.Spec.Keys = &kw.KeyPolicyKeys{}
		}
		p.Spec.Keys.NamespaceSelector = s
	}
}

func tokens(accept kw.TokenAcceptance, audience string) option {
	return func(p *kw.KeyPolicy) { p.Spec.Tokens = &kw.KeyPolicyTokens{Accept: accept, Audience: audience} }
}

func deleting() option {
	return func(p *kw.KeyPolicy) { now := metav1.NewTime(epoch); p.DeletionTimestamp = &now }
}

func methods(m ...string) []kw.HTTPMethod {
	out := make([]kw.HTTPMethod, 0, len(m))
	for _, x := range m {
		out = append(out, kw.HTTPMethod(x))
	}
	return out
}

// names builds subjects or groups from "name" (the policy's namespace) or
// "namespace/name".
func names(n ...string) []kw.KeyPolicySubject {
	out := make([]kw.KeyPolicySubject, 0, len(n))
	for _, x := range n {
		s := kw.KeyPolicySubject{Name: x}
		for i := range len(x) {
			if x[i] == '/' {
				s = kw.KeyPolicySubject{Namespace: x[:i], Name: x[i+1:]}
				break
			}
		}
		out = append(out, s)
	}
	return out
}

func compileAll(objs ...*kw.KeyPolicy) []*Policy {
	out := make([]*Policy, 0, len(objs))
	for _, o := range objs {
		out = append(out, Compile(o))
	}
	return out
}

func ref(s string) Ref { return parseRef(s) }

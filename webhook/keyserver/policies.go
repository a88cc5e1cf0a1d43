package keyserver

import (
	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
)

// SetPolicies makes t the table of KeyPolicies requests are decided by,
// atomically: a request is decided by one table, never by half of an
// update. nil means the policies are not loaded yet (the feed has not
// synced): requests that need them are answered 503 rather than judged by
// an empty table, which under --default-policy=allow-valid-key would let any
// valid key onto every host.
func (s *Server) SetPolicies(t *keypolicy.Table) { s.policies.Store(t) }

// Policies is the table requests are decided by now (nil before it is
// loaded).
func (s *Server) Policies() *keypolicy.Table { return s.policies.Load() }

// SetNamespaceLabels tells the server how to read a namespace's labels,
// for the policies' namespaceSelector. Without it no namespace is selected.
func (s *Server) SetNamespaceLabels(f keypolicy.NamespaceLabels) { s.namespaceLabels.Store(&f) }

// ForgetPolicy drops the decision counters of a policy that is gone, so
// that their series are bounded by the policies that exist.
func (s *Server) ForgetPolicy(ref keypolicy.Ref) { forgetPolicyMetrics(ref) }

func (s *Server) lookupNamespaceLabels() keypolicy.NamespaceLabels {
	if f := s.namespaceLabels.Load(); f != nil {
		return *f
	}
	return nil
}

// selectPolicy chooses the policy of the original request o in t.
func selectPolicy(t *keypolicy.Table, o original) keypolicy.Selection {
	if o.problem != "" {
		return keypolicy.Selection{Invalid: o.problem}
	}
	sel := t.Select(o.host, o.path)
	if sel.Claimed && !o.hasPath && sel.Invalid == "" {
		// The host's rules may depend on the path; judging "/" instead
		// could pass what the rule of the real path refuses.
		sel.Policy = nil
		sel.Invalid = "the gateway did not send the original request's path (X-Forwarded-Uri, X-Original-Uri, or a path below " + authzPrefix + ")"
	}
	return sel
}

// tokenAudiences are the audiences a token is validated for on sel: the
// default one, and the policy's when it names another. A token carrying
// neither is not one for this API (401); one carrying the default where the
// policy names another is refused by Decide (403 TOKEN_NOT_ACCEPTED).
func tokenAudiences(cred string, sel keypolicy.Selection) []string {
	if sel.Policy == nil || !looksLikeJWT(cred) {
		return nil
	}
	if aud := sel.Policy.Audience(); aud != DefaultAudience {
		return []string{DefaultAudience, aud}
	}
	return nil
}

// identityOf is a validated result as KeyPolicies see it.
func identityOf(res keyindex.Result, audiences []string) keypolicy.Identity {
	id := keypolicy.Identity{
		Kind: keypolicy.APIKey, Namespace: res.Namespace, Subject: res.Subject,
		Groups: res.Groups, Scopes: res.Scopes, Access: kw.AccessMode(res.Access),
	}
	if res.Kind == hashsecret.KindAccessKeyPair {
		// Only tokens validate as a pair here (an AK/SK is exchanged at
		// /v1/tokens, never presented).
		id.Kind, id.Audiences = keypolicy.Token, audiences
	}
	return id
}

// decide judges a request made with a valid key, and counts the decision.
func (s *Server) decide(in keypolicy.Input) keypolicy.Decision {
	in.Default = s.opts.DefaultPolicy
	in.NamespaceLabels = s.lookupNamespaceLabels()
	d := keypolicy.Decide(in)
	countDecision(d)
	return d
}

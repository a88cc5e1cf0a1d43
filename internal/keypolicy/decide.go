package keypolicy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// Code is the answer to a caller whose key is valid: OK, or why it is
// refused. Every refusal is HTTP 403; missing, unknown and invalid keys are
// answered 401 before Decide is asked.
type Code string

const (
	// OK: the request may pass.
	OK Code = "OK"
	// NoPolicy: no KeyPolicy names the request's host and the key server
	// runs with --default-policy=deny; or the host's policies claim none of
	// the request's path; or the policy a caller named does not apply.
	NoPolicy Code = "NO_POLICY"
	// PolicyInvalid: the host's KeyPolicy is invalid (its status says why);
	// it refuses every request until it is fixed.
	PolicyInvalid Code = "POLICY_INVALID"
	// WrongNamespace: the policy does not accept keys of the key's
	// namespace, or the gateway's ?namespace= does not list it.
	WrongNamespace Code = "WRONG_NAMESPACE"
	// TokenNotAccepted: a token where the policy accepts API keys only, or
	// a token without the audience the policy requires.
	TokenNotAccepted Code = "TOKEN_NOT_ACCEPTED"
	// MethodNotAllowed: a rule matches the path, none matches the method.
	MethodNotAllowed Code = "METHOD_NOT_ALLOWED"
	// SubjectNotAllowed: the matching rule names subjects or groups, and
	// the key's identity is none of them.
	SubjectNotAllowed Code = "SUBJECT_NOT_ALLOWED"
	// InsufficientScope: the key lacks a scope the matching rule, or the
	// gateway's ?scope=, requires.
	InsufficientScope Code = "INSUFFICIENT_SCOPE"
	// ReadOnly: a ReadOnly key and a method other than GET, HEAD, OPTIONS.
	ReadOnly Code = "READ_ONLY"
	// InvalidRequest: the request's host, or its path on a host a policy
	// names, cannot be judged (see NormalizeHost, NormalizePath).
	InvalidRequest Code = "INVALID_REQUEST"
	// CIDRNotAllowed: the client's address is outside the key's
	// spec.allowedCIDRs or the policy's. Decided by the key server's address
	// check before Decide is asked, never by Decide.
	CIDRNotAllowed Code = "CIDR_NOT_ALLOWED"
)

// Mode is what the key server does for a host no KeyPolicy names
// (--default-policy).
type Mode string

const (
	// ModeDeny refuses such requests with NO_POLICY (the default).
	ModeDeny Mode = "deny"
	// ModeAllowValidKey lets any valid key of any namespace pass, as before
	// KeyPolicies existed (narrowed by ?scope= and ?namespace=).
	ModeAllowValidKey Mode = "allow-valid-key"
)

// ParseMode parses --default-policy.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeDeny, ModeAllowValidKey:
		return m, nil
	}
	return "", fmt.Errorf("--default-policy must be %q or %q, not %q", ModeDeny, ModeAllowValidKey, s)
}

// CredentialKind says what the caller presented.
type CredentialKind int

const (
	// APIKey: an APIKey's key.
	APIKey CredentialKind = iota
	// Token: a Keyward token issued for an AccessKeyPair.
	Token
)

// Identity is the validated caller.
type Identity struct {
	Kind CredentialKind
	// Namespace of the key's object; Subject, Groups and Scopes as granted
	// now (for a token, what both the token and its pair grant).
	Namespace, Subject string
	Groups, Scopes     []string
	// Access is ReadOnly or ReadWrite ("" counts as ReadWrite).
	Access kw.AccessMode
	// Audiences are a token's "aud" claim.
	Audiences []string
}

// Narrowing is what a gateway asks for beyond the policy (?scope=,
// ?namespace= on forward-auth, scopes on verify). It can only refuse more:
// a client may append to the query (Envoy forwards the client's own), so it
// must never admit what the policy refuses.
type Narrowing struct {
	// Scopes the key must hold, besides the rule's.
	Scopes []string
	// Namespaces, when set, the key must belong to one of, besides being
	// accepted by the policy.
	Namespaces []string
}

// NamespaceLabels returns a namespace's labels, for namespaceSelector;
// ok=false when the namespace is not known.
type NamespaceLabels func(namespace string) (l labels.Labels, ok bool)

// Input is everything Decide looks at.
type Input struct {
	// Method of the original request, as the front end reports it
	// (case-sensitive, as HTTP methods are).
	Method string
	// Target is Table.Select's (or SelectPolicy's) answer for the original
	// request.
	Target Selection
	// Identity of the valid key or token.
	Identity Identity
	// Default is the mode for hosts no policy names; "" is ModeDeny.
	Default Mode
	// Narrowing from the gateway's query or the verify request.
	Narrowing Narrowing
	// NamespaceLabels serves namespaceSelector; nil selects no namespace.
	NamespaceLabels NamespaceLabels
}

// Decision is Decide's answer. Reason is one line for the caller; it holds
// no key material (only the caller's own namespace, subject and what the
// policy requires).
type Decision struct {
	Code Code
	// Status is http.StatusOK or http.StatusForbidden.
	Status int
	Reason string
	// Policy that decided; zero when none did.
	Policy Ref
	// Rule is the index of the rule that decided, -1 when none did.
	Rule int
}

// Allowed reports whether the request may pass.
func (d Decision) Allowed() bool { return d.Code == OK }

func allow(p Ref, rule int) Decision {
	return Decision{Code: OK, Status: http.StatusOK, Policy: p, Rule: rule}
}

func refuse(code Code, p Ref, rule int, format string, args ...any) Decision {
	return Decision{Code: code, Status: http.StatusForbidden, Policy: p, Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

// Decide judges a request made with a valid key. In order: a request that
// cannot be judged is refused; then the policy (or the default mode) decides
// whether tokens and the key's namespace are accepted; then the first rule
// matching path and method decides subject, groups and scopes; the gateway's
// narrowing applies on top; a ReadOnly key passes safe methods only.
func Decide(in Input) Decision {
	// Methods are case-sensitive on the wire, but frameworks (Django,
	// werkzeug) upper-case them: "delete" must meet the DELETE rule.
	in.Method = strings.ToUpper(in.Method)
	sel, id := in.Target, in.Identity
	if sel.Invalid != "" {
		return refuse(InvalidRequest, Ref{}, -1, "%s", sel.Invalid)
	}
	p := sel.Policy
	if p == nil {
		switch {
		case sel.Claimed:
			return refuse(NoPolicy, Ref{}, -1, "no KeyPolicy of this host claims this path")
		case in.Default != ModeAllowValidKey:
			return refuse(NoPolicy, Ref{}, -1, "no KeyPolicy names this host")
		case id.Kind == Token && !slices.Contains(id.Audiences, DefaultAudience):
			return refuse(TokenNotAccepted, Ref{}, -1, "the token does not carry the audience %q", DefaultAudience)
		}
		return narrowAndAccess(in, Ref{}, -1, nil)
	}
	ref := p.ref
	if p.invalid != "" {
		return refuse(PolicyInvalid, ref, -1, "KeyPolicy %s is invalid and refuses every request until it is fixed", ref)
	}
	if id.Kind == Token {
		if !p.tokens {
			return refuse(TokenNotAccepted, ref, -1, "KeyPolicy %s accepts API keys only", ref)
		}
		aud := p.audience
		if aud == "" {
			aud = DefaultAudience
		}
		if !slices.Contains(id.Audiences, aud) {
			return refuse(TokenNotAccepted, ref, -1, "KeyPolicy %s requires tokens for the audience %q", ref, aud)
		}
	}
	if !p.acceptsNamespace(id.Namespace, in.NamespaceLabels) {
		return refuse(WrongNamespace, ref, -1, "KeyPolicy %s does not accept keys of namespace %q", ref, id.Namespace)
	}
	if len(p.rules) == 0 {
		return narrowAndAccess(in, ref, -1, nil)
	}
	if r := foldedRule(p.rules, sel.Path); r >= 0 {
		return refuse(InvalidRequest, ref, r, "the request's path differs only in letter case from the prefix of rule %d of KeyPolicy %s", r, ref)
	}
	pathMatched := false
	for i := range p.rules {
		r := &p.rules[i]
		if !prefixMatch(r.prefix, sel.Path) {
			continue
		}
		pathMatched = true
		if !r.methods.has(in.Method) {
			continue
		}
		if (len(r.subjects) > 0 || len(r.groups) > 0) && !r.allows(id) {
			return refuse(SubjectNotAllowed, ref, i, "rule %d of KeyPolicy %s does not allow subject %q of namespace %q or its groups", i, ref, id.Subject, id.Namespace)
		}
		return narrowAndAccess(in, ref, i, r.scopes)
	}
	if pathMatched {
		return refuse(MethodNotAllowed, ref, -1, "KeyPolicy %s allows no %.16q request on this path", ref, in.Method)
	}
	return refuse(NoPolicy, ref, -1, "KeyPolicy %s does not claim this path", ref)
}

// narrowAndAccess applies the rule's scopes, the gateway's narrowing and the
// key's access mode.
func narrowAndAccess(in Input, ref Ref, rule int, scopes []string) Decision {
	id := in.Identity
	for _, s := range scopes {
		if !slices.Contains(id.Scopes, s) {
			return refuse(InsufficientScope, ref, rule, "the key lacks the scope %q", s)
		}
	}
	for _, s := range in.Narrowing.Scopes {
		if s != "" && !slices.Contains(id.Scopes, s) {
			return refuse(InsufficientScope, ref, rule, "the key lacks the scope %q", s)
		}
	}
	if ns := in.Narrowing.Namespaces; len(ns) > 0 && (id.Namespace == "" || !slices.Contains(ns, id.Namespace)) {
		return refuse(WrongNamespace, ref, rule, "the gateway does not accept keys of namespace %q", id.Namespace)
	}
	if id.Access == kw.AccessReadOnly && !safeMethod(in.Method) {
		return refuse(ReadOnly, ref, rule, "the key is read-only")
	}
	return allow(ref, rule)
}

// allows reports whether the identity is one of the rule's subjects or in
// one of its groups, each in its namespace.
func (r *rule) allows(id Identity) bool {
	for _, s := range r.subjects {
		if s.namespace == id.Namespace && s.name == id.Subject {
			return true
		}
	}
	for _, g := range r.groups {
		if g.namespace == id.Namespace && slices.Contains(id.Groups, g.name) {
			return true
		}
	}
	return false
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// foldedRule is the first rule whose prefix the path matches only when
// letter case is ignored (-1 if none). Rules compare case-sensitively, and
// many backends (Express, ASP.NET Core) route case-insensitively: /ADMIN
// would reach the /admin handler under a later, looser rule. Such a path is
// refused rather than guessed at.
func foldedRule(rules []rule, path string) int {
	for i := range rules {
		if pr := rules[i].prefix; !prefixMatch(pr, path) && prefixMatchFold(pr, path) {
			return i
		}
	}
	return -1
}

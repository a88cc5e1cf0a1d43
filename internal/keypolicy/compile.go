package keypolicy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/allowlist"
	"github.com/keyward/keyward/internal/ratelimit"
)

// Bounds the schema sets; Compile checks them again because the key server
// must not rely on every stored object having passed today's schema.
const (
	maxHosts             = 16
	maxRules             = 16
	maxRequiredScopes    = 16
	maxNames             = 32 // subjects, groups
	maxKeyNamespaces     = 64
	maxSelectorTerms     = 16 // labels + expressions
	maxSelectorValues    = 64 // values of one expression
	maxScopeLength       = 128
	maxNameLength        = 253
	maxAudienceLength    = 253
	maxNamespaceLength   = 63
	maxInvalidMessageLen = 512
)

// DefaultAudience is the audience a token must carry where no policy names
// one (the key server's default audience, the "aud" of tokens whose pair
// names none).
const DefaultAudience = "keyward"

// Ref names a KeyPolicy.
type Ref struct{ Namespace, Name string }

// String is "namespace/name".
func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// IsZero reports whether r names nothing.
func (r Ref) IsZero() bool { return r == Ref{} }

// Policy is a compiled KeyPolicy. It is immutable: tables built at different
// times may share it.
type Policy struct {
	ref        Ref
	generation int64
	created    time.Time
	deleting   bool
	// invalid says why the spec cannot be applied; such a policy still holds
	// its hosts, and refuses every request there.
	invalid string

	hosts  []string // spec order, unique: exact names and "*.suffix"
	claims []string // path prefixes claimed on each host, unique

	rules      []rule
	namespaces []string // accepted besides ref.Namespace, sorted
	selector   labels.Selector
	tokens     bool
	audience   string

	// rateLimit is the default limit of each key (spec.rateLimit), zero
	// when none; allowedCIDRs the addresses requests may come from.
	rateLimit    ratelimit.Limit
	allowedCIDRs allowlist.List
}

type rule struct {
	prefix   string
	methods  methodSet // 0: every method
	scopes   []string
	subjects []nsName
	groups   []nsName
}

type nsName struct{ namespace, name string }

// methodSet is a set of the methods spec.rules[].methods may name.
type methodSet uint16

var methodBits = map[string]methodSet{
	"GET": 1 << 0, "HEAD": 1 << 1, "POST": 1 << 2, "PUT": 1 << 3, "PATCH": 1 << 4,
	"DELETE": 1 << 5, "OPTIONS": 1 << 6, "CONNECT": 1 << 7, "TRACE": 1 << 8,
}

// has reports whether the set matches method; methods are case-sensitive
// (RFC 9110), so "get" matches no rule that names methods.
// A rule naming GET matches HEAD too: servers answer HEAD with the GET
// handler (Go's ServeMux, Express, Django, Flask), so a looser later rule
// must not decide it.
func (m methodSet) has(method string) bool {
	if method == http.MethodHead {
		return m == 0 || m&(methodBits[http.MethodHead]|methodBits[http.MethodGet]) != 0
	}
	return m == 0 || m&methodBits[method] != 0
}

// covers reports whether every method o matches, m matches too.
func (m methodSet) covers(o methodSet) bool { return m == 0 || o != 0 && o&^m == 0 }

// Ref names the policy.
func (p *Policy) Ref() Ref { return p.ref }

// Generation is the metadata.generation the policy was compiled from.
func (p *Policy) Generation() int64 { return p.generation }

// Invalid says why the policy cannot be applied, or "".
func (p *Policy) Invalid() string { return p.invalid }

// Hosts are the hosts the policy names (spec order, duplicates dropped).
func (p *Policy) Hosts() []string { return slices.Clone(p.hosts) }

// Audience is the audience a token must carry here: spec.tokens.audience,
// or DefaultAudience. A front end validates a token for it (and the
// default) before Decide judges the token's audiences.
func (p *Policy) Audience() string {
	if p.audience == "" {
		return DefaultAudience
	}
	return p.audience
}

// RateLimit is the per-key limit of each key calling the policy's hosts
// (spec.rateLimit), zero when it sets none. A key's own limit applies as
// well, and the stricter binds.
func (p *Policy) RateLimit() ratelimit.Limit { return p.rateLimit }

// AllowedCIDRs are the client addresses requests to the policy's hosts may
// come from (spec.allowedCIDRs); unset allows any.
func (p *Policy) AllowedCIDRs() allowlist.List { return p.allowedCIDRs }

// Compile checks and compiles a KeyPolicy. It never fails: a policy whose
// spec breaks a rule is returned with Invalid set, so that it keeps the
// hosts it names (refusing every request there) instead of handing them to
// a newer policy of another namespace while its owners fix it.
func Compile(kp *kw.KeyPolicy) *Policy {
	p := &Policy{
		ref:        Ref{Namespace: kp.Namespace, Name: kp.Name},
		generation: kp.Generation,
		created:    kp.CreationTimestamp.Time,
		deleting:   kp.DeletionTimestamp != nil,
		tokens:     true,
	}
	c := compiler{p: p}
	c.hosts(kp.Spec.Hosts)
	c.rules(kp.Spec.Rules)
	c.keys(kp.Spec.Keys)
	c.tokens(kp.Spec.Tokens)
	c.limits(kp.Spec.RateLimit, kp.Spec.AllowedCIDRs)
	if c.err == "" {
		c.combinations()
	}
	p.invalid = c.err
	if len(p.claims) == 0 {
		p.claims = []string{"/"}
	}
	return p
}

// compiler keeps the first problem found; what parses is kept regardless,
// for the hosts and paths an invalid policy still holds.
type compiler struct {
	p   *Policy
	err string
}

func (c *compiler) fail(format string, args ...any) {
	if c.err == "" {
		c.err = fmt.Sprintf(format, args...)
		if len(c.err) > maxInvalidMessageLen {
			c.err = c.err[:maxInvalidMessageLen]
		}
	}
}

func (c *compiler) hosts(hosts []kw.Hostname) {
	if c.p.ref.Namespace == "" || c.p.ref.Name == "" {
		c.fail("the policy has no namespace or name")
	}
	if len(hosts) == 0 {
		c.fail("spec.hosts: at least one host is required")
	}
	for i, h := range hosts {
		if i == maxHosts {
			c.fail("spec.hosts: at most %d hosts", maxHosts)
			break
		}
		if !validPolicyHost(string(h)) {
			c.fail("spec.hosts[%d]: not a lowercase DNS name or one-label wildcard of at least two labels", i)
			continue
		}
		if !slices.Contains(c.p.hosts, string(h)) {
			c.p.hosts = append(c.p.hosts, string(h))
		}
	}
}

func (c *compiler) rules(rules []kw.KeyPolicyRule) {
	if len(rules) > maxRules {
		c.fail("spec.rules: at most %d rules", maxRules)
		rules = rules[:maxRules]
	}
	for i, in := range rules {
		f := fmt.Sprintf("spec.rules[%d]", i)
		prefix, ok := normalizePathPrefix(in.PathPrefix)
		if !ok {
			c.fail("%s.pathPrefix: must start with \"/\" and have no \"//\", \".\" or \"..\" segments, \";\", \"%%\" or query", f)
			prefix = "/" // claim the whole host rather than less
		}
		if !slices.Contains(c.p.claims, prefix) {
			c.p.claims = append(c.p.claims, prefix)
		}
		r := rule{prefix: prefix}
		if len(in.Methods) > len(methodBits) {
			c.fail("%s.methods: at most %d methods", f, len(methodBits))
		}
		for j, m := range in.Methods {
			bit, ok := methodBits[string(m)]
			if !ok {
				c.fail("%s.methods[%d]: unknown method", f, j)
			}
			r.methods |= bit
		}
		if len(in.RequiredScopes) > maxRequiredScopes {
			c.fail("%s.requiredScopes: at most %d scopes", f, maxRequiredScopes)
		}
		for j, s := range in.RequiredScopes {
			if s == "" || len(s) > maxScopeLength {
				c.fail("%s.requiredScopes[%d]: 1 to %d characters", f, j, maxScopeLength)
			}
			if !slices.Contains(r.scopes, s) {
				r.scopes = append(r.scopes, s)
			}
		}
		r.subjects = c.names(f+".subjects", in.Subjects)
		r.groups = c.names(f+".groups", in.Groups)
		c.p.rules = append(c.p.rules, r)
	}
}

func (c *compiler) names(f string, in []kw.KeyPolicySubject) []nsName {
	if len(in) > maxNames {
		c.fail("%s: at most %d entries", f, maxNames)
	}
	out := make([]nsName, 0, len(in))
	for i, s := range in {
		ns := s.Namespace
		if ns == "" {
			ns = c.p.ref.Namespace
		} else if !validNamespace(ns) {
			c.fail("%s[%d].namespace: not a namespace name", f, i)
		}
		if s.Name == "" || len(s.Name) > maxNameLength {
			c.fail("%s[%d].name: 1 to %d characters", f, i, maxNameLength)
		}
		out = append(out, nsName{namespace: ns, name: s.Name})
	}
	return out
}

func (c *compiler) keys(k *kw.KeyPolicyKeys) {
	if k == nil {
		return
	}
	if len(k.Namespaces) > maxKeyNamespaces {
		c.fail("spec.keys.namespaces: at most %d namespaces", maxKeyNamespaces)
	}
	for i, ns := range k.Namespaces {
		if !validNamespace(ns) {
			c.fail("spec.keys.namespaces[%d]: not a namespace name", i)
			continue
		}
		if ns != c.p.ref.Namespace && !slices.Contains(c.p.namespaces, ns) {
			c.p.namespaces = append(c.p.namespaces, ns)
		}
	}
	slices.Sort(c.p.namespaces)
	if sel := k.NamespaceSelector; sel != nil {
		if terms := len(sel.MatchLabels) + len(sel.MatchExpressions); terms > maxSelectorTerms {
			c.fail("spec.keys.namespaceSelector: at most %d labels and expressions", maxSelectorTerms)
			return
		}
		for i, e := range sel.MatchExpressions {
			if len(e.Values) > maxSelectorValues {
				c.fail("spec.keys.namespaceSelector.matchExpressions[%d].values: at most %d values", i, maxSelectorValues)
				return
			}
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			c.fail("spec.keys.namespaceSelector: %v", err)
			return
		}
		c.p.selector = s
	}
}

func (c *compiler) tokens(t *kw.KeyPolicyTokens) {
	if t == nil {
		return
	}
	switch t.Accept {
	case "", kw.TokensAlways:
	case kw.TokensNever:
		c.p.tokens = false
		if t.Audience != "" {
			c.fail("spec.tokens.audience: cannot be set when tokens.accept is Never")
		}
	default:
		c.fail("spec.tokens.accept: must be Always or Never")
		c.p.tokens = false
	}
	if len(t.Audience) > maxAudienceLength {
		c.fail("spec.tokens.audience: at most %d characters", maxAudienceLength)
	}
	c.p.audience = t.Audience
}

// limits compiles the per-key default limit and the allow-list, within the
// schema's bounds (api/v1alpha1 RateLimit, CIDR).
func (c *compiler) limits(rl *kw.RateLimit, cidrs []kw.CIDR) {
	if rl != nil {
		switch {
		case rl.Requests < 1:
			c.fail("spec.rateLimit.requests: at least 1")
		case rl.Period.Duration < time.Second || rl.Period.Duration > 24*time.Hour:
			c.fail("spec.rateLimit.period: between 1s and 24h")
		case rl.Burst < 0:
			c.fail("spec.rateLimit.burst: at least 1 when set")
		default:
			c.p.rateLimit = ratelimit.Limit{Requests: int(rl.Requests), Period: rl.Period.Duration, Burst: int(rl.Burst)}
		}
	}
	if len(cidrs) > allowlist.MaxEntries {
		c.fail("spec.allowedCIDRs: at most %d entries", allowlist.MaxEntries)
	}
	entries := make([]string, len(cidrs))
	for i, e := range cidrs {
		if entries[i] = string(e); !allowlist.Valid(entries[i]) {
			c.fail("spec.allowedCIDRs[%d]: not a CIDR or an address", i)
		}
	}
	c.p.allowedCIDRs = allowlist.Parse(entries)
}

// combinations refuses what each field allows alone but together is
// certainly a mistake, and one that would leave an API less protected than
// its owners believe.
func (c *compiler) combinations() {
	p := c.p
	for i, r := range p.rules {
		for j := range i {
			// A later rule an earlier one always takes first is never used:
			// its owners think it protects something it does not.
			if e := p.rules[j]; prefixMatch(e.prefix, r.prefix) && e.methods.covers(r.methods) {
				c.fail("spec.rules[%d] is never used: spec.rules[%d] matches every request it would; put the narrower rule first", i, j)
				return
			}
		}
		// A name in a namespace whose keys are refused matches no key.
		if p.selector != nil {
			continue
		}
		for _, names := range []struct {
			field string
			list  []nsName
		}{{"subjects", r.subjects}, {"groups", r.groups}} {
			for k, n := range names.list {
				if n.namespace != p.ref.Namespace && !slices.Contains(p.namespaces, n.namespace) {
					c.fail("spec.rules[%d].%s[%d]: namespace %s is not one whose keys this policy accepts; add it to spec.keys.namespaces", i, names.field, k, n.namespace)
					return
				}
			}
		}
	}
}

// acceptsNamespace reports whether keys of namespace ns are accepted.
func (p *Policy) acceptsNamespace(ns string, lookup NamespaceLabels) bool {
	if ns == "" {
		return false
	}
	if ns == p.ref.Namespace {
		return true
	}
	if _, found := slices.BinarySearch(p.namespaces, ns); found {
		return true
	}
	if p.selector == nil || lookup == nil {
		return false
	}
	l, ok := lookup(ns)
	return ok && l != nil && p.selector.Matches(l)
}

func validNamespace(ns string) bool {
	if ns == "" || len(ns) > maxNamespaceLength || ns[0] == '-' || ns[len(ns)-1] == '-' {
		return false
	}
	return strings.IndexFunc(ns, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-'
	}) < 0
}

package keypolicy

import (
	"cmp"
	"slices"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// Table chooses the policy of a request. It is immutable: build a new one
// when policies change (Build or NewTable) and swap it in atomically.
type Table struct {
	exact  map[string]*entry // by host
	wild   map[string]*entry // by the suffix after "*."
	byRef  map[Ref]*Policy   // policies holding at least one host
	status map[Ref]Status
}

// entry lists the prefixes claimed on one host, longest first.
type entry struct{ claims []claim }

type claim struct {
	prefix string
	policy *Policy
}

// Build compiles every KeyPolicy and builds the table; objects being deleted
// take no part. Table.Status then says what each policy's status reports.
func Build(objs []kw.KeyPolicy) *Table {
	ps := make([]*Policy, 0, len(objs))
	for i := range objs {
		ps = append(ps, Compile(&objs[i]))
	}
	return NewTable(ps)
}

// NewTable resolves the policies' conflicts (Resolve) and indexes the hosts
// each holds. Callers may keep compiled policies across tables.
func NewTable(policies []*Policy) *Table {
	status, exact, wild := resolve(policies)
	t := &Table{
		exact:  make(map[string]*entry, len(exact)),
		wild:   make(map[string]*entry, len(wild)),
		byRef:  make(map[Ref]*Policy, len(status)),
		status: status,
	}
	index := func(to map[string]*entry, from map[string]*holder) {
		for key, hd := range from {
			e := &entry{claims: make([]claim, 0, len(hd.prefixes))}
			for prefix, p := range hd.prefixes {
				e.claims = append(e.claims, claim{prefix: prefix, policy: p})
				t.byRef[p.ref] = p
			}
			slices.SortFunc(e.claims, func(a, b claim) int {
				return cmp.Or(cmp.Compare(len(b.prefix), len(a.prefix)), cmp.Compare(a.prefix, b.prefix))
			})
			to[key] = e
		}
	}
	index(t.exact, exact)
	index(t.wild, wild)
	return t
}

// Len is the number of policies holding at least one host.
func (t *Table) Len() int { return len(t.byRef) }

// Status is what the table decided for a policy; ok is false for policies
// it was not given (or that are being deleted).
func (t *Table) Status(ref Ref) (Status, bool) {
	st, ok := t.status[ref]
	return st, ok
}

// Selection is the policy chosen for a request, and the request's host and
// path as policies see them.
type Selection struct {
	// Policy applies to the request; nil when none does.
	Policy *Policy
	// Claimed: a policy names the host. With Policy nil, none of the host's
	// policies claims the path, and the request is refused whatever the
	// default mode: the host's owners protect it.
	Claimed bool
	// Host is the normalised host; Path the normalised path, set only when
	// the host is claimed (other requests are not judged by path).
	Host, Path string
	// Invalid says why the request's host, or the path on a claimed host,
	// cannot be judged ("" when it can): such requests are refused.
	Invalid string
}

// Select chooses the policy for a request's host (Host or :authority) and
// path (with or without query): the exact host's policies if any, else
// those of the one-label wildcard covering it; among them, the one claiming
// the longest prefix of the path. Lookup is two map reads, then a scan of
// the prefixes claimed on that one host.
func (t *Table) Select(host, path string) Selection {
	h, ok := NormalizeHost(host)
	if !ok {
		return Selection{Invalid: "the request's host is not a valid host name"}
	}
	e := t.exact[h]
	if e == nil {
		if key, ok := wildcardKey(h); ok {
			e = t.wild[key]
		}
	}
	if e == nil {
		if deeperWildcard(h, func(k string) bool { return t.wild[k] != nil }) {
			// Under a wildcard's domain, deeper than it matches: gateways
			// (nginx server_name, Envoy domains) route such names to the
			// wildcard's service, so the host is its owners' and refused
			// whatever the default mode.
			return Selection{Claimed: true, Host: h}
		}
		return Selection{Host: h}
	}
	sel := Selection{Claimed: true, Host: h}
	if sel.Path, ok = NormalizePath(path); !ok {
		sel.Invalid = "the request's path has \".\" or \"..\" segments, \";\", control characters or bad escapes"
		return sel
	}
	for _, c := range e.claims {
		if prefixMatch(c.prefix, sel.Path) {
			sel.Policy = c.policy
			break
		}
	}
	return sel
}

// SelectPolicy chooses a policy by name (the verify API's "policy"), for a
// request path: the policy must hold a host and claim the path. A caller
// naming a policy asked to be judged by it, so no policy found is refused
// whatever the default mode (Claimed is always set).
func (t *Table) SelectPolicy(ref Ref, path string) Selection {
	p := t.byRef[ref]
	if p == nil {
		return Selection{Claimed: true}
	}
	sel := Selection{Claimed: true}
	var ok bool
	if sel.Path, ok = NormalizePath(path); !ok {
		sel.Invalid = "the request's path has \".\" or \"..\" segments, \";\", control characters or bad escapes"
		return sel
	}
	for _, c := range p.claims {
		if prefixMatch(c, sel.Path) {
			sel.Policy = p
			break
		}
	}
	return sel
}

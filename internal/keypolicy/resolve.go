package keypolicy

import (
	"cmp"
	"slices"
	"strings"
)

// Status is what Resolve decided for one policy.
type Status struct {
	// Generation the policy was compiled from.
	Generation int64
	// Invalid says why the policy is not applied (it still holds its hosts,
	// refusing every request there), or "".
	Invalid string
	// Hosts is how many distinct hosts the policy names.
	Hosts int
	// Held are the hosts it holds (spec order): the key server chooses it
	// for them. len(Held) is status.matchedHosts.
	Held []string
	// Lost are the hosts an older policy holds, in spec order.
	Lost []Loss
}

// Loss is a host a policy does not hold, and the policy that does.
type Loss struct {
	Host   string
	Winner Ref
}

// holder is who holds a host (exact name or wildcard): one namespace, and
// in it one policy per path prefix.
type holder struct {
	namespace string
	first     Ref // the oldest policy holding the host: the one to name
	prefixes  map[string]*Policy
}

// Resolve settles which policy holds which host. Policies are taken oldest
// first (creation time, then namespace/name) and each keeps a host unless an
// older one already holds it:
//
//   - a host belongs to one namespace: a newer policy of another namespace
//     naming the same host (with any path) loses it, and so does one naming
//     an exact host that an older wildcard of another namespace covers (it
//     would otherwise win by being more specific). A newer wildcard does not
//     lose to an older exact name: exact names are chosen first anyway.
//   - in one namespace, policies may split a host by path prefix; a newer
//     one claiming a prefix an older one claims on the host loses the host.
//
// A host is kept or lost whole, with every prefix claimed on it. Invalid
// policies take part like the others, so fixing a typo never hands hosts to
// another namespace; policies being deleted take no part. Policies named
// twice count once (the first).
func Resolve(policies []*Policy) map[Ref]Status {
	st, _, _ := resolve(policies)
	return st
}

// resolve returns the statuses and the holders of exact hosts and of
// wildcards (by the suffix after "*.").
func resolve(policies []*Policy) (status map[Ref]Status, exact, wild map[string]*holder) {
	order := make([]*Policy, 0, len(policies))
	seen := make(map[Ref]bool, len(policies))
	for _, p := range policies {
		if p == nil || p.deleting || seen[p.ref] {
			continue
		}
		seen[p.ref] = true
		order = append(order, p)
	}
	slices.SortFunc(order, older)

	exact, wild = map[string]*holder{}, map[string]*holder{}
	status = make(map[Ref]Status, len(order))
	for _, p := range order {
		st := Status{Generation: p.generation, Invalid: p.invalid, Hosts: len(p.hosts)}
		for _, h := range p.hosts {
			holders, key := exact, h
			suffix, isWildcard := strings.CutPrefix(h, "*.")
			if isWildcard {
				holders, key = wild, suffix
			}
			hd := holders[key]
			winner, lost := loses(p, hd)
			if !lost && !isWildcard {
				// An exact name is chosen before the wildcard covering it,
				// so it must not take a host from the wildcard's namespace.
				if wk, ok := wildcardKey(h); ok {
					if w := wild[wk]; w != nil && w.namespace != p.ref.Namespace {
						winner, lost = w.first, true
					}
				}
			}
			if !lost {
				// Nor a name deeper under another namespace's wildcard,
				// which gateways route to the wildcard's service.
				name := key
				if isWildcard {
					name = "x." + suffix
				}
				var w *holder
				if deeperWildcard(name, func(k string) bool { w = wild[k]; return w != nil && w.namespace != p.ref.Namespace }) {
					winner, lost = w.first, true
				}
			}
			if lost {
				st.Lost = append(st.Lost, Loss{Host: h, Winner: winner})
				continue
			}
			if hd == nil {
				hd = &holder{namespace: p.ref.Namespace, first: p.ref, prefixes: make(map[string]*Policy, len(p.claims))}
				holders[key] = hd
			}
			for _, c := range p.claims {
				hd.prefixes[c] = p
			}
			st.Held = append(st.Held, h)
		}
		status[p.ref] = st
	}
	return status, exact, wild
}

// loses reports whether p, newer than every policy in hd, loses the host hd
// holds, and to whom.
func loses(p *Policy, hd *holder) (Ref, bool) {
	if hd == nil {
		return Ref{}, false
	}
	if hd.namespace != p.ref.Namespace {
		return hd.first, true
	}
	for _, c := range p.claims {
		if q, ok := hd.prefixes[c]; ok {
			return q.ref, true
		}
	}
	return Ref{}, false
}

// older orders policies oldest first: creation time, then namespace and
// name, so every replica and the controller agree.
func older(a, b *Policy) int {
	if c := a.created.Compare(b.created); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.ref.Namespace, b.ref.Namespace), cmp.Compare(a.ref.Name, b.ref.Name))
}

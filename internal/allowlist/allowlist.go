// Package allowlist matches client addresses against a key's or a
// KeyPolicy's spec.allowedCIDRs. A list is parsed once, when its record or
// policy is loaded, never on a request.
package allowlist

import (
	"net/netip"
	"slices"
	"strings"
)

// MaxEntries bounds a list, as the CRDs do.
const MaxEntries = 64

// List is a parsed allow-list. The zero List is unset and allows every
// address. It is immutable and safe to share.
type List struct {
	prefixes []netip.Prefix
	set      bool
}

// Parse reads CIDRs ("10.0.0.0/8") and single addresses ("192.0.2.7", which
// stand for themselves), IPv4-mapped IPv6 as IPv4, as the key server reads
// client addresses. It fails closed: an entry it cannot read matches
// nothing, and a list longer than MaxEntries allows nothing, so a list the
// schema would refuse never widens into "any address". An empty list is
// unset.
func Parse(entries []string) List {
	if len(entries) == 0 {
		return List{}
	}
	l := List{set: true}
	if len(entries) > MaxEntries {
		return l
	}
	for _, e := range entries {
		if p, ok := parse(e); ok {
			l.prefixes = append(l.prefixes, p)
		}
	}
	l.prefixes = slices.Clip(l.prefixes)
	return l
}

// Valid reports whether Parse reads entry as a network or address.
func Valid(entry string) bool {
	_, ok := parse(entry)
	return ok
}

func parse(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// IsSet reports whether the list restricts addresses at all.
func (l List) IsSet() bool { return l.set }

// Allows reports whether a may pass: always when the list is unset;
// otherwise when a lies in one of its networks. An invalid a (a client
// whose address is unknown) is allowed by no list.
func (l List) Allows(a netip.Addr) bool {
	if !l.set {
		return true
	}
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("").Unmap()
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Equal reports whether two lists allow the same networks, in order.
func (l List) Equal(o List) bool { return l.set == o.set && slices.Equal(l.prefixes, o.prefixes) }

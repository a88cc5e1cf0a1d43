package keyserver

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds the X-Forwarded-For entries looked at: more
// trusted proxies than this in a row is a loop or a misconfiguration.
const maxForwardedHops = 32

// clientAddr is the address failed attempts are counted against: the TCP
// peer, unless the peer is one of trusted; then the right-most
// X-Forwarded-For entry that is not. Each proxy appends the address it got
// the request from, so entries right of the first untrusted one were written
// by trusted proxies and everything left of it by the client, who may write
// anything. An entry that is not an address stops the walk at the last
// trusted hop: a client must not get a fresh bucket per made-up string.
// All peers that are not IP addresses share the zero Addr.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if len(trusted) == 0 || !isTrusted(peer, trusted) {
		return peer
	}
	client, hops := peer, 0
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		for rest := xff[i]; ; {
			entry := rest
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				entry, rest = rest[j+1:], rest[:j]
			} else {
				rest = ""
			}
			if entry = strings.TrimSpace(entry); entry != "" { // "a,,b" and trailing commas
				if hops++; hops > maxForwardedHops {
					return client
				}
				a := parseHost(entry)
				if !a.IsValid() {
					return client
				}
				client = a
				if !isTrusted(a, trusted) {
					return a
				}
			}
			if rest == "" {
				break
			}
		}
	}
	// Every hop was a trusted proxy: the left-most is the closest to the
	// client we know.
	return client
}

// parseHost reads "addr", "addr:port", "[v6]" or "[v6]:port" as an
// address without zone, IPv4-mapped IPv6 as IPv4; anything else is the
// zero Addr.
func parseHost(s string) netip.Addr {
	// "addr:port" first: a request's RemoteAddr always is, and failing
	// ParseAddr on it would allocate its error on every request. The two
	// forms are disjoint (a bare IPv6 address is never read as one with a
	// port: ParseAddrPort wants it in brackets), so the order changes no
	// answer.
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		host, _, serr := net.SplitHostPort(s)
		if serr != nil {
			host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}
		}
	}
	return a.WithZone("").Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies reads a comma-separated list of CIDRs or single
// addresses ("10.0.0.0/8, 192.168.1.5, fd00::/8") for
// Options.TrustedProxies. IPv4-mapped IPv6 is read as IPv4, as clientAddr
// reads addresses.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(f, "/") {
			var err error
			if p, err = netip.ParsePrefix(f); err != nil {
				return nil, fmt.Errorf("trusted proxy %q is not a CIDR: %w", f, err)
			}
		} else {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q is not an address: %w", f, err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("trusted proxy %q: zones are not supported", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

package keypolicy

import "strings"

// Bounds of DNS names.
const (
	maxHostLength  = 253
	maxLabelLength = 63
)

// NormalizeHost returns a Host header's or :authority's host the way
// policies name hosts: lower case, without port and without one trailing
// dot. ok is false for garbage (empty, over-long, empty or over-long labels,
// characters no DNS name has, a port that is not a number), which no policy
// may be chosen for. A bracketed IP literal is returned as it is: it is a
// valid host, and no policy names one.
func NormalizeHost(h string) (host string, ok bool) {
	if h == "" || len(h) > maxHostLength+1+6 { // a trailing dot, ":65535"
		return "", false
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 || !validPort(h[end+1:], true) {
			return "", false
		}
		for i := 1; i < end; i++ {
			if c := h[i]; !isHex(c) && c != ':' && c != '.' {
				return "", false
			}
		}
		return strings.ToLower(h[:end+1]), true
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:], false) {
			return "", false
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > maxHostLength {
		return "", false
	}
	upper, label := false, 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", false
			}
			label = 0
			continue
		case 'A' <= c && c <= 'Z':
			upper = true
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
		if label++; label > maxLabelLength {
			return "", false
		}
	}
	if label == 0 {
		return "", false
	}
	if upper {
		h = strings.ToLower(h)
	}
	return h, true
}

// validPort accepts "" (when allowed) or ":" and 1 to 5 digits.
func validPort(p string, emptyOK bool) bool {
	if p == "" {
		return emptyOK
	}
	if p[0] != ':' || len(p) < 2 || len(p) > 6 {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// wildcardKey returns the key of the one-label wildcard covering host
// ("a.example.com" → "example.com", the key of "*.example.com").
func wildcardKey(host string) (string, bool) {
	i := strings.IndexByte(host, '.')
	if i <= 0 || i == len(host)-1 {
		return "", false
	}
	return host[i+1:], true
}

// deeperWildcard reports whether a wildcard held (per held, keyed like
// wildcardKey) covers host two or more labels up: "*.b.example.com" for
// "x.y.b.example.com". O(labels).
func deeperWildcard(host string, held func(key string) bool) bool {
	key, ok := wildcardKey(host)
	for ok {
		if key, ok = wildcardKey(key); ok && held(key) {
			return true
		}
	}
	return false
}

// validPolicyHost checks a spec.hosts entry as the CRD schema does: the key
// server must not trust that every stored object passed today's schema.
func validPolicyHost(h string) bool {
	if len(h) == 0 || len(h) > maxHostLength {
		return false
	}
	name, wildcard := strings.CutPrefix(h, "*.")
	labels := strings.Split(name, ".")
	if wildcard && len(labels) < 2 {
		return false
	}
	numeric := true
	for _, l := range labels {
		if l == "" || len(l) > maxLabelLength || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case '0' <= c && c <= '9':
			case 'a' <= c && c <= 'z', c == '-':
				numeric = false
			default:
				return false
			}
		}
	}
	return wildcard || !numeric // IP addresses are not host names
}

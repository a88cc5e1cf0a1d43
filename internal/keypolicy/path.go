package keypolicy

import (
	"net/url"
	"strings"
)

// MaxPathLength bounds the request path judged; a longer one is refused.
const MaxPathLength = 4096

// maxPathPrefixLength bounds spec.rules[].pathPrefix, as the schema does.
const maxPathPrefixLength = 1024

// maxDecodes: a path still percent-encoded after this many decodings is
// refused rather than guessed at.
const maxDecodes = 3

// NormalizePath returns the path of a request target the way rules match
// it, or ok=false when the path cannot be judged safely and the request
// must be refused.
//
// Gateways and servers disagree on what a raw path means, and a policy must
// never see a less protected path than the server does. So the query and
// fragment are dropped; percent-escapes are decoded, repeatedly (a server
// that decodes twice must not reach /admin through /%2561dmin); "\" counts
// as "/" (some servers treat it so) and repeated slashes are merged. Those
// steps only ever make the path match more of a policy's prefixes, never
// fewer. What cannot be made safe that way is refused: "." and ".."
// segments (resolved by some servers and not by others, so either reading
// could be the wrong one), ";" (path parameters, which some servers strip),
// control characters, a path not starting with "/", and one over
// MaxPathLength. An empty path is "/".
func NormalizePath(p string) (path string, ok bool) {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		return "/", true
	}
	if len(p) > MaxPathLength || p[0] != '/' {
		return "", false
	}
	if plainPath(p) {
		return p, true // the common case: no allocation
	}
	for i := 0; strings.IndexByte(p, '%') >= 0; i++ {
		if i == maxDecodes {
			return "", false
		}
		d, err := url.PathUnescape(p)
		if err != nil {
			if i == 0 {
				return "", false // not a valid request path
			}
			break // a "%" that decoding produced is a literal one
		}
		p = d
	}
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f || c == ';':
			return "", false
		case c == '\\':
			c = '/'
		}
		if c == '/' && len(out) > 0 && out[len(out)-1] == '/' {
			continue
		}
		out = append(out, c)
	}
	p = string(out)
	if p == "" || p[0] != '/' || hasDotSegment(p) {
		return "", false
	}
	return p, true
}

// plainPath reports whether p is already what NormalizePath would return.
func plainPath(p string) bool {
	prev := byte(0)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' || c == '\\' || c == ';' || c < 0x20 || c == 0x7f || c == '/' && prev == '/' {
			return false
		}
		prev = c
	}
	return !hasDotSegment(p)
}

// hasDotSegment reports whether a "/"-separated path has a "." or ".."
// segment.
func hasDotSegment(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '.' || i == 0 || p[i-1] != '/' {
			continue
		}
		j := i + 1
		if j < len(p) && p[j] == '.' {
			j++
		}
		if j == len(p) || p[j] == '/' {
			return true
		}
	}
	return false
}

// prefixMatch reports whether path starts with prefix segment by segment:
// "/a" matches "/a", "/a/" and "/a/b", not "/ab". prefix is normalised
// (no trailing slash but "/").
func prefixMatch(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// prefixMatchFold is prefixMatch ignoring letter case.
func prefixMatchFold(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	return len(path) >= len(prefix) && strings.EqualFold(path[:len(prefix)], prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// normalizePathPrefix checks a spec.rules[].pathPrefix as the CRD schema does
// and drops a trailing slash ("/v1/" and "/v1" claim the same paths).
// Unset means "/".
func normalizePathPrefix(pp string) (string, bool) {
	if pp == "" {
		return "/", true
	}
	if len(pp) > maxPathPrefixLength || pp[0] != '/' || strings.Contains(pp, "//") || hasDotSegment(pp) {
		return "", false
	}
	for i := 0; i < len(pp); i++ {
		if !prefixChar(pp[i]) {
			return "", false
		}
	}
	if len(pp) > 1 {
		pp = strings.TrimSuffix(pp, "/")
	}
	return pp, true
}

// prefixChar: the unreserved and sub-delimiter characters of RFC 3986 but
// ";", and ":", "@", "/".
func prefixChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._~!$&'()*+,=:@/-", c) >= 0
}

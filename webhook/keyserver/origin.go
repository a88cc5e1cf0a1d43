package keyserver

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/keyward/keyward/internal/keypolicy"
)

// The headers forward-auth reads to learn the original request (the one the
// gateway is about to pass on), besides the check request's own Host, path
// and method. docs/gateways.md says which gateway sets which.
const (
	// HeaderForwardedHost is the original host (Traefik, Caddy, the nginx
	// block); believed only from a peer in --trusted-proxies.
	HeaderForwardedHost = "X-Forwarded-Host"
	// HeaderForwardedURI and HeaderOriginalURI are the original request
	// target, path and query (Traefik and Caddy set the first, the nginx
	// block both).
	HeaderForwardedURI = "X-Forwarded-Uri"
	HeaderOriginalURI  = "X-Original-Uri"
	// HeaderForwardedMethod and HeaderOriginalMethod are the original
	// method (Traefik and Caddy set the first, the nginx block both).
	HeaderForwardedMethod = "X-Forwarded-Method"
	HeaderOriginalMethod  = "X-Original-Method"
)

// authzPrefix is where forward-auth is served; Envoy appends the original
// path to it.
const authzPrefix = "/v1/authz"

// maxMethodLength bounds a method read from a header.
const maxMethodLength = 32

// original is what a check request says about the original request.
type original struct {
	host, path, method string
	// hasPath: some indication of the path was sent; without one, a host a
	// policy names cannot be judged (its rules may depend on the path).
	hasPath bool
	// problem says why the original request cannot be judged, or "".
	problem string
}

// originalRequest reads the original request's host, path and method from
// a forward-auth check request, the way each gateway sends them:
//
//   - host: X-Forwarded-Host when the peer is in trusted (Traefik's check
//     request is addressed to the key server, so its Host is the key
//     server's); otherwise, and when a trusted peer sends none, the check
//     request's Host (Envoy and Caddy send the client's; the nginx block sets
//     it). A client behind a gateway that passes its headers on must not
//     choose the host a policy is chosen by, hence the trust.
//   - path: the path below /v1/authz (Envoy appends the client's), and
//     X-Forwarded-Uri and X-Original-Uri (the others). Every indication sent
//     must agree with the others, so a client's own header passed on by a
//     gateway that sets the other one is refused, not believed.
//   - method: X-Forwarded-Method, X-Original-Method, and the check
//     request's own under Envoy (which checks with the original method and
//     appends the path) or when it is not GET (nginx, Caddy and Traefik
//     check with GET whatever the original). Again, every indication must
//     agree: a client's POST is never judged as the GET it claims.
func originalRequest(r *http.Request, trusted []netip.Prefix) original {
	var o original
	o.host = r.Host
	// The header names are canonical (TestOriginHeaderNamesAreCanonical):
	// read straight from the map, as Header.Values would after
	// canonicalising them again on every request.
	if xfh := r.Header[HeaderForwardedHost]; len(xfh) > 0 && len(trusted) > 0 && isTrusted(parseHost(r.RemoteAddr), trusted) {
		if len(xfh) > 1 {
			o.problem = "the gateway sent more than one X-Forwarded-Host"
			return o
		}
		o.host = strings.TrimSpace(xfh[0])
	}

	// Envoy appends the original path: the check request's path is it.
	envoy := false
	switch esc := r.URL.EscapedPath(); {
	case esc == authzPrefix:
	case strings.HasPrefix(esc, authzPrefix+"/"):
		envoy = true
		o.path, o.hasPath = esc[len(authzPrefix):], true
	default:
		// "/v1%2Fauthz/…": served (routing decodes), but what follows is
		// not a path anyone sent.
		o.problem = "the check request's path does not start with " + authzPrefix
		return o
	}
	for _, name := range [...]string{HeaderForwardedURI, HeaderOriginalURI} {
		for _, v := range r.Header[name] {
			if !o.hasPath {
				o.path, o.hasPath = v, true
				continue
			}
			if !samePath(o.path, v) {
				o.problem = "the gateway's indications of the original path (" + authzPrefix + "/…, X-Forwarded-Uri, X-Original-Uri) disagree"
				return o
			}
		}
	}

	// nginx, Caddy and Traefik check with GET whatever the original method;
	// any other method of the check request is an indication too.
	if envoy || r.Method != http.MethodGet {
		o.method = r.Method
	}
	for _, name := range [...]string{HeaderForwardedMethod, HeaderOriginalMethod} {
		for _, v := range r.Header[name] {
			v = strings.TrimSpace(v)
			switch {
			case len(v) > maxMethodLength || v == "":
				o.problem = "the gateway sent an empty or over-long " + name
				return o
			case o.method == "":
				o.method = v
			case v != o.method:
				o.problem = "the gateway's indications of the original method (the check request's, X-Forwarded-Method, X-Original-Method) disagree"
				return o
			}
		}
	}
	if o.method == "" {
		o.method = r.Method
	}
	return o
}

// samePath reports whether two indications of the original path name the
// same path as policies see it (query, escapes and repeated slashes aside).
// A path that cannot be judged agrees with nothing.
func samePath(a, b string) bool {
	if a == b {
		return true
	}
	na, okA := keypolicy.NormalizePath(a)
	nb, okB := keypolicy.NormalizePath(b)
	return okA && okB && na == nb
}

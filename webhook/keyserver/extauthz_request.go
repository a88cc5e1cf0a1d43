package keyserver

import (
	"net/http"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keyward/keyward/internal/keypolicy"
)

// Context extensions an Envoy route sets on its ext_authz check
// (ExtAuthzPerRoute.check_settings.context_extensions). The client cannot
// set them, so they may do what the query string of /v1/authz may not:
// name the policy. Anyone who reaches the gRPC port directly can set them,
// and learns no more than POST /v1/verify tells (whether a key passes a
// policy); only Envoy's answer lets a request through.
const (
	// ExtensionPolicy names the KeyPolicy that judges the route's
	// requests, "<namespace>/<name>", instead of the one chosen by host and
	// path (as verify's "policy"): it must hold a host and claim the path.
	ExtensionPolicy = "keyward.dev/policy"
	// ExtensionScopes are scopes the key must also hold, space-separated
	// (as ?scope= on /v1/authz): they narrow, never widen.
	ExtensionScopes = "keyward.dev/scopes"
	// ExtensionNamespaces are the namespaces whose keys alone are
	// accepted, space-separated (as ?namespace=): they narrow too.
	ExtensionNamespaces = "keyward.dev/namespaces"
	// extensionPrefix: any other extension under it is a mistake (a typo
	// would silently not narrow), and refused.
	extensionPrefix = "keyward.dev/"
)

// maxNamespacesAsked bounds keyward.dev/namespaces, as maxScopesAsked
// bounds scopes.
const maxNamespacesAsked = 32

// checkRequest is what an Envoy CheckRequest asks, in the key server's
// terms. A request that cannot be read has status set (and the rest unset).
type checkRequest struct {
	// status, when not 0, is the HTTP status of a refusal of the check
	// request itself (400, 431), with reason, before any key is looked at.
	status int
	reason string

	// header holds the headers credentialFromHeader reads, under their
	// canonical names: Authorization, X-Api-Key and every name of X-Api-Key's
	// length (its aliases), every value.
	header http.Header
	// orig is the original request: :authority, path (query included, as
	// Envoy sends it) and method.
	orig original
	// policy, when set, is the policy the route named.
	policy *keypolicy.Ref
	// scopes and namespaces narrow the decision.
	scopes, namespaces []string
	// client is the address failed attempts are counted against.
	client netip.Addr
	// forged are the client's headers an upstream could read as Keyward's
	// (any X-Keyward-* and its aliases, "_" or "." for "-"), as Envoy
	// names them: removed from a request that passes.
	forged []string
}

// readCheckRequest reads req, sent by the gRPC peer at peer; trusted are
// the peers whose attributes.source.address is believed (--trusted-proxies).
func readCheckRequest(req *authv3.CheckRequest, peer netip.Addr, trusted []netip.Prefix) checkRequest {
	var c checkRequest
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	c.client = peer
	// Envoy reports its downstream peer (after its own use_remote_address
	// and xff_num_trusted_hops) as the source; from anyone else that field
	// is the caller's say, and a fresh failure bucket per forged address.
	if isTrusted(peer, trusted) {
		if a := sourceAddr(attrs.GetSource().GetAddress()); a.IsValid() {
			c.client = a
		}
	}

	if !c.readHeaders(h) {
		return c
	}
	c.orig = original{host: h.GetHost(), path: h.GetPath(), method: h.GetMethod(), hasPath: h.GetPath() != ""}
	switch m := c.orig.method; {
	case m == "" || len(m) > maxMethodLength:
		c.orig.problem = "the check request carries no method, or an over-long one"
	case len(c.orig.path) > keypolicy.MaxPathLength:
		c.orig.problem = "the original request's path is too long"
	}
	c.readExtensions(attrs.GetContextExtensions())
	return c
}

// sourceAddr is an Envoy address's IP, or the zero Addr.
func sourceAddr(a *corev3.Address) netip.Addr {
	ip, err := netip.ParseAddr(a.GetSocketAddress().GetAddress())
	if err != nil {
		return netip.Addr{}
	}
	return ip.WithZone("").Unmap()
}

// readHeaders bounds the original request's headers and keeps what the
// decision needs. Envoy sends them lower-cased, in headers (a repeated
// name's values joined by ",") or, with encode_raw_headers, in header_map
// (one entry per value): both are read, header_map first.
func (c *checkRequest) readHeaders(h *authv3.AttributeContext_HttpRequest) bool {
	n, size := 0, 0
	add := func(name, value string) bool {
		n++
		size += len(name) + len(value)
		if n > maxCheckHeaders || size > maxCheckHeaderBytes {
			c.status, c.reason = http.StatusRequestHeaderFieldsTooLarge, "request headers too large"
			return false
		}
		lower := strings.ToLower(name)
		if lower == "authorization" || len(lower) == len(headerAPIKey) {
			if c.header == nil {
				c.header = http.Header{}
			}
			k := headerAuthorization
			if lower != "authorization" {
				k = http.CanonicalHeaderKey(lower) // X-Api-Key, or a name of its length
			}
			c.header[k] = append(c.header[k], value)
		}
		if forgedIdentity(lower) {
			c.forged = append(c.forged, lower)
		}
		return true
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		if !add(hv.GetKey(), v) {
			return false
		}
	}
	for k, v := range h.GetHeaders() {
		if !add(k, v) {
			return false
		}
	}
	return true
}

// forgedIdentity reports whether a client's header (lower-cased) is one an
// upstream could take for the key server's: X-Keyward-* in any spelling
// PHP, CGI and WSGI fold to it ("_" and "." for "-").
func forgedIdentity(lower string) bool {
	const prefix = "x-keyward-"
	return len(lower) > len(prefix) && foldSeparators(lower[:len(prefix)]) == prefix
}

// readExtensions reads the route's context extensions.
func (c *checkRequest) readExtensions(ext map[string]string) {
	for k, v := range ext {
		switch k {
		case ExtensionPolicy:
			ns, name, ok := strings.Cut(v, "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") || len(v) > maxPolicyRefLength {
				c.badConfig(ExtensionPolicy + ` must be "<namespace>/<name>"`)
				return
			}
			c.policy = &keypolicy.Ref{Namespace: ns, Name: name}
		case ExtensionScopes:
			if c.scopes = strings.Fields(v); len(c.scopes) > maxScopesAsked {
				c.badConfig("too many scopes in " + ExtensionScopes)
				return
			}
		case ExtensionNamespaces:
			if c.namespaces = strings.Fields(v); len(c.namespaces) > maxNamespacesAsked {
				c.badConfig("too many namespaces in " + ExtensionNamespaces)
				return
			}
		default:
			if strings.HasPrefix(k, extensionPrefix) {
				// Only the route's configuration names these: a typo must
				// not pass what the intended narrowing would refuse.
				c.badConfig("unknown context extension " + k + " (want " + ExtensionPolicy + ", " + ExtensionScopes + " or " + ExtensionNamespaces + ")")
				return
			}
		}
	}
}

// badConfig refuses a check whose route is misconfigured: the gateway's
// operator has to fix it, and until then nothing passes.
func (c *checkRequest) badConfig(reason string) {
	c.status, c.reason = http.StatusInternalServerError, "the gateway's ext_authz configuration is invalid: "+reason
}

package keyserver

import (
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/keyward/keyward/internal/keypolicy"
)

// maxScopesAsked bounds ?scope= and the verify API's scopes.
const maxScopesAsked = 32

// authz is forward-auth for nginx auth_request, Traefik ForwardAuth, Caddy
// forward_auth and Envoy ext_authz (HTTP): any method, any path below
// /v1/authz. The key must be valid (401 otherwise); then the KeyPolicy of
// the original request's host and path decides (403 with a code when it
// refuses), with ?scope= and ?namespace= narrowing on top.
func (s *Server) authz(w http.ResponseWriter, r *http.Request) outcome {
	var q url.Values // nil reads as empty
	if r.URL.RawQuery != "" {
		// Most checks carry no query: no map to build for them.
		q = r.URL.Query()
	}
	required := slices.DeleteFunc(q["scope"], func(s string) bool { return s == "" })
	if len(required) > maxScopesAsked {
		http.Error(w, "too many scopes", http.StatusBadRequest)
		return outcome{result: "BAD_REQUEST"}
	}
	cred, err := credentialFrom(r)
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return outcome{result: resultTwoCredentials}
	}
	a := s.authorize(r.Context(), authzRequest{
		cred: cred, orig: originalRequest(r, s.opts.TrustedProxies), client: clientAddr(r, s.opts.TrustedProxies),
		narrowing: keypolicy.Narrowing{Scopes: required, Namespaces: q["namespace"]},
	})
	h := w.Header()
	writeRateLimitHeaders(h, a.rate)
	if a.status != http.StatusOK {
		writeRefusal(w, a)
		return outcome{result: a.result}
	}
	setIdentityHeaders(h, a.res, policyLabel(a.decision.Policy))
	w.WriteHeader(http.StatusOK)
	return outcome{result: string(a.res.Code)}
}

// writeRefusal answers a forward-auth request authorize refused.
func writeRefusal(w http.ResponseWriter, a authzAnswer) {
	switch a.status {
	case http.StatusForbidden:
		refuse(w, a.decision)
	case http.StatusTooManyRequests:
		if !a.rate.limit.IsZero() {
			// The key's own limit: its holder is told which, and when.
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(a.retryAfter)))
			w.Header().Set(wire.HeaderCode, resultRateLimited)
			http.Error(w, "too many requests: "+a.reason, a.status)
			return
		}
		writeFailureLimited(w, a.retryAfter)
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyward", error="invalid_token"`)
		http.Error(w, a.reason, a.status)
	default:
		http.Error(w, a.reason, a.status)
	}
}

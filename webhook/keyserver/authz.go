package keyserver

import (
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"

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
	client := clientAddr(r, s.opts.TrustedProxies)
	a := s.authorize(r.Context(), authzRequest{
		cred: cred, orig: originalRequest(r, s.opts.TrustedProxies), client: client,
		narrowing: keypolicy.Narrowing{Scopes: required, Namespaces: q["namespace"]},
	})
	h := w.Header()
	writeRateLimitHeaders(h, a.rate)
	if a.status != http.StatusOK {
		writeRefusal(w, a)
	} else {
		setIdentityHeaders(h, identityHeaders(a))
		w.WriteHeader(http.StatusOK)
	}
	return authzOutcome(&a, client)
}

// authzOutcome is what the wrapper reports of authorize's answer a about
// client: its result, and the key's public identity when it validated.
func authzOutcome(a *authzAnswer, client netip.Addr) outcome {
	return outcome{result: a.result, accepted: a.status == http.StatusOK, key: identityFrom(a.res),
		policy: a.decision.Policy, client: client}
}

// writeRefusal answers a forward-auth request authorize refused.
func writeRefusal(w http.ResponseWriter, a authzAnswer) {
	h := w.Header()
	for _, f := range refusalHeaders(a) {
		h.Set(f.name, f.value)
	}
	ct, body := refusalBody(a)
	if ct == contentTypeJSON {
		h.Set("Cache-Control", "no-store")
	}
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, body)
}

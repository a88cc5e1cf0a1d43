package keyserver

import (
	"net/http"
	"slices"
	"strings"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keyindex"
)

// maxScopesAsked bounds ?scope= and the verify API's scopes.
const maxScopesAsked = 32

// authz is forward-auth for nginx auth_request, Traefik ForwardAuth and
// Envoy ext_authz (HTTP): any method, any path below /v1/authz.
func (s *Server) authz(w http.ResponseWriter, r *http.Request) outcome {
	q := r.URL.Query()
	required := slices.DeleteFunc(q["scope"], func(s string) bool { return s == "" })
	if len(required) > maxScopesAsked {
		http.Error(w, "too many scopes", http.StatusBadRequest)
		return outcome{result: "BAD_REQUEST"}
	}
	// Tokens must name the default audience here: the query string may come
	// from the client (Envoy appends the original path), so it cannot widen
	// what is accepted.
	cred, err := credentialFrom(r)
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return outcome{result: resultTwoCredentials}
	}
	res := s.identify(cred, nil)
	if res.Code != keyindex.Valid {
		// A request with no key is not guessing one: behind a gateway every
		// visitor shares one address, and keyless visitors are not counted.
		if cred != "" && s.limitFailure(w, r, bucketKeyID(cred)) {
			return outcome{result: resultRateLimited}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyward", error="invalid_token"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return outcome{result: string(res.Code)}
	}
	if res = keyindex.RequireScopes(res, required); res.Code != keyindex.Valid {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyward", error="insufficient_scope", scope="`+strings.Join(required, " ")+`"`)
		http.Error(w, "forbidden: the key lacks a required scope", http.StatusForbidden)
		return outcome{result: string(res.Code)}
	}
	if ns := q["namespace"]; len(ns) > 0 && !slices.Contains(ns, res.Namespace) {
		// The gateway accepts keys of these namespaces only.
		http.Error(w, "forbidden: the key belongs to another namespace", http.StatusForbidden)
		return outcome{result: "WRONG_NAMESPACE"}
	}
	if res.Access == string(kw.AccessReadOnly) && !allSafe(r) {
		http.Error(w, "forbidden: the key is read-only", http.StatusForbidden)
		return outcome{result: "READ_ONLY"}
	}
	h := w.Header()
	h.Set(HeaderSubject, res.Subject)
	h.Set(HeaderGroups, strings.Join(res.Groups, ","))
	h.Set(HeaderScopes, strings.Join(res.Scopes, " "))
	h.Set(HeaderKeyID, res.KeyID)
	h.Set(HeaderNamespace, res.Namespace)
	w.WriteHeader(http.StatusOK)
	return outcome{result: string(res.Code)}
}

// allSafe reports whether every indication of the original request's method
// is safe: the request's own method (Envoy forwards it; nginx's subrequest
// inherits it) and X-Forwarded-Method (Traefik) / X-Original-Method (nginx
// setups). A client may smuggle one of these headers past a gateway that
// sets only the other, so one unsafe indication is enough to refuse.
func allSafe(r *http.Request) bool {
	if !safeMethod(r.Method) {
		return false
	}
	for _, h := range []string{"X-Forwarded-Method", "X-Original-Method"} {
		for _, m := range r.Header.Values(h) {
			if !safeMethod(strings.ToUpper(strings.TrimSpace(m))) {
				return false
			}
		}
	}
	return true
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

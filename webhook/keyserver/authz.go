package keyserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keyindex"
)

// Response headers of a successful forward-auth check, for the gateway to
// pass upstream.
const (
	HeaderSubject = "X-Keyward-Subject"
	HeaderGroups  = "X-Keyward-Groups"
	HeaderScopes  = "X-Keyward-Scopes"
	HeaderKeyID   = "X-Keyward-Key-Id"
	// HeaderNamespace is the namespace of the key's object: subjects are
	// chosen per namespace, so a subject alone does not say whose key it is.
	HeaderNamespace = "X-Keyward-Namespace"
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

// VerifyRequest / VerifyResponse are the JSON verify API.
// VerifyRequest is the body of POST /v1/verify.
type VerifyRequest struct {
	Key    string   `json:"key"`
	Scopes []string `json:"scopes,omitempty"`
}

// VerifyResponse is the answer of POST /v1/verify (the kubectl plugin
// decodes it too).
type VerifyResponse struct {
	Valid     bool       `json:"valid"`
	Code      string     `json:"code"`
	Subject   string     `json:"subject,omitempty"`
	Groups    []string   `json:"groups,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	KeyID     string     `json:"keyID,omitempty"`
	Namespace string     `json:"namespace,omitempty"`
	Access    string     `json:"access,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// verify answers whether a key is valid, and whose it is, as JSON.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) outcome {
	var req VerifyRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		msg := "the body must be JSON: {\"key\": \"…\", \"scopes\": [\"…\"]}"
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			msg = "the body is too large"
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Message: msg})
		return outcome{result: "BAD_REQUEST"}
	}
	if len(req.Scopes) > maxScopesAsked {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Message: "too many scopes"})
		return outcome{result: "BAD_REQUEST"}
	}
	res := s.identify(req.Key, nil)
	if res.Code != keyindex.Valid && req.Key != "" && s.limitFailure(w, r, bucketKeyID(req.Key)) {
		return outcome{result: resultRateLimited}
	}
	res = keyindex.RequireScopes(res, req.Scopes)
	out := VerifyResponse{Valid: res.Code == keyindex.Valid, Code: string(res.Code)}
	if res.Code == keyindex.Valid || res.Code == keyindex.InsufficientScope {
		out.Subject, out.Groups, out.Scopes, out.KeyID = res.Subject, res.Groups, res.Scopes, res.KeyID
		out.Namespace, out.Access, out.ExpiresAt = res.Namespace, res.Access, res.ExpiresAt
	}
	writeJSON(w, http.StatusOK, out)
	return outcome{result: string(res.Code)}
}

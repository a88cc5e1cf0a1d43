package keyserver

import (
	"encoding/json"
	"errors"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
)

// verify answers whether a key is valid, and whose it is, as JSON; with a
// policy or host, whether a gateway would let it through there, decided as
// forward-auth decides. A valid key is also judged by its allowedCIDRs (and
// the policy's) and spends one request of its rate limit, as through a
// gateway: verify counts the same way.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) outcome {
	var req wire.VerifyRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		msg := "the body must be JSON: {\"key\": \"…\", \"scopes\": [\"…\"]}"
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			msg = "the body is too large"
		}
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: msg})
		return outcome{result: "BAD_REQUEST"}
	}
	if len(req.Scopes) > maxScopesAsked {
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: "too many scopes"})
		return outcome{result: "BAD_REQUEST"}
	}
	target, msg := verifyTarget(req)
	if msg != "" {
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: msg})
		return outcome{result: "BAD_REQUEST"}
	}
	// The address the allow-lists judge: the caller's client's, when it
	// names one, else the caller's. Failed attempts stay counted against
	// the caller's own (limitFailure), never against an address it names.
	client := clientAddr(r, s.opts.TrustedProxies)
	if req.ClientAddress != "" {
		a, err := netip.ParseAddr(strings.TrimSpace(req.ClientAddress))
		if err != nil || a.Zone() != "" {
			writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: "clientAddress must be an IP address"})
			return outcome{result: "BAD_REQUEST"}
		}
		client = a.Unmap()
	}
	var sel keypolicy.Selection
	if target != nil {
		table := s.policies.Load()
		if table == nil {
			writeJSON(w, http.StatusServiceUnavailable, wire.ErrorBody{Error: "not_ready", Message: "the key server has not loaded the KeyPolicies yet"})
			return outcome{result: resultNotReady}
		}
		sel = target(table)
	}
	now := s.opts.Clock.Now()
	res, aud := s.validate(req.Key, tokenAudiences(req.Key, sel), now)
	if res.Code != keyindex.Valid && req.Key != "" && s.limitFailure(w, r, bucketKeyID(req.Key)) {
		return outcome{result: resultRateLimited}
	}
	if target == nil {
		res = keyindex.RequireScopes(res, req.Scopes)
	}
	out := wire.VerifyResponse{Valid: res.Code == keyindex.Valid, Code: string(res.Code)}
	var policy keypolicy.Ref
	if res.Code == keyindex.Valid {
		// As forward-auth: the address, the policy, then the budget.
		kl := applicableLimits(res, sel.Policy)
		d := addressDecision(client, res.AllowedCIDRs, sel.Policy)
		if d.Allowed() && target != nil {
			method := req.Method
			if method == "" {
				method = http.MethodGet
			}
			d = s.decide(keypolicy.Input{
				Method: method, Target: sel, Identity: identityOf(res, aud),
				Narrowing: keypolicy.Narrowing{Scopes: req.Scopes},
			})
			out.Policy = policyLabel(d.Policy)
		}
		sp := notSpent(kl)
		policy = d.Policy
		switch {
		case !d.Allowed():
			out.Valid, out.Code, out.Reason = false, string(d.Code), d.Reason
			if !d.Policy.IsZero() {
				out.Policy = policyLabel(d.Policy)
			}
		default:
			if sp = s.spend(r.Context(), kl); !sp.allowed() {
				out.Valid, out.Code, out.Reason = false, resultRateLimited, rateLimitedReason(sp)
				out.RetryAfter = retryAfterSeconds(sp.retryAfter())
				w.Header().Set("Retry-After", strconv.Itoa(out.RetryAfter))
			}
		}
		writeRateLimitHeaders(w.Header(), sp)
		out.RateLimit = rateLimitStatus(sp)
	}
	if res.Code == keyindex.Valid || res.Code == keyindex.InsufficientScope {
		// It validated (InsufficientScope is a valid key short of a scope
		// asked for): its use and its outcome, in one lookup.
		s.lastUsed.Use(res.Kind, res.Namespace, res.Name, now, out.Valid)
		out.Subject, out.Groups, out.Scopes, out.KeyID = res.Subject, res.Groups, res.Scopes, res.KeyID
		out.Namespace, out.Access, out.ExpiresAt = res.Namespace, res.Access, res.ExpiresAt
	}
	writeJSON(w, http.StatusOK, out)
	return outcome{result: out.Code, accepted: out.Valid, key: identityFrom(res), policy: policy}
}

// Bounds of the verify API's policy name and method.
const (
	maxPolicyRefLength = 63 + 1 + 253
	maxVerifyMethod    = maxMethodLength
)

// verifyTarget reads what a verify request asks to be judged by: nil when
// it names neither a policy nor a host; a message when it is malformed.
func verifyTarget(req wire.VerifyRequest) (func(*keypolicy.Table) keypolicy.Selection, string) {
	switch {
	case req.Policy != "" && req.Host != "":
		return nil, "name a policy or a host, not both"
	case req.Policy == "" && req.Host == "":
		if req.Path != "" || req.Method != "" {
			return nil, "path and method need a policy or a host"
		}
		return nil, ""
	case len(req.Method) > maxVerifyMethod:
		return nil, "the method is too long"
	case len(req.Path) > keypolicy.MaxPathLength:
		return nil, "the path is too long"
	}
	path := req.Path
	if path == "" {
		path = "/"
	}
	if req.Host != "" {
		return func(t *keypolicy.Table) keypolicy.Selection { return t.Select(req.Host, path) }, ""
	}
	ns, name, ok := strings.Cut(req.Policy, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") || len(req.Policy) > maxPolicyRefLength {
		return nil, "policy must be \"<namespace>/<name>\""
	}
	ref := keypolicy.Ref{Namespace: ns, Name: name}
	return func(t *keypolicy.Table) keypolicy.Selection { return t.SelectPolicy(ref, path) }, ""
}

package keyserver

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
)

// authzRequest is a forward-auth question as every front end reads it:
// HTTP forward-auth (authz.go) and Envoy's gRPC ext_authz put their
// protocol's request into it, and authorize answers both, so the two
// cannot decide differently.
type authzRequest struct {
	// cred is the one credential presented ("" for none); a front end
	// refuses a request carrying two before asking.
	cred string
	// orig is the original request: host, path and method.
	orig original
	// client is the client's address (clientAddr for HTTP), what failed
	// attempts are counted against.
	client netip.Addr
	// narrowing: scopes and namespaces the gateway or route requires on top
	// of the policy's.
	narrowing keypolicy.Narrowing
	// policy, when set, names the KeyPolicy that decides instead of the one
	// the host selects: a route's own choice (Envoy's context_extensions),
	// never a client's.
	policy *keypolicy.Ref
}

// authzAnswer is authorize's decision, for a front end to write in its
// protocol.
type authzAnswer struct {
	// status is http.StatusOK, or the refusal's: 401 (no valid key), 403
	// (a policy refused it), 429 (too many failed attempts) or 503 (the
	// policies are not loaded yet).
	status int
	// result is the metrics result and, on a refusal, its code: a
	// validation code (keyindex.Code), a policy's code (keypolicy.Code)
	// or one of the result* constants.
	result string
	// reason is one line for the client on a refusal; never key material.
	reason string
	// retryAfter is how long a client answered 429 should wait.
	retryAfter time.Duration
	// res is the key's identity (valid only when status is 200).
	res keyindex.Result
	// decision is the KeyPolicy's, when a valid key reached one; or the
	// address check's refusal (CIDR_NOT_ALLOWED).
	decision keypolicy.Decision
	// rate is the key's rate limits (its own and its KeyPolicy's) and, once
	// the request was counted, their live counters (the RateLimit headers);
	// 429 with result RATE_LIMITED when one is used up.
	rate spent
}

// authorize decides a forward-auth request: the credential must validate
// (401 otherwise, failed attempts counted per client address and key id),
// the client address must be in the key's and the policy's allowedCIDRs
// (403 CIDR_NOT_ALLOWED), then the KeyPolicy of the original request
// decides (403 with its code), and last the request spends one of the
// key's own rate limit and of its KeyPolicy's per-key limit (429
// RATE_LIMITED when either is used up).
func (s *Server) authorize(ctx context.Context, req authzRequest) (ans authzAnswer) {
	now := s.opts.Clock.Now()
	defer func() { s.countUse(&ans, now) }()
	table := s.policies.Load()
	if table == nil {
		return authzAnswer{status: http.StatusServiceUnavailable, result: resultNotReady,
			reason: "the key server has not loaded the KeyPolicies yet"}
	}
	var sel keypolicy.Selection
	if req.policy != nil {
		sel = table.SelectPolicy(*req.policy, req.orig.path)
	} else {
		sel = selectPolicy(table, req.orig)
	}
	// Tokens are validated for the audiences this API accepts: the query
	// string may come from the client (Envoy appends the original), so it
	// cannot widen them.
	res, aud := s.validate(req.cred, tokenAudiences(req.cred, sel), now)
	if res.Code != keyindex.Valid {
		// A request with no key is not guessing one: behind a gateway every
		// visitor shares one address, and keyless visitors are not counted.
		if req.cred != "" {
			if wait, limited := s.countFailure(req.client, bucketKeyID(req.cred)); limited {
				return authzAnswer{status: http.StatusTooManyRequests, result: resultRateLimited,
					reason: failureLimitedMessage, retryAfter: wait}
			}
		}
		return authzAnswer{status: http.StatusUnauthorized, result: string(res.Code), reason: "unauthorized"}
	}
	// The key is valid: then its client address, then the policy, and only
	// then its budget, so that nothing refused spends it.
	kl := applicableLimits(res, sel.Policy)
	if d := addressDecision(req.client, res.AllowedCIDRs, sel.Policy); !d.Allowed() {
		return authzAnswer{status: d.Status, result: string(d.Code), reason: d.Reason, decision: d, res: res, rate: notSpent(kl)}
	}
	d := s.decide(keypolicy.Input{
		Method: req.orig.method, Target: sel, Identity: identityOf(res, aud), Narrowing: req.narrowing,
	})
	if !d.Allowed() {
		return authzAnswer{status: d.Status, result: string(d.Code), reason: d.Reason, decision: d, res: res, rate: notSpent(kl)}
	}
	sp := s.spend(ctx, kl)
	if !sp.allowed() {
		return authzAnswer{status: http.StatusTooManyRequests, result: resultRateLimited, reason: rateLimitedReason(sp),
			retryAfter: sp.retryAfter(), res: res, decision: d, rate: sp}
	}
	return authzAnswer{status: http.StatusOK, result: string(res.Code), res: res, decision: d, rate: sp}
}

// countUse records a decided request's key as used at now (lastUsedAt)
// and counts it for status.usage: accepted when let through, refused when
// an allow-list, the policy or the rate limit refused a key that
// validated. A credential that did not validate names no key the server
// can trust, and is counted against none. Every answer about a key that
// validated carries it in res, so each such request is recorded once.
func (s *Server) countUse(a *authzAnswer, now time.Time) {
	if a.res.Code == keyindex.Valid {
		s.lastUsed.Use(a.res.Kind, a.res.Namespace, a.res.Name, now, a.status == http.StatusOK)
	}
}

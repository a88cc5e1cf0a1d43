package keyserver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/keypolicy"
)

// The headers of authorize's answers, as every front end writes them
// (/v1/authz as HTTP headers, gRPC ext_authz as Envoy header options): one
// list, so the two cannot differ.

// headerField is one header of an answer.
type headerField struct{ name, value string }

// Values of WWW-Authenticate (RFC 6750).
const (
	challengeInvalidToken      = `Bearer realm="keyward", error="invalid_token"`
	challengeInsufficientScope = `Bearer realm="keyward", error="insufficient_scope"`
)

// identityHeaders are the headers of a 200, for the gateway to pass
// upstream: all six, an empty value where there is nothing to say.
func identityHeaders(a authzAnswer) [6]headerField {
	res := a.res
	return [6]headerField{
		{wire.HeaderSubject, res.Subject},
		{wire.HeaderGroups, strings.Join(res.Groups, ",")},
		{wire.HeaderScopes, strings.Join(res.Scopes, " ")},
		{wire.HeaderKeyID, res.KeyID},
		{wire.HeaderNamespace, res.Namespace},
		// Empty when no policy decided, rather than absent: Caddy's
		// copy_headers (2.6) copies an absent header as its literal
		// placeholder.
		{wire.HeaderPolicy, policyLabel(a.decision.Policy)},
	}
}

// refusalHeaders are the headers of a refusal, for the client: the
// challenge of a 401, the code and policy of a 403 (a valid key the policy,
// or its address, refused: not a failed attempt), Retry-After on a 429, and
// the code RATE_LIMITED when it is the key's own limit.
func refusalHeaders(a authzAnswer) []headerField {
	switch a.status {
	case http.StatusUnauthorized:
		return []headerField{{"WWW-Authenticate", challengeInvalidToken}}
	case http.StatusForbidden:
		d := a.decision
		out := []headerField{{wire.HeaderCode, string(d.Code)}}
		if !d.Policy.IsZero() {
			out = append(out, headerField{wire.HeaderPolicy, d.Policy.String()})
		}
		if d.Code == keypolicy.InsufficientScope {
			out = append(out, headerField{"WWW-Authenticate", challengeInsufficientScope})
		}
		return out
	case http.StatusTooManyRequests:
		out := []headerField{{"Retry-After", strconv.Itoa(retryAfterSeconds(a.retryAfter))}}
		if keyLimited(a) {
			// The key's own limit: its holder is told which, and when.
			out = append(out, headerField{wire.HeaderCode, resultRateLimited})
		}
		return out
	}
	return nil
}

// keyLimited: a 429 of the key's rate limits (its own or its KeyPolicy's),
// not of failed attempts.
func keyLimited(a authzAnswer) bool {
	return a.status == http.StatusTooManyRequests && a.rate.limited()
}

// rateLimitHeaders are the RateLimit-Policy and RateLimit headers of the
// key's rate limits (none for a key without one), for the client, on a
// pass as on a refusal.
func rateLimitHeaders(a authzAnswer) []headerField {
	policy, counters := rateLimitFields(a.rate)
	if policy == "" {
		return nil
	}
	out := []headerField{{"RateLimit-Policy", policy}}
	if counters != "" {
		out = append(out, headerField{"RateLimit", counters})
	}
	return out
}

const contentTypeJSON = "application/json"

// refusalBody is the body of a refusal: its one-line reason (a 403's
// prefixed "forbidden: ", a key limit's "too many requests: "), or the JSON
// error of a 429 for failed attempts, as every endpoint answers it.
func refusalBody(a authzAnswer) (contentType, body string) {
	const text = "text/plain; charset=utf-8"
	switch {
	case keyLimited(a):
		return text, "too many requests: " + a.reason + "\n"
	case a.status == http.StatusTooManyRequests:
		b, _ := json.Marshal(wire.ErrorBody{Error: "rate_limited", Message: a.reason})
		return contentTypeJSON, string(b) + "\n"
	case a.status == http.StatusForbidden:
		return text, "forbidden: " + a.reason + "\n"
	}
	return text, a.reason + "\n"
}

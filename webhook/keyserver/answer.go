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
// challenge of a 401, the code and policy of a 403 (a valid key the policy
// refused: not a failed attempt), Retry-After on a 429.
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
		return []headerField{{"Retry-After", strconv.Itoa(retryAfterSeconds(a.retryAfter))}}
	}
	return nil
}

// refusalBody is the body of a refusal: its one-line reason (a 403's
// prefixed "forbidden: "), or the JSON error of a 429 as every endpoint
// answers it.
func refusalBody(a authzAnswer) (contentType, body string) {
	switch a.status {
	case http.StatusTooManyRequests:
		b, _ := json.Marshal(wire.ErrorBody{Error: "rate_limited", Message: a.reason})
		return "application/json", string(b) + "\n"
	case http.StatusForbidden:
		return "text/plain; charset=utf-8", "forbidden: " + a.reason + "\n"
	}
	return "text/plain; charset=utf-8", a.reason + "\n"
}

// Package wire is the key server's HTTP contract: the bodies it reads and
// writes and the headers of a forward-auth answer. Gateways, services and
// the kubectl plugin depend on these names and JSON fields; the package
// imports nothing of Keyward's, so a client can use it alone.
package wire

import "time"

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
	// HeaderPolicy is the KeyPolicy that decided, "<namespace>/<name>". On
	// a 200 it is empty when none did (a host no policy names, under
	// --default-policy=allow-valid-key); on a 403, absent then.
	HeaderPolicy = "X-Keyward-Policy"
	// HeaderCode is why a valid key was refused, on a 403: NO_POLICY,
	// WRONG_NAMESPACE, INSUFFICIENT_SCOPE, … (see internal/keypolicy).
	HeaderCode = "X-Keyward-Code"
)

// VerifyRequest / VerifyResponse are the JSON verify API.
// VerifyRequest is the body of POST /v1/verify.
type VerifyRequest struct {
	Key    string   `json:"key"`
	Scopes []string `json:"scopes,omitempty"`
	// Policy ("<namespace>/<name>") or Host asks for the decision a gateway
	// would get for a request to Path (default "/") with Method (default
	// GET): the code is then VALID or a KeyPolicy's refusal
	// (WRONG_NAMESPACE, NO_POLICY, …). Without either, the answer is whether
	// the key is valid (and holds Scopes), as a service that binds keys
	// itself asks.
	Policy string `json:"policy,omitempty"`
	Host   string `json:"host,omitempty"`
	Path   string `json:"path,omitempty"`
	Method string `json:"method,omitempty"`
	// ClientAddress is the address of the calling service's own client
	// (an IP address), checked against the key's and the policy's
	// allowedCIDRs; unset, the caller's own address is. Verify only
	// answers: a caller naming another address than its client's misleads
	// itself alone, and failed attempts are still counted against the
	// caller's address.
	ClientAddress string `json:"clientAddress,omitempty"`
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
	// Policy that decided ("<namespace>/<name>"), and the one-line Reason
	// of a refusal, when the request named a policy or host.
	Policy string `json:"policy,omitempty"`
	Reason string `json:"reason,omitempty"`
	// RetryAfter, with code RATE_LIMITED, is how many seconds until the
	// key may make a request again (also the Retry-After header).
	RetryAfter int `json:"retryAfter,omitempty"`
	// RateLimit is the binding rate limit and what is left of it, when one
	// applies and the request was counted: the key's own spec.rateLimit and
	// its KeyPolicy's per-key default both apply when both are set, and
	// this is the one that refused, else the one with fewer requests left.
	// The RateLimit and RateLimit-Policy headers list both.
	RateLimit *RateLimitStatus `json:"rateLimit,omitempty"`
}

// RateLimitStatus is one of a key's rate limits and its live counters.
type RateLimitStatus struct {
	// Policy is "key" (the key's own spec.rateLimit) or "policy" (a
	// KeyPolicy's per-key default).
	Policy string `json:"policy"`
	// Requests per Window seconds, in bursts of up to Burst.
	Requests int `json:"requests"`
	Window   int `json:"window"`
	Burst    int `json:"burst"`
	// Remaining requests that would pass now; Reset is the seconds until
	// the whole budget is back.
	Remaining int `json:"remaining"`
	Reset     int `json:"reset"`
}

// TokenRequest is the body of POST /v1/tokens (JSON or form).
type TokenRequest struct {
	AccessKeyID string `json:"accessKeyID"`
	SecretKey   string `json:"secretKey"`
	// Lifetime is a Go duration ("24h"); empty means the pair's default.
	Lifetime string `json:"lifetime,omitempty"`
}

// TokenResponse is the answer of POST /v1/tokens and GET /v1/token.
type TokenResponse struct {
	Token     string    `json:"token"`
	TokenType string    `json:"tokenType"`
	ExpiresAt time.Time `json:"expiresAt"`
	ExpiresIn int64     `json:"expiresIn"`
}

// RotateResponse is the answer of POST /v1/keys/current/rotate.
type RotateResponse struct {
	Key   string `json:"key"`
	KeyID string `json:"keyID"`
	// PreviousKeyID keeps working until its grace period ends.
	PreviousKeyID string `json:"previousKeyID"`
	Warning       string `json:"warning"`
}

// ErrorBody is every JSON refusal: error is a stable code (invalid_request,
// invalid_token, invalid_client, rate_limited, …), message says why.
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

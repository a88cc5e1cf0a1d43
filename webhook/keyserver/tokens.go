package keyserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/keyward/keyward/api/wire"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/tokens"
)

// errBadCredentials is the one answer to every failed exchange, whatever
// failed: which part was wrong is nobody's business.
var errBadCredentials = wire.ErrorBody{Error: "invalid_client", Message: "invalid access key id or secret key"}

// tokens exchanges an access key pair for a signed token. The pair comes
// as HTTP Basic (id:secret), JSON, or a form. The pair's allowedCIDRs must
// allow the client, and the exchange spends one request of its rate limit.
func (s *Server) tokens(w http.ResponseWriter, r *http.Request) outcome {
	req, err := readTokenRequest(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: err.Error()})
		if errors.Is(err, errTwoAuthorization) || errors.Is(err, errTwoPairs) {
			return outcome{result: resultTwoCredentials}
		}
		return outcome{result: "BAD_REQUEST"}
	}
	var lifetime time.Duration
	if req.Lifetime != "" {
		if lifetime, err = time.ParseDuration(req.Lifetime); err != nil || lifetime <= 0 {
			writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: "lifetime must be a positive duration such as \"24h\""})
			return outcome{result: "BAD_REQUEST"}
		}
	}
	return s.issue(w, r, req.AccessKeyID, req.SecretKey, lifetime)
}

// dceToken is DaoCloud DCE's GET /v1/token?ak=&sk=&cycle= (cycle in days).
// Off unless --enable-dce-token-get: a secret key in a URL lands in every
// access log on its way.
func (s *Server) dceToken(w http.ResponseWriter, r *http.Request) outcome {
	q := r.URL.Query()
	var lifetime time.Duration
	if c := q.Get("cycle"); c != "" {
		days, err := strconv.Atoi(c)
		if err != nil || days <= 0 || days > 366 {
			writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: "cycle must be a number of days between 1 and 366"})
			return outcome{result: "BAD_REQUEST"}
		}
		lifetime = time.Duration(days) * 24 * time.Hour
	}
	ak, okAK := onlyValue(q["ak"])
	sk, okSK := onlyValue(q["sk"])
	if !okAK || !okSK {
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: errTwoPairs.Error()})
		return outcome{result: resultTwoCredentials}
	}
	return s.issue(w, r, ak, sk, lifetime)
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request, ak, sk string, lifetime time.Duration) outcome {
	now := s.opts.Clock.Now()
	res, policy := s.index.ValidateAccessKey(ak, sk, now)
	if res.Code != keyindex.Valid || policy == nil {
		// Guesses are made per access key id, so they are counted per
		// (address, access key id); an overlong one counts per address.
		if s.limitFailure(w, r, ak) {
			return outcome{result: resultRateLimited}
		}
		writeJSON(w, http.StatusUnauthorized, errBadCredentials)
		return outcome{result: string(res.Code)}
	}
	if d := addressDecision(clientAddr(r, s.opts.TrustedProxies), res.AllowedCIDRs, nil); !d.Allowed() {
		s.lastUsed.Count(res.Kind, res.Namespace, res.Name, false)
		w.Header().Set(wire.HeaderCode, string(d.Code))
		writeJSON(w, http.StatusForbidden, wire.ErrorBody{Error: "cidr_not_allowed", Message: d.Reason})
		return outcome{result: string(d.Code), key: identityFrom(res)}
	}
	maxLifetime := s.opts.MaxTokenLifetime
	if policy.MaxLifetime > 0 && (maxLifetime == 0 || policy.MaxLifetime < maxLifetime) {
		maxLifetime = policy.MaxLifetime
	}
	if lifetime == 0 {
		// The default is clamped; only an explicit request over the cap is an error.
		lifetime = policy.DefaultLifetime
		if maxLifetime > 0 && lifetime > maxLifetime {
			lifetime = maxLifetime
		}
	}
	if maxLifetime > 0 && lifetime > maxLifetime {
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request",
			Message: fmt.Sprintf("lifetime %s exceeds the maximum of %s for this access key pair", lifetime, maxLifetime)})
		return outcome{result: "BAD_REQUEST", key: identityFrom(res)}
	}
	// An exchange spends the pair's budget, as its tokens' requests do: the
	// pair's own limit (no KeyPolicy judges an exchange).
	sp := s.spend(r.Context(), applicableLimits(res, nil))
	writeRateLimitHeaders(w.Header(), sp)
	if !sp.allowed() {
		s.lastUsed.Count(res.Kind, res.Namespace, res.Name, false)
		return withKey(limitedKey(w, sp.retryAfter(), "this access key pair's rate limit is used up"), res)
	}
	// Per pair, whichever front end or access key version is used.
	if wait, ok := s.mints.Take(res.Namespace, res.Name); !ok {
		s.lastUsed.Count(res.Kind, res.Namespace, res.Name, false)
		return withKey(limitedKey(w, wait, "too many tokens were requested for this access key pair"), res)
	}
	// A token never outlives its pair.
	if res.ExpiresAt != nil && now.Add(lifetime).After(*res.ExpiresAt) {
		lifetime = res.ExpiresAt.Sub(now)
	}
	aud := slices.Clone(policy.Audiences)
	if len(aud) == 0 {
		aud = []string{DefaultAudience}
	}
	issuer := tokens.Issuer{Issuer: s.opts.Issuer, Key: s.signingKey}
	tok, exp, err := issuer.Issue(tokens.Claims{
		Subject: res.Subject, Audience: aud, AccessKeyID: res.KeyID,
		Groups: res.Groups, Scopes: res.Scopes, Namespace: res.Namespace, Pair: res.Name,
	}, now, lifetime)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, wire.ErrorBody{Error: "temporarily_unavailable", Message: "no signing key is available yet"})
		return outcome{result: "UNAVAILABLE", key: identityFrom(res)}
	}
	s.lastUsed.Use(res.Kind, res.Namespace, res.Name, now, true)
	writeJSON(w, http.StatusOK, wire.TokenResponse{Token: tok, TokenType: "Bearer", ExpiresAt: exp, ExpiresIn: int64(exp.Sub(now).Seconds())})
	return outcome{result: string(res.Code), accepted: true, key: identityFrom(res)}
}

// withKey is o about res's key.
func withKey(o outcome, res keyindex.Result) outcome {
	o.key = identityFrom(res)
	return o
}

func (s *Server) signingKey() (tokens.SigningKey, error) {
	keys := s.keys.Load()
	if keys == nil {
		return tokens.SigningKey{}, errors.New("no signing key set loaded")
	}
	return keys.Active, nil
}

// readTokenRequest reads the pair from HTTP Basic, a JSON body or a form.
// A request naming two pairs is refused rather than one of them chosen: two
// Authorization headers, Basic and a body that differ, or a form repeating
// the id or secret (or giving both accessKeyID and ak, say, that differ).
func readTokenRequest(r *http.Request) (wire.TokenRequest, error) {
	var req wire.TokenRequest
	if len(r.Header[headerAuthorization]) > 1 {
		return req, errTwoAuthorization
	}
	basicAK, basicSK, hasBasic := r.BasicAuth()
	var bodyAK, bodySK string
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case ct == "application/json":
		var body wire.TokenRequest
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return req, errors.New("the body must be JSON: {\"accessKeyID\": \"…\", \"secretKey\": \"…\", \"lifetime\": \"24h\"}")
		}
		req.Lifetime = body.Lifetime
		bodyAK, bodySK = body.AccessKeyID, body.SecretKey
	case ct == "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return req, errors.New("the form could not be read")
		}
		req.Lifetime = r.PostForm.Get("lifetime")
		var okAK, okSK bool
		bodyAK, okAK = onlyValue(r.PostForm["accessKeyID"], r.PostForm["ak"])
		bodySK, okSK = onlyValue(r.PostForm["secretKey"], r.PostForm["sk"])
		if !okAK || !okSK {
			return req, errTwoPairs
		}
	case ct != "" && !hasBasic:
		return req, errors.New("send the access key pair as HTTP Basic, JSON or a form")
	}
	switch {
	case !hasBasic:
		req.AccessKeyID, req.SecretKey = bodyAK, bodySK
	// Both are the client's own values: comparing them reveals nothing
	// stored, so it needs no constant time.
	case bodyAK == "" && bodySK == "", bodyAK == basicAK && bodySK == basicSK:
		req.AccessKeyID, req.SecretKey = basicAK, basicSK
	default:
		return req, errTwoPairs
	}
	if req.AccessKeyID == "" || req.SecretKey == "" {
		return req, errors.New("an access key id and a secret key are required")
	}
	if len(req.AccessKeyID) > 64 || len(req.SecretKey) > 256 || len(req.Lifetime) > 32 || strings.ContainsAny(req.AccessKeyID, "\r\n") {
		return req, errors.New("the access key id or secret key is too long")
	}
	return req, nil
}

// onlyValue is the one non-empty value among fields (several names for the
// same thing, each possibly repeated); false if they hold different ones.
func onlyValue(fields ...[]string) (string, bool) {
	var v string
	for _, vals := range fields {
		for _, x := range vals {
			switch {
			case x == "" || x == v:
			case v == "":
				v = x
			default:
				return "", false
			}
		}
	}
	return v, true
}

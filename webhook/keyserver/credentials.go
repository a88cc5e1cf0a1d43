package keyserver

import (
	"crypto/ecdsa"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/tokens"
)

// maxCredentialBytes bounds a presented credential: the longest is a token.
const maxCredentialBytes = tokens.MaxTokenBytes

// schemes the key may be sent with, as the seed products do (DCT's apk,
// Adverity's Token and Bearer, the common ApiKey); compared case-insensitively.
var schemes = []string{"Bearer", "Token", "apk", "ApiKey"}

// Refusals of a request that carries more than one credential: a gateway
// passes every header on, and an upstream reading another one than the key
// server did would act on a credential nobody checked.
var (
	errTwoAuthorization = errors.New("more than one Authorization header: send exactly one credential")
	errTwoAPIKeys       = errors.New("more than one X-API-Key header: send exactly one credential")
	errDifferentAPIKey  = errors.New("the Authorization and X-API-Key headers carry different credentials: send exactly one credential")
	errAliasAPIKey      = errors.New("a header whose name upstreams read as X-API-Key (X_API_Key, X.API.Key …): send exactly one credential, as X-API-Key or Authorization")
	errTwoPairs         = errors.New("more than one access key pair (HTTP Basic, the body, or a repeated field): send exactly one credential")
)

// Header names as net/http stores them, read straight from the map.
const (
	headerAuthorization = "Authorization"
	headerAPIKey        = "X-Api-Key"
)

// credentialFrom reads the key from Authorization (with one of the schemes,
// or as the raw value, as Concord sends it) or from X-API-Key. More than one
// of either header is refused, and so are both when they differ; the same
// key in both is one credential (clients that set both exist).
func credentialFrom(r *http.Request) (string, error) { return credentialFromHeader(r.Header) }

// credentialFromHeader is credentialFrom for headers however they came (an
// HTTP request's, or those of an Envoy CheckRequest): h's names must be
// canonical (http.CanonicalHeaderKey), as net/http stores them.
func credentialFromHeader(h http.Header) (string, error) {
	auth, xkey := h[headerAuthorization], h[headerAPIKey]
	switch {
	case len(auth) > 1:
		return "", errTwoAuthorization
	case len(xkey) > 1:
		return "", errTwoAPIKeys
	case hasAPIKeyAlias(h):
		return "", errAliasAPIKey
	}
	var a, x string
	if len(auth) == 1 {
		a = fromAuthorization(auth[0])
	}
	if len(xkey) == 1 {
		x = strings.TrimSpace(xkey[0])
	}
	switch {
	case a == "":
		return x, nil
	// Both values are the client's own: comparing them reveals nothing
	// stored, so it needs no constant time.
	case x == "" || x == a:
		return a, nil
	default:
		return "", errDifferentAPIKey
	}
}

// hasAPIKeyAlias reports whether h has a header other than X-Api-Key whose
// name folds to it the way PHP, CGI and WSGI fold names ("_" and "." as
// "-"): an upstream would read it as the key while the key server did not.
// "Authorization" has no separator, so it has no such alias.
func hasAPIKeyAlias(h http.Header) bool {
	for name := range h {
		// Only names of X-Api-Key's length can fold to it: a cheap filter
		// on the hot path.
		if len(name) == len(headerAPIKey) && name != headerAPIKey && strings.EqualFold(foldSeparators(name), headerAPIKey) {
			return true
		}
	}
	return false
}

// foldSeparators turns "_" and "." into "-".
func foldSeparators(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '.' {
			return '-'
		}
		return r
	}, name)
}

// fromAuthorization strips a known scheme from an Authorization value.
func fromAuthorization(v string) string {
	for _, sch := range schemes {
		if len(v) > len(sch) && strings.EqualFold(v[:len(sch)], sch) && v[len(sch)] == ' ' {
			return strings.TrimSpace(v[len(sch)+1:])
		}
	}
	return strings.TrimSpace(v)
}

// bucketKeyID is the key id a credential names, for the failure limit: an
// API key's id. Tokens name none the limiter can trust before their
// signature is checked, so their failures count against the address, as do
// imported keys (their id derives from the whole secret) and junk.
func bucketKeyID(cred string) string {
	if looksLikeJWT(cred) {
		return ""
	}
	// A view into cred: the limiter copies the id before it keeps it.
	if id, _, err := keymaterial.ParseParts(cred); err == nil {
		return id
	}
	return ""
}

// looksLikeJWT: three base64url parts, the first a JSON object ("eyJ").
func looksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// identify validates an API key or a Keyward token at the clock's now.
// audiences are those a token may carry (the default one when nil).
func (s *Server) identify(cred string, audiences []string) keyindex.Result {
	res, _ := s.identifyWithAudiences(cred, audiences)
	return res
}

// identifyWithAudiences is identify, and a valid token's "aud" claim (nil
// for an API key), which KeyPolicies judge. The claim may be shared with
// the token cache: it must not be modified.
func (s *Server) identifyWithAudiences(cred string, audiences []string) (keyindex.Result, []string) {
	now := s.opts.Clock.Now()
	res, aud := s.validate(cred, audiences, now)
	if res.Code == keyindex.Valid {
		s.lastUsed.Touch(res.Kind, res.Namespace, res.Name, now)
	}
	return res, aud
}

// validate is identifyWithAudiences at now without recording the use: for
// a caller that records it with the request's outcome (LastUsed.Use), in
// one lookup.
func (s *Server) validate(cred string, audiences []string, now time.Time) (keyindex.Result, []string) {
	if cred == "" || len(cred) > maxCredentialBytes {
		return keyindex.Result{Code: keyindex.InvalidFormat}, nil
	}
	var (
		res keyindex.Result
		aud []string
	)
	if looksLikeJWT(cred) {
		res, aud = s.identifyToken(cred, audiences, now)
	} else {
		res = s.index.ValidateAPIKey(cred, now)
	}
	return res, aud
}

// verifiedTokens spares a token presented again its ES256 verification,
// which was most of a token request's CPU. What depends on the request, the
// clock or the key set is still checked on every request (tokens.VerifiedCache
// says what): the kid must still name the same key in s.keys, the claims are
// checked against this request's audiences and the clock, and the pair is
// looked up below. Bounded to 64Ki tokens and about 32 MiB of heap. It is
// shared by the process's Servers, which is sound because nothing in it
// depends on a Server: an entry only records that a signature was verified
// with a given key.
var verifiedTokens = tokens.NewVerifiedCache(1<<16, 32<<20)

func (s *Server) identifyToken(tok string, audiences []string, now time.Time) (keyindex.Result, []string) {
	keys := s.keys.Load()
	if keys == nil {
		return keyindex.Result{Code: keyindex.NotFound}, nil
	}
	if len(audiences) == 0 {
		audiences = []string{DefaultAudience}
	}
	v := tokens.Validator{Issuer: s.opts.Issuer, Audiences: audiences, Cache: verifiedTokens, Key: func(kid string) (*ecdsa.PublicKey, bool) {
		pk, ok := keys.Public(kid)
		return pk.Key, ok
	}}
	c, err := v.Validate(tok, now)
	switch {
	case errors.Is(err, tokens.ErrExpired):
		return keyindex.Result{Code: keyindex.Expired}, nil
	case errors.Is(err, tokens.ErrNotYetValid):
		return keyindex.Result{Code: keyindex.NotYetValid}, nil
	case errors.Is(err, tokens.ErrUnknownKey), errors.Is(err, tokens.ErrAudience):
		return keyindex.Result{Code: keyindex.NotFound}, nil
	case err != nil:
		return keyindex.Result{Code: keyindex.InvalidFormat}, nil
	}
	// A token lives only as long as its pair, and carries no more than the
	// pair grants now: deleted, suspended or expired pairs take their tokens
	// with them as the watch event lands, and a scope or group removed from
	// the pair is removed from its tokens.
	pair, ok := s.index.PairIdentity(c.Namespace, c.Pair, c.AccessKeyID, now)
	if !ok || pair.Subject != c.Subject {
		return keyindex.Result{Code: keyindex.NotFound}, nil
	}
	exp := c.Expiry.Time()
	return keyindex.Result{
		Code: keyindex.Valid, Kind: hashsecret.KindAccessKeyPair, Namespace: pair.Namespace, Name: pair.Name,
		Subject: pair.Subject, KeyID: c.AccessKeyID, Access: string(kw.AccessReadWrite),
		Groups: intersect(c.Groups, pair.Groups), Scopes: intersect(c.Scopes, pair.Scopes), ExpiresAt: &exp,
		// The pair's limits as they are now, as for its identity.
		RateLimit: pair.RateLimit, AllowedCIDRs: pair.AllowedCIDRs,
	}, c.Audience
}

// intersect keeps the elements of a that b also has.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

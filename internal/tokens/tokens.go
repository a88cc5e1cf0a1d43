// Package tokens issues and validates the short-lived ES256 JWTs the key
// server hands out in exchange for an access key pair (AK/SK).
//
// Validation is deliberately narrow: one algorithm (ES256), keys only from
// the caller's key set by kid, never from the token itself, and every
// failure reported as one of the sentinel errors below, whose messages
// never quote the token.
package tokens

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxTokenBytes bounds the tokens Validate looks at. Ours are well under
// 1 KiB unless they carry many groups or scopes. The limit is checked
// before anything is parsed or allocated.
const MaxTokenBytes = 8 << 10

// maxHeaderBytes bounds the encoded protected header. Ours is 106 bytes; a
// large one can only carry certificates or keys we refuse anyway, and
// go-jose would parse them (x5c costs real work) before we can look.
const maxHeaderBytes = 1 << 10

// DefaultLeeway is the clock skew Validator tolerates when Leeway is zero.
const DefaultLeeway = 30 * time.Second

// Sentinel errors returned (wrapped) by Validate, and by Issue where they fit.
var (
	ErrMalformed       = errors.New("tokens: malformed token")
	ErrAlgorithm       = errors.New("tokens: signature algorithm not allowed")
	ErrUnknownKey      = errors.New("tokens: unknown signing key")
	ErrForbiddenHeader = errors.New("tokens: forbidden JOSE header")
	ErrSignature       = errors.New("tokens: invalid signature")
	ErrExpired         = errors.New("tokens: token expired")
	ErrNotYetValid     = errors.New("tokens: token not yet valid")
	ErrIssuer          = errors.New("tokens: wrong issuer")
	ErrAudience        = errors.New("tokens: wrong audience")
	ErrMissingClaim    = errors.New("tokens: required claim missing")
)

// Preallocated so that refusing oversized or misshapen input allocates nothing.
var (
	errTooLong       = fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenBytes)
	errNotThree      = fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	errHeaderTooLong = fmt.Errorf("%w: header longer than %d bytes", ErrMalformed, maxHeaderBytes)
)

// es256Only pins the algorithm; shared so Validate does not rebuild it.
var es256Only = []jose.SignatureAlgorithm{jose.ES256}

// forbiddenExtraHeaders are header parameters go-jose leaves in
// ExtraHeaders that would point a verifier at a key or certificate other
// than ours, or change how the signature input is built (crit, b64). Our
// issuer never sets them, so their presence means someone else wrote the
// header. jwk and x5c are parsed by go-jose into their own fields.
var forbiddenExtraHeaders = []jose.HeaderKey{"jku", "x5u", "x5t", "x5t#S256", "crit", "b64"}

// noRoots makes Header.Certificates fail fast without loading system roots;
// it is only called to learn whether an x5c header is present.
var noRoots = x509.NewCertPool()

// Claims is the token payload. Registered claims use go-jose's jwt types;
// the rest identify the access key pair the token was exchanged for.
type Claims struct {
	Issuer    string           `json:"iss,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Audience  jwt.Audience     `json:"aud,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	Expiry    *jwt.NumericDate `json:"exp,omitempty"`
	ID        string           `json:"jti,omitempty"`

	// AccessKeyID is the access key id (AK) that was exchanged.
	AccessKeyID string   `json:"akid,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	Scopes      []string `json:"scopes,omitempty"`
	// Namespace and Pair name the AccessKeyPair object.
	Namespace string `json:"ns,omitempty"`
	Pair      string `json:"pair,omitempty"`
}

// MarshalJSON always writes aud as an array: jwt.Audience collapses a
// single audience to a string, which some relying parties mishandle.
func (c Claims) MarshalJSON() ([]byte, error) {
	type plain Claims // no MarshalJSON method, so no recursion
	return json.Marshal(struct {
		plain
		Audience []string `json:"aud,omitempty"` // shadows plain.Audience
	}{plain(c), c.Audience})
}

// Issuer signs tokens. Key is called on every Issue so that key rotation
// takes effect without rebuilding the Issuer.
type Issuer struct {
	// Issuer is the iss claim, and the issuer URL in Discovery.
	Issuer string
	Key    func() (SigningKey, error)
}

// Issue signs c with the current key and returns the compact token and its
// expiry. It sets iss, iat = nbf = now, exp = now + lifetime and a random
// jti, overriding whatever c held. NumericDates have one-second precision,
// so the returned expiry is the exp claim, truncated to the second.
//
// c must carry sub, akid and at least one aud, and fit in MaxTokenBytes: a
// token without them could never pass Validate, so Issue refuses it (with
// ErrMissingClaim for a missing claim).
func (i Issuer) Issue(c Claims, now time.Time, lifetime time.Duration) (token string, expiresAt time.Time, err error) {
	switch {
	case lifetime <= 0:
		return "", time.Time{}, errors.New("tokens: token lifetime must be positive")
	case now.IsZero():
		return "", time.Time{}, errors.New("tokens: issue time is zero")
	case i.Issuer == "" || i.Key == nil:
		return "", time.Time{}, errors.New("tokens: issuer is not configured")
	case c.Subject == "":
		return "", time.Time{}, fmt.Errorf("%w: sub", ErrMissingClaim)
	case c.AccessKeyID == "":
		return "", time.Time{}, fmt.Errorf("%w: akid", ErrMissingClaim)
	case !hasAudience(c.Audience):
		return "", time.Time{}, fmt.Errorf("%w: aud", ErrMissingClaim)
	}

	key, err := i.Key()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: getting signing key: %w", err)
	}
	if key.ID == "" || key.Private == nil || !isP256(&key.Private.PublicKey) {
		return "", time.Time{}, errors.New("tokens: signing key is not a P-256 key with an id")
	}

	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, errors.New("tokens: generating token id failed")
	}
	c.Issuer = i.Issuer
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = c.IssuedAt
	c.Expiry = jwt.NewNumericDate(now.Add(lifetime))
	c.ID = base64.RawURLEncoding.EncodeToString(jti[:])

	payload, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, errors.New("tokens: encoding claims failed")
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key.Private, KeyID: key.ID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", time.Time{}, errors.New("tokens: creating signer failed")
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", time.Time{}, errors.New("tokens: signing failed")
	}
	token, err = jws.CompactSerialize()
	if err != nil {
		return "", time.Time{}, errors.New("tokens: serializing token failed")
	}
	// Validate would refuse it; better to fail here, where the cause is known.
	if len(token) > MaxTokenBytes {
		return "", time.Time{}, fmt.Errorf("tokens: token would exceed %d bytes; too many groups or scopes", MaxTokenBytes)
	}
	return token, c.Expiry.Time(), nil
}

// Validator checks tokens issued by an Issuer.
type Validator struct {
	// Issuer must equal the token's iss.
	Issuer string
	// Audiences are the accepted audiences; the token must name at least one.
	Audiences []string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Zero means
	// DefaultLeeway; a negative value means none.
	Leeway time.Duration
	// Key resolves a kid to a P-256 verification key. It is the only
	// source of keys: keys or key URLs inside the token are refused.
	Key func(kid string) (*ecdsa.PublicKey, bool)
	// Cache, when set, spares a token presented again its parsing and
	// signature verification (see VerifiedCache); the key lookup and the
	// claims checks still run on every call. It may be shared by
	// Validators with different Issuer, Audiences, Leeway or Key.
	Cache *VerifiedCache
}

// Validate verifies token at time now and returns its claims. Every error
// wraps exactly one of the sentinel errors (unless v itself lacks Issuer,
// Audiences or Key), and none quotes the token.
//
// With a Cache, the returned Claims may share its slices (aud, groups,
// scopes) with the cache: callers must not modify their elements.
func (v Validator) Validate(token string, now time.Time) (*Claims, error) {
	// Cheap shape checks first, so junk of any size costs no allocation.
	if len(token) > MaxTokenBytes {
		return nil, errTooLong
	}
	if strings.Count(token, ".") != 2 {
		return nil, errNotThree
	}
	if strings.IndexByte(token, '.') > maxHeaderBytes {
		return nil, errHeaderTooLong
	}
	if v.Issuer == "" || v.Key == nil || !hasAudience(v.Audiences) {
		return nil, errors.New("tokens: validator is not configured")
	}

	if v.Cache == nil {
		c, _, _, err := v.verify(token)
		if err != nil {
			return nil, err
		}
		if err := v.checkClaims(c, now); err != nil {
			return nil, err
		}
		return c, nil
	}

	// Hashed from a stack buffer: a conversion would allocate a copy of
	// every token (of those up to 1 KiB, which ours are unless they carry
	// many groups or scopes).
	var buf [1024]byte
	sum := sha256.Sum256(append(buf[:0], token...))
	if cached, ok := v.Cache.get(&sum, v.Key); ok {
		if err := v.checkClaims(cached, now); err != nil {
			return nil, err
		}
		c := *cached
		return &c, nil
	}
	c, kid, pub, err := v.verify(token)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(c, now); err != nil {
		return nil, err
	}
	v.Cache.put(&sum, c, kid, pub, now)
	out := *c
	return &out, nil
}

// verify is the part of Validate that depends on the token alone and the
// key its kid names: parsing, the header checks and the signature. It
// returns the claims unchecked, with the kid and the key that verified them.
func (v Validator) verify(token string) (*Claims, string, *ecdsa.PublicKey, error) {
	tok, err := jwt.ParseSigned(token, es256Only)
	if err != nil {
		// go-jose's messages may quote header values, so only the kind of
		// failure is kept.
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &algErr) {
			return nil, "", nil, ErrAlgorithm
		}
		return nil, "", nil, fmt.Errorf("%w: cannot parse", ErrMalformed)
	}
	if len(tok.Headers) != 1 {
		return nil, "", nil, fmt.Errorf("%w: want exactly one signature", ErrMalformed)
	}
	header := tok.Headers[0]
	if hasForbiddenHeader(header) {
		return nil, "", nil, ErrForbiddenHeader
	}
	if header.KeyID == "" {
		return nil, "", nil, fmt.Errorf("%w: no kid", ErrUnknownKey)
	}
	pub, ok := v.Key(header.KeyID)
	if !ok || !isP256(pub) {
		return nil, "", nil, ErrUnknownKey
	}

	var c Claims
	if err := tok.Claims(pub, &c); err != nil {
		switch {
		case errors.Is(err, jose.ErrCryptoFailure):
			return nil, "", nil, ErrSignature
		case errors.Is(err, jose.ErrUnsupportedCriticalHeader):
			return nil, "", nil, ErrForbiddenHeader
		default:
			// The signature held; the payload is not our claims JSON
			// (for example aud of the wrong type).
			return nil, "", nil, fmt.Errorf("%w: bad claims", ErrMalformed)
		}
	}
	return &c, header.KeyID, pub, nil
}

func (v Validator) checkClaims(c *Claims, now time.Time) error {
	leeway := v.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}

	if c.Issuer != v.Issuer {
		return ErrIssuer
	}
	if len(c.Audience) == 0 {
		return fmt.Errorf("%w: aud", ErrMissingClaim)
	}
	if !audienceAccepted(c.Audience, v.Audiences) {
		return ErrAudience
	}
	if c.Expiry == nil {
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	if !now.Before(c.Expiry.Time().Add(leeway)) {
		return ErrExpired
	}
	latest := now.Add(leeway)
	if c.NotBefore != nil && c.NotBefore.Time().After(latest) {
		return fmt.Errorf("%w: nbf", ErrNotYetValid)
	}
	if c.IssuedAt != nil && c.IssuedAt.Time().After(latest) {
		return fmt.Errorf("%w: iat", ErrNotYetValid)
	}
	if c.Subject == "" {
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	}
	if c.AccessKeyID == "" {
		return fmt.Errorf("%w: akid", ErrMissingClaim)
	}
	return nil
}

// hasForbiddenHeader reports whether the header names a key or certificate
// (embedded or remote) or an extension we do not implement. go-jose splits
// these across three places: JSONWebKey, the unexported x5c certificates
// (visible only through Certificates), and ExtraHeaders.
func hasForbiddenHeader(h jose.Header) bool {
	if h.JSONWebKey != nil {
		return true
	}
	// Certificates reports ErrMissingX5cHeader only when no x5c was parsed;
	// any other outcome, success included, means one was present. (An empty
	// x5c array reads as absent; it names no certificate, so that is fine.)
	if _, err := h.Certificates(x509.VerifyOptions{Roots: noRoots}); !errors.Is(err, jose.ErrMissingX5cHeader) {
		return true
	}
	for _, k := range forbiddenExtraHeaders {
		if _, ok := h.ExtraHeaders[k]; ok {
			return true
		}
	}
	return false
}

func hasAudience(aud []string) bool {
	for _, a := range aud {
		if a != "" {
			return true
		}
	}
	return false
}

// audienceAccepted reports whether the token names one of the accepted
// audiences. Empty strings never match, so a stray "" in configuration
// cannot accept tokens with an empty audience.
func audienceAccepted(tokenAud jwt.Audience, accepted []string) bool {
	for _, a := range accepted {
		if a != "" && tokenAud.Contains(a) {
			return true
		}
	}
	return false
}

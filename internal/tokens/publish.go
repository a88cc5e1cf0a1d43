package tokens

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// claimsSupported lists every claim Issue writes, for Discovery.
var claimsSupported = []string{
	"iss", "sub", "aud", "iat", "nbf", "exp", "jti",
	"akid", "groups", "scopes", "ns", "pair",
}

// JWKS returns the JSON Web Key Set (RFC 7517) publishing keys, each with
// use "sig" and alg "ES256" so that verifiers pin the algorithm as we do.
// Keys must be P-256 with distinct, non-empty ids: a verifier picks by kid,
// and a duplicate would make that choice ambiguous.
func JWKS(keys []PublicKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k.ID == "" || !isP256(k.Key) {
			return nil, errors.New("tokens: JWKS key is not a P-256 key with an id")
		}
		if seen[k.ID] {
			return nil, errors.New("tokens: duplicate key id in JWKS")
		}
		seen[k.ID] = true
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       k.Key,
			KeyID:     k.ID,
			Algorithm: string(jose.ES256),
			Use:       "sig",
		})
	}
	return json.Marshal(set)
}

// discovery is the subset of OpenID Provider Metadata (OpenID Connect
// Discovery 1.0, section 3) that verifiers need to find our keys.
type discovery struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
}

// Discovery returns minimal OpenID Provider metadata, served at
// issuer + "/.well-known/openid-configuration". Both arguments must be
// absolute URLs; the issuer may not carry a query or fragment (OIDC
// Discovery forbids them, and verifiers compare iss byte for byte).
func Discovery(issuer, jwksURI string) ([]byte, error) {
	if !absoluteURL(issuer) {
		return nil, errors.New("tokens: issuer is not an absolute URL")
	}
	if strings.ContainsAny(issuer, "?#") {
		return nil, errors.New("tokens: issuer must not have a query or fragment")
	}
	if !absoluteURL(jwksURI) {
		return nil, errors.New("tokens: JWKS URI is not an absolute URL")
	}
	return json.Marshal(discovery{
		Issuer:                           issuer,
		JWKSURI:                          jwksURI,
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{string(jose.ES256)},
		ClaimsSupported:                  claimsSupported,
	})
}

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

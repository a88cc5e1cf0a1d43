package tokens_test

import (
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keyward/keyward/internal/tokens"
)

// TestServiceOutsideTheCluster verifies an issued token the way a relying
// party elsewhere would: from the published Discovery and JWKS documents
// alone, with go-jose, and no code from this package.
func TestServiceOutsideTheCluster(t *testing.T) {
	const issuerURL = "https://keys.keyward.example"
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

	// Inside the cluster: a current key, a retired one still published, and
	// the two documents the key server serves.
	current, err := tokens.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	retired, err := tokens.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	jwksBytes, err := tokens.JWKS([]tokens.PublicKey{retired.Public(), current.Public()})
	if err != nil {
		t.Fatal(err)
	}
	discoveryBytes, err := tokens.Discovery(issuerURL, issuerURL+"/openid/v1/jwks")
	if err != nil {
		t.Fatal(err)
	}
	iss := tokens.Issuer{Issuer: issuerURL, Key: func() (tokens.SigningKey, error) { return current, nil }}
	token, _, err := iss.Issue(tokens.Claims{
		Subject:     "system:accesskeypair:team-a:ci",
		Audience:    []string{"https://api.example.com"},
		AccessKeyID: "AKKW0123456789ABCDEF",
		Groups:      []string{"developers"},
		Scopes:      []string{"read:artifacts"},
		Namespace:   "team-a",
		Pair:        "ci",
	}, now, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	// Outside: only the bytes and go-jose from here on.
	var discovery struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(discoveryBytes, &discovery); err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBytes, &set); err != nil {
		t.Fatal(err)
	}
	algs := make([]jose.SignatureAlgorithm, len(discovery.Algs))
	for i, a := range discovery.Algs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	parsed, err := jwt.ParseSigned(token, algs)
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid matches %d keys in the JWKS, want 1", len(keys))
	}
	key := keys[0]
	if key.Use != "sig" || key.Algorithm != parsed.Headers[0].Algorithm || !key.IsPublic() {
		t.Fatalf("JWKS key has use %q alg %q", key.Use, key.Algorithm)
	}

	var std jwt.Claims
	var custom struct {
		AccessKeyID string   `json:"akid"`
		Groups      []string `json:"groups"`
		Scopes      []string `json:"scopes"`
		Namespace   string   `json:"ns"`
		Pair        string   `json:"pair"`
	}
	if err := parsed.Claims(key, &std, &custom); err != nil {
		t.Fatalf("signature does not verify with the published key: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{
		Issuer:      discovery.Issuer,
		AnyAudience: jwt.Audience{"https://api.example.com"},
		Time:        now.Add(time.Minute),
	}, 0); err != nil {
		t.Fatal(err)
	}
	if std.Subject != "system:accesskeypair:team-a:ci" || custom.AccessKeyID != "AKKW0123456789ABCDEF" ||
		custom.Namespace != "team-a" || custom.Pair != "ci" || len(custom.Groups) != 1 || len(custom.Scopes) != 1 {
		t.Fatalf("claims = %+v %+v", std, custom)
	}

	// And the retired key, though published, does not verify it.
	retiredKey := set.Key(retired.ID)
	if len(retiredKey) != 1 || parsed.Claims(retiredKey[0], &std) == nil {
		t.Fatal("a token verified under the wrong published key")
	}
}

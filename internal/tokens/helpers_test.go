package tokens

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testKeyPEM is a fixed P-256 key (generated with openssl genpkey for these
// tests only) so that fuzz workers, which are separate processes, all
// verify against the same key the seed tokens were signed with.
const testKeyPEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgazqpjRlD04dol+va
OuJZf4yJYpO6hoVXU7E4OyMcTFKhRANCAASqi6SFeQQ98VxiLEuKZAeFxe0peiD+
iGMyizl8Y023LIWISsBbkXQvIypuECyNyj0D81S9Dz1fJ/GS3WO3ZMHW
-----END PRIVATE KEY-----
`

const (
	testIssuer   = "https://keys.keyward.example"
	testAudience = "https://api.example.com"
)

// testNow is a fixed instant so that table tests and fuzz seeds do not
// depend on the wall clock.
var testNow = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	key       SigningKey
	issuer    Issuer
	validator Validator
}

func testSigningKey(t testing.TB) SigningKey {
	t.Helper()
	block, _ := pem.Decode([]byte(testKeyPEM))
	raw, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id, err := Thumbprint(&raw.(*ecdsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParsePrivateKey(id, []byte(testKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	key := testSigningKey(t)
	return fixture{
		key: key,
		issuer: Issuer{
			Issuer: testIssuer,
			Key:    func() (SigningKey, error) { return key, nil },
		},
		validator: Validator{
			Issuer:    testIssuer,
			Audiences: []string{"https://other.example.com", testAudience},
			Key: func(kid string) (*ecdsa.PublicKey, bool) {
				if kid == key.ID {
					return &key.Private.PublicKey, true
				}
				return nil, false
			},
		},
	}
}

func sampleClaims() Claims {
	return Claims{
		Subject:     "system:accesskeypair:team-a:ci",
		Audience:    []string{testAudience},
		AccessKeyID: "AKKW0123456789ABCDEF",
		Groups:      []string{"developers", "ci"},
		Scopes:      []string{"read:artifacts", "write:artifacts"},
		Namespace:   "team-a",
		Pair:        "ci",
	}
}

func (f fixture) issue(t testing.TB, c Claims, now time.Time, lifetime time.Duration) string {
	t.Helper()
	tok, _, err := f.issuer.Issue(c, now, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claimsJSON returns the JSON of a valid claim set at testNow, edited by
// edit (which may delete or replace claims), for tokens Issue would refuse
// to write.
func claimsJSON(t testing.TB, edit func(m map[string]any)) []byte {
	t.Helper()
	m := map[string]any{
		"iss":  testIssuer,
		"sub":  "system:accesskeypair:team-a:ci",
		"aud":  []string{testAudience},
		"iat":  testNow.Unix(),
		"nbf":  testNow.Unix(),
		"exp":  testNow.Add(time.Hour).Unix(),
		"jti":  "dGVzdC10b2tlbi1pZA",
		"akid": "AKKW0123456789ABCDEF",
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signWith signs payload with go-jose using any key and algorithm, adding
// headers to the protected header: the attacker's toolkit for tokens whose
// signature is genuine but whose header or claims are not.
func signWith(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, embedJWK bool, headers map[jose.HeaderKey]any, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: embedJWK}).WithType("JWT")
	for k, v := range headers {
		opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// compact hand-assembles a compact JWS, for algorithms go-jose will not
// produce the way an attacker would ("none", HMAC keyed with a public key).
func compact(header string, payload []byte, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig)
}

func signingInput(tok string) []byte {
	i := strings.LastIndexByte(tok, '.')
	return []byte(tok[:i])
}

// assertNoEcho fails if err's message contains any sizeable piece of tok.
func assertNoEcho(t testing.TB, err error, tok string) {
	t.Helper()
	msg := err.Error()
	for part := range strings.SplitSeq(tok, ".") {
		if len(part) >= 8 && strings.Contains(msg, part) {
			t.Fatalf("error %q quotes the token", msg)
		}
	}
}

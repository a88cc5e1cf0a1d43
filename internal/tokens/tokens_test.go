package tokens

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestIssueValidateRoundTrip(t *testing.T) {
	f := newFixture(t)
	now := testNow.Add(250 * time.Millisecond) // sub-second: exp is truncated
	lifetime := 15 * time.Minute
	want := sampleClaims()
	want.Issuer = "ignored: Issue sets iss"
	want.ID = "ignored: Issue sets jti"

	tok, expiresAt, err := f.issuer.Issue(want, now, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	if !expiresAt.Equal(testNow.Add(lifetime)) {
		t.Fatalf("expiresAt = %v, want %v", expiresAt, testNow.Add(lifetime))
	}

	got, err := f.validator.Validate(tok, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]bool{
		"iss is the Issuer's":          got.Issuer == testIssuer,
		"sub is kept":                  got.Subject == want.Subject,
		"aud is kept":                  slices.Equal(got.Audience, want.Audience),
		"iat is now, in seconds":       got.IssuedAt != nil && got.IssuedAt.Time().Equal(testNow),
		"nbf is now, in seconds":       got.NotBefore != nil && got.NotBefore.Time().Equal(testNow),
		"exp is the returned expiry":   got.Expiry != nil && got.Expiry.Time().Equal(expiresAt),
		"jti is 128 bits of base64url": decodes(got.ID, 16),
		"akid is kept":                 got.AccessKeyID == want.AccessKeyID,
		"groups are kept":              slices.Equal(got.Groups, want.Groups),
		"scopes are kept":              slices.Equal(got.Scopes, want.Scopes),
		"ns is kept":                   got.Namespace == want.Namespace,
		"pair is kept":                 got.Pair == want.Pair,
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("%s: got %+v", name, got)
		}
	}

	// The header and raw payload, as any other verifier sees them.
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := parsed.Headers[0]
	if h.Algorithm != "ES256" || h.KeyID != f.key.ID || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header = alg %q kid %q typ %v; want ES256, %q, JWT", h.Algorithm, h.KeyID, h.ExtraHeaders["typ"], f.key.ID)
	}
	var raw map[string]json.RawMessage
	if err := parsed.Claims(&f.key.Private.PublicKey, &raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw["aud"], []byte("[")) {
		t.Errorf("a single aud was written as %s, want an array", raw["aud"])
	}

	again, _, err := f.issuer.Issue(want, now, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.validator.Validate(again, now)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == got.ID {
		t.Error("two tokens share a jti")
	}
}

func decodes(s string, n int) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == n
}

func TestIssueRefuses(t *testing.T) {
	f := newFixture(t)
	noKey := errors.New("no key")
	keyFunc := func(k SigningKey, err error) func() (SigningKey, error) {
		return func() (SigningKey, error) { return k, err }
	}
	type args struct {
		issuer   Issuer
		claims   Claims
		now      time.Time
		lifetime time.Duration
	}
	cases := map[string]struct {
		edit func(*args)
		want error // nil: any error
	}{
		"a zero lifetime":                     {edit: func(a *args) { a.lifetime = 0 }},
		"a negative lifetime":                 {edit: func(a *args) { a.lifetime = -time.Minute }},
		"a zero issue time":                   {edit: func(a *args) { a.now = time.Time{} }},
		"an issuer without a name":            {edit: func(a *args) { a.issuer.Issuer = "" }},
		"an issuer without a key source":      {edit: func(a *args) { a.issuer.Key = nil }},
		"a key source that fails":             {edit: func(a *args) { a.issuer.Key = keyFunc(SigningKey{}, noKey) }, want: noKey},
		"a key without an id":                 {edit: func(a *args) { a.issuer.Key = keyFunc(SigningKey{Private: f.key.Private}, nil) }},
		"a key without a private key":         {edit: func(a *args) { a.issuer.Key = keyFunc(SigningKey{ID: f.key.ID}, nil) }},
		"a P-384 key":                         {edit: func(a *args) { a.issuer.Key = keyFunc(SigningKey{ID: "x", Private: p384(t)}, nil) }},
		"claims without a subject":            {edit: func(a *args) { a.claims.Subject = "" }, want: ErrMissingClaim},
		"claims without an access key id":     {edit: func(a *args) { a.claims.AccessKeyID = "" }, want: ErrMissingClaim},
		"claims without an audience":          {edit: func(a *args) { a.claims.Audience = nil }, want: ErrMissingClaim},
		"claims whose only audience is empty": {edit: func(a *args) { a.claims.Audience = []string{""} }, want: ErrMissingClaim},
		"claims too large for MaxTokenBytes":  {edit: func(a *args) { a.claims.Groups = slices.Repeat([]string{"group-name"}, 1000) }},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := args{issuer: f.issuer, claims: sampleClaims(), now: testNow, lifetime: time.Hour}
			tc.edit(&a)
			tok, _, err := a.issuer.Issue(a.claims, a.now, a.lifetime)
			if err == nil || tok != "" {
				t.Fatalf("Issue succeeded: %q", tok)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func p384(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLeeway(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, sampleClaims(), testNow, time.Hour)
	exp := testNow.Add(time.Hour)
	cases := map[string]struct {
		leeway time.Duration
		now    time.Time
		want   error
	}{
		"a token is valid the second it is issued":           {now: testNow},
		"a slow clock sees a token up to 30s before its nbf": {now: testNow.Add(-30 * time.Second)},
		"a clock 31s slow is refused":                        {now: testNow.Add(-31 * time.Second), want: ErrNotYetValid},
		"a token is valid within 30s after exp":              {now: exp.Add(29 * time.Second)},
		"a token is expired 30s after exp":                   {now: exp.Add(30 * time.Second), want: ErrExpired},
		"a larger leeway stretches exp":                      {leeway: time.Minute, now: exp.Add(59 * time.Second)},
		"a negative leeway means none, before exp":           {leeway: -1, now: exp.Add(-time.Second)},
		"a negative leeway means none, at exp":               {leeway: -1, now: exp, want: ErrExpired},
		"a negative leeway means none, before nbf":           {leeway: -1, now: testNow.Add(-time.Second), want: ErrNotYetValid},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v := f.validator
			v.Leeway = tc.leeway
			c, err := v.Validate(tok, tc.now)
			if tc.want == nil {
				if err != nil || c == nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || c != nil {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestValidatorRefusesWithoutConfiguration(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, sampleClaims(), testNow, time.Hour)
	cases := map[string]func(*Validator){
		"no issuer":                  func(v *Validator) { v.Issuer = "" },
		"no audiences":               func(v *Validator) { v.Audiences = nil },
		"only an empty audience":     func(v *Validator) { v.Audiences = []string{""} },
		"no key source":              func(v *Validator) { v.Key = nil },
		"a key source with no match": func(v *Validator) { v.Key = func(string) (*ecdsa.PublicKey, bool) { return nil, false } },
		"a key source returning nil": func(v *Validator) { v.Key = func(string) (*ecdsa.PublicKey, bool) { return nil, true } },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			v := f.validator
			edit(&v)
			if c, err := v.Validate(tok, testNow); err == nil || c != nil {
				t.Fatal("a misconfigured validator accepted a token")
			}
		})
	}
}

func TestSigningKeyRoundTrip(t *testing.T) {
	k, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: &k.Private.PublicKey}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != base64.RawURLEncoding.EncodeToString(sum) || len(k.ID) != 43 {
		t.Fatalf("ID %q is not the RFC 7638 thumbprint", k.ID)
	}
	p, err := MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(p, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("not PKCS#8 PEM:\n%s", p)
	}
	back, err := ParsePrivateKey(k.ID, p)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != k.ID || !back.Private.Equal(k.Private) {
		t.Fatal("the key changed in the round trip")
	}
	if pub := k.Public(); pub.ID != k.ID || !pub.Key.Equal(&k.Private.PublicKey) {
		t.Fatal("Public does not match the private key")
	}
}

func TestParsePrivateKeyRefuses(t *testing.T) {
	good := testSigningKey(t)
	pemOf := func(typ string, der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	sec1, err := x509.MarshalECPrivateKey(good.Private)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.MarshalPKCS8PrivateKey(p384(t))
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		id  string
		pem []byte
	}{
		"more than 16 KiB":                 {good.ID, append([]byte(testKeyPEM), bytes.Repeat([]byte(" "), 16<<10)...)},
		"no PEM at all":                    {good.ID, []byte("MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg")},
		"a SEC1 EC PRIVATE KEY block":      {good.ID, pemOf("EC PRIVATE KEY", sec1)},
		"a PRIVATE KEY block holding SEC1": {good.ID, pemOf("PRIVATE KEY", sec1)},
		"a P-384 key":                      {good.ID, pemOf("PRIVATE KEY", p384DER)},
		"an id that is another key's":      {other.ID, []byte(testKeyPEM)},
		"an empty id":                      {"", []byte(testKeyPEM)},
		"a second block after the key":     {good.ID, append([]byte(testKeyPEM), testKeyPEM...)},
		"an encrypted-looking PEM header":  {good.ID, []byte(strings.Replace(testKeyPEM, "KEY-----\n", "KEY-----\nProc-Type: 4,ENCRYPTED\n\n", 1))},
		"nothing":                          {good.ID, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePrivateKey(tc.id, tc.pem)
			if err == nil {
				t.Fatal("accepted")
			}
			for line := range strings.Lines(string(tc.pem)) {
				if line = strings.TrimSpace(line); len(line) >= 8 && strings.Contains(err.Error(), line) {
					t.Fatalf("error %q echoes the key", err)
				}
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	f := newFixture(t)
	other, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := JWKS([]PublicKey{f.key.Public(), other.Public()})
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("%d keys, want 2", len(set.Keys))
	}
	for _, k := range set.Keys {
		if k["kty"] != "EC" || k["crv"] != "P-256" || k["use"] != "sig" || k["alg"] != "ES256" || k["kid"] == "" {
			t.Errorf("key %v lacks kty/crv/use/alg/kid", k)
		}
		if _, ok := k["d"]; ok {
			t.Error("the JWKS carries private key material")
		}
	}

	if b, err := JWKS(nil); err != nil || string(b) != `{"keys":[]}` {
		t.Errorf("JWKS(nil) = %s, %v; want an empty set", b, err)
	}
	refused := map[string][]PublicKey{
		"a key without an id": {{Key: &f.key.Private.PublicKey}},
		"a nil key":           {{ID: "x"}},
		"a P-384 key":         {{ID: "x", Key: &p384(t).PublicKey}},
		"two keys, one kid":   {f.key.Public(), {ID: f.key.ID, Key: &other.Private.PublicKey}},
	}
	for name, keys := range refused {
		if _, err := JWKS(keys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDiscovery(t *testing.T) {
	b, err := Discovery(testIssuer, testIssuer+"/openid/v1/jwks")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                testIssuer,
		"jwks_uri":                              testIssuer + "/openid/v1/jwks",
		"response_types_supported":              []any{"id_token"},
		"subject_types_supported":               []any{"public"},
		"id_token_signing_alg_values_supported": []any{"ES256"},
	}
	for k, v := range want {
		if gb, _ := json.Marshal(got[k]); string(gb) != mustJSON(t, v) {
			t.Errorf("%s = %s, want %s", k, gb, mustJSON(t, v))
		}
	}
	claims, _ := got["claims_supported"].([]any)
	for _, c := range []string{"iss", "sub", "aud", "exp", "akid", "groups", "scopes", "ns", "pair"} {
		if !slices.Contains(claims, any(c)) {
			t.Errorf("claims_supported lacks %q", c)
		}
	}

	refused := map[string][2]string{
		"an empty issuer":            {"", testIssuer + "/jwks"},
		"a relative issuer":          {"keys.keyward.example", testIssuer + "/jwks"},
		"an issuer with a query":     {testIssuer + "?a=b", testIssuer + "/jwks"},
		"an issuer with a fragment":  {testIssuer + "#x", testIssuer + "/jwks"},
		"an empty JWKS URI":          {testIssuer, ""},
		"a JWKS URI without a host":  {testIssuer, "/jwks"},
		"a JWKS URI that is not web": {testIssuer, "file:///etc/jwks"},
	}
	for name, args := range refused {
		if _, err := Discovery(args[0], args[1]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

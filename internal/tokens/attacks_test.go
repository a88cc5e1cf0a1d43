package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type attack struct {
	token string
	want  error
}

// attacks builds known JWT attacks against f's validator at testNow. Where
// an attack needs a genuine signature to reach the check it targets, the
// token is signed with our own key: only that check can stop it.
func attacks(t testing.TB, f fixture) map[string]attack {
	t.Helper()
	kid := f.key.ID
	pub := &f.key.Private.PublicKey
	good := claimsJSON(t, nil)
	ours := func(headers map[jose.HeaderKey]any, payload []byte) string {
		return signWith(t, jose.ES256, f.key.Private, kid, false, headers, payload)
	}
	oursClaims := func(edit func(m map[string]any)) string {
		return ours(nil, claimsJSON(t, edit))
	}

	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	// Algorithm confusion: a verifier that feeds "the key" to whatever alg
	// the header names would HMAC with our public key, which anyone has.
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkPub, err := jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: "ES256", Use: "sig"}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	hs256 := func(secret []byte) string {
		unsigned := compact(`{"alg":"HS256","typ":"JWT","kid":"`+kid+`"}`, good, nil)
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(strings.TrimSuffix(unsigned, ".")))
		return unsigned + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	none := func(alg string) string {
		return compact(`{"alg":"`+alg+`","typ":"JWT","kid":"`+kid+`"}`, good, nil)
	}

	// A valid token from an hour ago, with its payload rewritten.
	old := f.issue(t, sampleClaims(), testNow.Add(-2*time.Hour), time.Hour)
	parts := strings.Split(old, ".")
	var oldClaims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &oldClaims); err != nil {
		t.Fatal(err)
	}
	oldClaims["sub"] = "system:admin"
	tamperedPayload, _ := json.Marshal(oldClaims)
	expiredTampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedPayload) + "." + parts[2]

	tokA := f.issue(t, sampleClaims(), testNow, time.Hour)
	tokB := f.issue(t, sampleClaims(), testNow, time.Hour)
	swapped := tokA[:strings.LastIndexByte(tokA, '.')] + tokB[strings.LastIndexByte(tokB, '.'):]

	// A signature in ASN.1 DER, as ecdsa.SignASN1 makes it, instead of JWS's
	// fixed-width r||s: genuine, but not in the form RFC 7518 requires.
	unsigned := compact(`{"alg":"ES256","typ":"JWT","kid":"`+kid+`"}`, good, nil)
	digest := sha256.Sum256([]byte(strings.TrimSuffix(unsigned, ".")))
	asn1Sig, err := ecdsa.SignASN1(rand.Reader, f.key.Private, digest[:])
	if err != nil {
		t.Fatal(err)
	}

	sig, _ := base64.RawURLEncoding.DecodeString(tokA[strings.LastIndexByte(tokA, '.')+1:])
	stdSig := tokA[:strings.LastIndexByte(tokA, '.')+1] + base64.StdEncoding.EncodeToString(sig)

	cert := selfSignedCert(t, attacker)
	huge := claimsJSON(t, func(m map[string]any) { m["groups"] = strings.Split(strings.Repeat("group-name,", 1000), ",") })
	dupSub := []byte(strings.Replace(string(good), "{", `{"sub":"system:admin",`, 1))

	return map[string]attack{
		// Algorithms.
		`alg "none" with no signature`:                   {none("none"), ErrAlgorithm},
		`alg "None" with no signature`:                   {none("None"), ErrAlgorithm},
		"HS256 keyed with our public key as PEM":         {hs256(pemPub), ErrAlgorithm},
		"HS256 keyed with our public key as DER":         {hs256(der), ErrAlgorithm},
		"HS256 keyed with our public key as JWK JSON":    {hs256(jwkPub), ErrAlgorithm},
		"ES384 signed by a P-384 key under our kid":      {signWith(t, jose.ES384, p384(t), kid, false, nil, good), ErrAlgorithm},
		"RS256 signed by an RSA key under our kid":       {signWith(t, jose.RS256, rsaKey, kid, false, nil, good), ErrAlgorithm},
		"a header naming alg twice, ES256 then none":     {compact(`{"alg":"ES256","alg":"none","kid":"`+kid+`"}`, good, nil), ErrMalformed},
		"a header with no alg":                           {compact(`{"kid":"`+kid+`"}`, good, make([]byte, 64)), ErrAlgorithm},
		"a header that is not JSON, with a real payload": {compact(`not json`, good, make([]byte, 64)), ErrMalformed},

		// Keys.
		"an unknown kid, signed by our key":                   {signWith(t, jose.ES256, f.key.Private, "retired-key", false, nil, good), ErrUnknownKey},
		"no kid at all, signed by our key":                    {signWith(t, jose.ES256, f.key.Private, "", false, nil, good), ErrUnknownKey},
		"a valid signature by another P-256 key, our kid":     {signWith(t, jose.ES256, attacker, kid, false, nil, good), ErrSignature},
		"an embedded jwk of the attacker's key, signed by it": {signWith(t, jose.ES256, attacker, "", true, map[jose.HeaderKey]any{"kid": kid}, good), ErrForbiddenHeader},
		"an embedded jwk of our own key, signed by us":        {signWith(t, jose.ES256, f.key.Private, "", true, map[jose.HeaderKey]any{"kid": kid}, good), ErrForbiddenHeader},
		"a remote jku, signed by our key":                     {ours(map[jose.HeaderKey]any{"jku": "https://attacker.example/jwks.json"}, good), ErrForbiddenHeader},
		"a remote x5u, signed by our key":                     {ours(map[jose.HeaderKey]any{"x5u": "https://attacker.example/cert.pem"}, good), ErrForbiddenHeader},
		"an x5c chain of the attacker's, signed by our key":   {ours(map[jose.HeaderKey]any{"x5c": []string{base64.StdEncoding.EncodeToString(cert)}}, good), ErrForbiddenHeader},
		"an x5c chain of 8 certificates, signed by our key":   {ours(map[jose.HeaderKey]any{"x5c": slices.Repeat([]string{base64.StdEncoding.EncodeToString(cert)}, 8)}, good), ErrMalformed},
		"an x5t thumbprint, signed by our key":                {ours(map[jose.HeaderKey]any{"x5t": "AAAAAAAAAAAAAAAAAAAAAAAAAAA"}, good), ErrForbiddenHeader},
		"an x5t#S256 thumbprint, signed by our key":           {ours(map[jose.HeaderKey]any{"x5t#S256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, good), ErrForbiddenHeader},
		"a crit extension, signed by our key":                 {ours(map[jose.HeaderKey]any{"crit": []string{"exp"}, "exp": 1}, good), ErrForbiddenHeader},

		// Signatures.
		"an expired token whose payload was also tampered with": {expiredTampered, ErrSignature},
		"signature bytes swapped in from another of our tokens": {swapped, ErrSignature},
		"an ASN.1 DER signature instead of r||s":                {unsigned + base64.RawURLEncoding.EncodeToString(asn1Sig), ErrSignature},
		"an all-zero signature (CVE-2022-21449)":                {unsigned + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), ErrSignature},
		"an empty signature":                                    {unsigned, ErrSignature},

		// Claims, all genuinely signed by our key.
		"no exp":                              {oursClaims(func(m map[string]any) { delete(m, "exp") }), ErrMissingClaim},
		"exp as a string":                     {oursClaims(func(m map[string]any) { m["exp"] = "4102444800" }), ErrMalformed},
		"exp past any int64 time":             {oursClaims(func(m map[string]any) { m["exp"] = 1e300 }), ErrMalformed},
		"expired beyond the leeway":           {oursClaims(func(m map[string]any) { m["exp"] = testNow.Add(-31 * time.Second).Unix() }), ErrExpired},
		"aud as a number":                     {oursClaims(func(m map[string]any) { m["aud"] = 42 }), ErrMalformed},
		"aud as an object":                    {oursClaims(func(m map[string]any) { m["aud"] = map[string]any{"aud": testAudience} }), ErrMalformed},
		"aud as an array holding a number":    {oursClaims(func(m map[string]any) { m["aud"] = []any{testAudience, 1} }), ErrMalformed},
		"no aud":                              {oursClaims(func(m map[string]any) { delete(m, "aud") }), ErrMissingClaim},
		"a wrong audience":                    {oursClaims(func(m map[string]any) { m["aud"] = []string{"https://attacker.example"} }), ErrAudience},
		"an audience differing only in case":  {oursClaims(func(m map[string]any) { m["aud"] = strings.ToUpper(testAudience) }), ErrAudience},
		"a wrong issuer":                      {oursClaims(func(m map[string]any) { m["iss"] = "https://attacker.example" }), ErrIssuer},
		"no issuer":                           {oursClaims(func(m map[string]any) { delete(m, "iss") }), ErrIssuer},
		"nbf in the future beyond the leeway": {oursClaims(func(m map[string]any) { m["nbf"] = testNow.Add(2 * time.Minute).Unix() }), ErrNotYetValid},
		"iat in the future beyond the leeway": {oursClaims(func(m map[string]any) { m["iat"] = testNow.Add(2 * time.Minute).Unix() }), ErrNotYetValid},
		"no sub":                              {oursClaims(func(m map[string]any) { delete(m, "sub") }), ErrMissingClaim},
		"no akid":                             {oursClaims(func(m map[string]any) { delete(m, "akid") }), ErrMissingClaim},
		"a duplicate sub claim":               {ours(nil, dupSub), ErrMalformed},
		"a payload that is a JSON array":      {ours(nil, []byte(`[]`)), ErrMalformed},
		"a payload that is not JSON":          {ours(nil, []byte(`sub=admin`)), ErrMalformed},
		"a genuine token over MaxTokenBytes":  {ours(nil, huge), ErrMalformed},
		"a claim key differing only in case":  {oursClaims(func(m map[string]any) { m["AKID"] = m["akid"]; delete(m, "akid") }), ErrMissingClaim},
		"an issuer with a trailing slash":     {oursClaims(func(m map[string]any) { m["iss"] = testIssuer + "/" }), ErrIssuer},

		// Shapes.
		"a megabyte of dots":                    {strings.Repeat(".", 1<<20), ErrMalformed},
		"a 5-part JWE-looking token":            {"eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn", ErrMalformed},
		"the empty string":                      {"", ErrMalformed},
		"non-base64 segments":                   {"!!!!.@@@@.####", ErrMalformed},
		"padded base64 segments":                {strings.Replace(tokA, ".", "=.", 1), ErrMalformed},
		"a signature in padded standard base64": {stdSig, ErrMalformed},
		"two parts":                             {tokA[:strings.LastIndexByte(tokA, '.')], ErrMalformed},
		"a valid token with a leading space":    {" " + tokA, ErrMalformed},
		"JWS JSON serialization":                {`{"payload":"e30","protected":"eyJhbGciOiJFUzI1NiJ9","signature":""}`, ErrMalformed},
	}
}

func selfSignedCert(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestValidateRefusesAttacks(t *testing.T) {
	f := newFixture(t)
	// Controls: tokens built with the same tools but no attack pass, so each
	// refusal below is due to its attack and not to the tooling.
	controls := map[string][]byte{
		"unedited claims":                      claimsJSON(t, nil),
		"an audience given as a single string": claimsJSON(t, func(m map[string]any) { m["aud"] = testAudience }),
		"an exp one second ago, within leeway": claimsJSON(t, func(m map[string]any) { m["exp"] = testNow.Add(-time.Second).Unix() }),
		"no nbf and no iat":                    claimsJSON(t, func(m map[string]any) { delete(m, "nbf"); delete(m, "iat") }),
	}
	for name, payload := range controls {
		tok := signWith(t, jose.ES256, f.key.Private, f.key.ID, false, nil, payload)
		if _, err := f.validator.Validate(tok, testNow); err != nil {
			t.Fatalf("control %q was refused: %v", name, err)
		}
	}

	for name, a := range attacks(t, f) {
		t.Run(name, func(t *testing.T) {
			c, err := f.validator.Validate(a.token, testNow)
			if !errors.Is(err, a.want) {
				t.Fatalf("err = %v, want %v", err, a.want)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			assertNoEcho(t, err, a.token)
		})
	}
}

// TestValidateAllocationBound shows the size and shape checks come before
// any parsing: oversized junk costs no allocation at all.
func TestValidateAllocationBound(t *testing.T) {
	f := newFixture(t)
	junk := make([]byte, 1<<20)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"a megabyte of dots":            strings.Repeat(".", 1<<20),
		"a mebibyte of random junk":     string(junk),
		"a mebibyte of base64 and dots": strings.Repeat("eyJhbGciOiJFUzI1NiJ9.", 1<<20/21),
		"one byte over MaxTokenBytes":   strings.Repeat("a", MaxTokenBytes-1) + "..",
		"a 2 KiB header":                strings.Repeat("e", 2<<10) + ".e30.sig",
		"a short token with four dots":  "a.b.c.d.e",
		"a short token with no dots":    "abc",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			var err error
			allocs := testing.AllocsPerRun(100, func() { _, err = f.validator.Validate(tok, testNow) })
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if allocs != 0 {
				t.Fatalf("Validate allocated %v times on junk", allocs)
			}
		})
	}
}

package tokens

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var sentinels = []error{
	ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrForbiddenHeader, ErrSignature,
	ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrMissingClaim,
}

// FuzzValidate checks that Validate never panics, fails only with a
// sentinel, and accepts only tokens that go-jose, given our public key and
// nothing else, also verifies: no mutation of a token may forge one. (A
// mutant can still pass by being the same token in another spelling, such
// as unused low bits in the last base64 character; that is why acceptance
// is checked by re-verification, not by equality with the seed.)
func FuzzValidate(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.issue(f, sampleClaims(), testNow, time.Hour))
	f.Add(fx.issue(f, Claims{Subject: "s", AccessKeyID: "a", Audience: []string{testAudience}}, testNow, time.Minute))
	for _, a := range attacks(f, fx) {
		// Huge seeds only slow the mutator; the length check is tested elsewhere.
		if len(a.token) <= 2*MaxTokenBytes {
			f.Add(a.token)
		}
	}
	pub := &fx.key.Private.PublicKey

	f.Fuzz(func(t *testing.T, tok string) {
		c, err := fx.validator.Validate(tok, testNow)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			if !isSentinel(err) {
				t.Fatalf("error %q wraps no sentinel", err)
			}
			// Messages are short fixed strings; a long one would be quoting input.
			if len(err.Error()) > 80 {
				t.Fatalf("error message is %d bytes long", len(err.Error()))
			}
			return
		}
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("accepted a token go-jose cannot parse: %v", err)
		}
		if _, err := jws.Verify(pub); err != nil {
			t.Fatalf("accepted a token our key did not sign: %v", err)
		}
		if c == nil || c.Issuer != testIssuer || c.Subject == "" || c.AccessKeyID == "" || c.Expiry == nil {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func BenchmarkIssue(b *testing.B) {
	f := newFixture(b)
	c := sampleClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.issuer.Issue(c, testNow, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	f := newFixture(b)
	tok := f.issue(b, sampleClaims(), testNow, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.validator.Validate(tok, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawES256Sign is the floor for BenchmarkIssue: hashing and
// signing a token's signing input, with nothing else.
func BenchmarkRawES256Sign(b *testing.B) {
	f := newFixture(b)
	input := signingInput(f.issue(b, sampleClaims(), testNow, time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		digest := sha256.Sum256(input)
		if _, err := ecdsa.SignASN1(rand.Reader, f.key.Private, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

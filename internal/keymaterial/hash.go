package keymaterial

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// tagSHA256 names the algorithm in stored hashes so it can be changed later
// without ambiguity.
const tagSHA256 = "sha256"

// Hash returns the tagged hash "sha256:<lowercase hex>" of secret.
//
// A fast unsalted hash is enough because secrets are high-entropy (190 bits
// for generated keys, at least ~128 estimated bits for imported ones, see
// CheckImportStrength); a slow KDF only helps against guessable passwords.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	// Built in place: one allocation (the key server hashes every key
	// presented to it).
	var b strings.Builder
	b.Grow(len(tagSHA256) + 1 + hex.EncodedLen(len(sum)))
	b.WriteString(tagSHA256)
	b.WriteByte(':')
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	b.Write(hx[:])
	return b.String()
}

// Verify reports whether secret hashes to tagged. The comparison is constant
// time; an unknown tag or malformed digest yields false.
func Verify(tagged, secret string) bool {
	tag, digest, ok := strings.Cut(tagged, ":")
	if !ok || tag != tagSHA256 || len(digest) != 2*sha256.Size {
		return false
	}
	want, err := hex.DecodeString(digest)
	if err != nil {
		return false
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// EqualHashes reports whether two tagged hashes are the same, in time that
// depends on their lengths only (which are public: one per algorithm). It
// never allocates.
func EqualHashes(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var diff byte
	for i := 0; i < len(a); i++ {
		diff |= a[i] ^ b[i]
	}
	return subtle.ConstantTimeByteEq(diff, 0) == 1
}

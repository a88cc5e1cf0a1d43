package keymaterial

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
)

const (
	minImportLen      = 32
	maxImportLen      = 512
	minImportDistinct = 10
	minImportBits     = 128
)

// Errors returned by CheckImportStrength. Their messages never quote the key.
var (
	ErrImportTooShort   = errors.New("keymaterial: imported key is shorter than 32 characters")
	ErrImportTooLong    = errors.New("keymaterial: imported key is longer than 512 characters")
	ErrImportCharset    = errors.New("keymaterial: imported key may only contain printable ASCII characters, without spaces or control characters")
	ErrImportLowVariety = errors.New("keymaterial: imported key uses fewer than 10 different characters")
	ErrImportLowEntropy = errors.New("keymaterial: imported key is too predictable; make it longer or mix letter cases, digits and symbols")
)

// CheckImportStrength refuses user-supplied keys that are too weak to be
// stored as a plain SHA-256 hash (see Hash). It is a heuristic for obviously
// weak keys, not proof of randomness:
//
//   - length between 32 and 512 bytes;
//   - printable ASCII only (0x21-0x7E): keys travel in HTTP headers, where
//     whitespace, control and non-ASCII bytes are mangled or smuggle data;
//   - at least 10 distinct characters;
//   - estimated entropy len*log2(pool) >= 128 bits, where pool is the summed
//     size of the character classes present (lowercase 26, uppercase 26,
//     digits 10, symbols 32). E.g. 32 hex chars pass (165), 32 digits do not
//     (106) but 39 do.
func CheckImportStrength(s string) error {
	switch {
	case len(s) > maxImportLen: // first, so the scan below is bounded
		return ErrImportTooLong
	case len(s) < minImportLen:
		return ErrImportTooShort
	}
	var seen [128]bool
	var lower, upper, digit, symbol bool
	distinct := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return ErrImportCharset
		}
		if !seen[c] {
			seen[c] = true
			distinct++
		}
		switch {
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case '0' <= c && c <= '9':
			digit = true
		default:
			symbol = true
		}
	}
	if distinct < minImportDistinct {
		return ErrImportLowVariety
	}
	pool := 0
	for _, c := range []struct {
		present bool
		size    int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {symbol, 32}} {
		if c.present {
			pool += c.size
		}
	}
	if float64(len(s))*math.Log2(float64(pool)) < minImportBits {
		return ErrImportLowEntropy
	}
	return nil
}

// importIDDomain separates this use of SHA-256 from Hash, so the public ID
// is not a truncation of the stored hash.
const importIDDomain = "keyward-import-id:"

// ImportedKeyID derives a deterministic 12-character base62 ID from a whole
// imported key, so the key server can look it up like a generated key's ID
// without indexing by secret. Changing this derivation orphans stored
// imported keys. The stored hash of an imported key is Hash(s).
func ImportedKeyID(s string) string {
	sum := sha256.Sum256([]byte(importIDDomain + s))
	// Two 6-digit halves, each a uint64 reduced mod 62^6 (bias ~2^-28):
	// about 71 bits in total.
	const pow6 = 62 * 62 * 62 * 62 * 62 * 62
	var id [idLen]byte
	putBase62(id[:6], binary.BigEndian.Uint64(sum[0:8])%pow6)
	putBase62(id[6:], binary.BigEndian.Uint64(sum[8:16])%pow6)
	return string(id[:])
}

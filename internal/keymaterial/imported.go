package keymaterial

import (
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

// ImportRules states what CheckImportStrength requires. A refused import
// is reported with the rules, not with the one the key broke: the report is
// public to whoever reads the APIKey, and must describe no key (issue 12,
// attack 3).
const ImportRules = "an imported key must be at least 32 and at most 512 printable ASCII characters, " +
	"without spaces, with at least 10 different characters, and hard enough to guess " +
	"(about 128 bits: mix letter cases, digits and symbols, or make it longer)"

// ImportedHash returns what is stored for an imported key: its hash, and
// whether the key is in Keyward's format. A Keyward-format key is stored by
// the hash of its secret part, as a generated key is, so that the key server
// hashes what is presented once, whichever way it was issued; any other key
// by the hash of the whole key. Nothing else is derived from it: an
// imported key's public id is random (keymaterial.GenerateID).
func ImportedHash(s string) (hash string, keywardFormat bool) {
	if k, err := Parse(s); err == nil {
		return k.SecretHash(), true
	}
	return Hash(s), false
}

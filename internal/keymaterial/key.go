// Package keymaterial defines the Keyward API key format and the hashing
// shared by the controllers and the key server.
//
// A key looks like <prefix>_<keyID>_<secret><checksum>:
//
//	kw_3hT9aQx0LmZb_Qm4v...(32 base62)...Xy01aB
//
// The key ID is the public lookup handle; only a hash of the secret is ever
// stored. The trailing CRC32 checksum lets Parse (and secret scanners) reject
// typos and random strings without touching storage.
package keymaterial

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

const (
	maxPrefixLen = 16
	idLen        = 12
	secretLen    = 32
	checksumLen  = 6 // 62^6 > 2^32, so any CRC32 fits.

	// MaxKeyLen is the length of the longest well-formed key. Callers can use
	// it to bound reads (e.g. of an HTTP header) before calling Parse.
	MaxKeyLen = maxPrefixLen + 1 + idLen + 1 + secretLen + checksumLen
)

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

var (
	// ErrInvalidFormat means the input does not have the structure of a key.
	ErrInvalidFormat = errors.New("keymaterial: invalid key format")
	// ErrChecksum means the input is structured like a key but its checksum
	// does not match, i.e. it was mistyped, truncated or made up.
	ErrChecksum = errors.New("keymaterial: key checksum mismatch")
	// ErrInvalidPrefix is returned by Generate for a prefix that does not
	// match [a-z0-9]{1,16}.
	ErrInvalidPrefix = errors.New("keymaterial: prefix must be 1 to 16 lowercase letters or digits")
)

// Pre-built so Parse never allocates on failure and messages can never echo
// the input.
var (
	errTooLong  = fmt.Errorf("%w: too long", ErrInvalidFormat)
	errPrefix   = fmt.Errorf("%w: prefix must be 1 to 16 lowercase letters or digits", ErrInvalidFormat)
	errLayout   = fmt.Errorf("%w: wrong length or separator", ErrInvalidFormat)
	errAlphabet = fmt.Errorf("%w: key ID and secret must be base62", ErrInvalidFormat)
)

// Key is a parsed or generated API key. Printing it with fmt never reveals
// the secret; use String for the plaintext.
//
// Keys are not comparable with ==; use Equal.
type Key struct {
	// Forbids ==, which would compare secret pointers rather than secrets.
	_ [0]func()

	Prefix string
	ID     string
	// A pointer because fmt prints pointers as addresses when it reflects
	// into a Key held in an unexported field (where Format is not called).
	secret *string
}

// Generate returns a new random key with the given prefix.
func Generate(prefix string) (Key, error) {
	if !ValidPrefix(prefix) {
		return Key{}, ErrInvalidPrefix
	}
	id, err := randomString(idLen, base62Alphabet)
	if err != nil {
		return Key{}, err
	}
	secret, err := randomString(secretLen, base62Alphabet)
	if err != nil {
		return Key{}, err
	}
	return Key{Prefix: prefix, ID: id, secret: &secret}, nil
}

// GenerateID returns 12 random base62 characters, the format of key IDs.
func GenerateID() (string, error) {
	return randomString(idLen, base62Alphabet)
}

// Parse strictly parses a key. Errors match ErrInvalidFormat or ErrChecksum
// with errors.Is and never contain any part of the input. Parse does no work
// proportional to the input beyond MaxKeyLen and does not allocate on failure.
func Parse(s string) (Key, error) {
	if _, _, err := ParseParts(s); err != nil {
		return Key{}, err
	}
	// Copy so a Key never pins the caller's buffer (e.g. a request).
	s = strings.Clone(s)
	prefixLen := len(s) - (1 + idLen + 1 + secretLen + checksumLen)
	secretStart := prefixLen + 1 + idLen + 1
	secret := s[secretStart : secretStart+secretLen]
	return Key{Prefix: s[:prefixLen], ID: s[prefixLen+1 : prefixLen+1+idLen], secret: &secret}, nil
}

// ParseParts checks s as Parse does and returns its key id and secret part
// without copying them: they are views into s, for a caller that uses them
// at once and keeps neither (the key server's lookup, on every request,
// where Parse's copies would be two allocations per request). Like Parse,
// it does not allocate and its errors never contain the input.
func ParseParts(s string) (id, secret string, err error) {
	if len(s) > MaxKeyLen {
		return "", "", errTooLong
	}
	prefix, rest, ok := strings.Cut(s, "_")
	if !ok || !ValidPrefix(prefix) {
		return "", "", errPrefix
	}
	if len(rest) != idLen+1+secretLen+checksumLen || rest[idLen] != '_' {
		return "", "", errLayout
	}
	if !isBase62(rest[:idLen]) || !isBase62(rest[idLen+1:]) {
		return "", "", errAlphabet
	}
	body, sum := s[:len(s)-checksumLen], s[len(s)-checksumLen:]
	if want := checksum(body); string(want[:]) != sum {
		return "", "", ErrChecksum
	}
	return rest[:idLen], rest[idLen+1 : idLen+1+secretLen], nil
}

// ValidPrefix reports whether p matches [a-z0-9]{1,16}.
func ValidPrefix(p string) bool {
	if len(p) == 0 || len(p) > maxPrefixLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// String returns the full plaintext key. It returns "" for the zero Key.
func (k Key) String() string {
	if k.secret == nil {
		return ""
	}
	body := k.Prefix + "_" + k.ID + "_" + *k.secret
	sum := checksum(body)
	return body + string(sum[:])
}

// Equal reports whether k and o are the same key.
func (k Key) Equal(o Key) bool {
	if k.secret == nil || o.secret == nil {
		return k.secret == o.secret && k.Prefix == o.Prefix && k.ID == o.ID
	}
	return k.Prefix == o.Prefix && k.ID == o.ID &&
		subtle.ConstantTimeCompare([]byte(*k.secret), []byte(*o.secret)) == 1
}

// SecretHash returns Hash of the secret part only; that is what gets stored.
// It returns "" for the zero Key, which Verify never accepts.
func (k Key) SecretHash() string {
	if k.secret == nil {
		return ""
	}
	return Hash(*k.secret)
}

// Verify reports whether tagged (as produced by SecretHash) matches k's secret.
func (k Key) Verify(tagged string) bool {
	return k.secret != nil && Verify(tagged, *k.secret)
}

// redacted is what every fmt verb prints. The ID is public, so keeping it
// makes logs correlatable.
func (k Key) redacted() string {
	return k.Prefix + "_" + k.ID + "_****"
}

// Format implements fmt.Formatter so that no verb (including %#v, %x, ...)
// falls back to reflection and prints the secret.
func (k Key) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		if f.Flag('#') {
			io.WriteString(f, k.GoString())
			return
		}
		fallthrough
	case 's', 'q':
		fmt.Fprintf(f, fmt.FormatString(f, verb), k.redacted())
	default:
		fmt.Fprintf(f, "%%!%c(keymaterial.Key=%s)", verb, k.redacted())
	}
}

// GoString implements fmt.GoStringer with the secret redacted.
func (k Key) GoString() string {
	return fmt.Sprintf("keymaterial.Key{Prefix:%q, ID:%q, secret:\"****\"}", k.Prefix, k.ID)
}

// Hint returns a display hint such as "kw_…a1B2". The last four characters
// are checksum digits, so the hint reveals no secret characters (only ~24 bits
// of a CRC over a 190-bit secret).
func Hint(k Key) string {
	s := k.String()
	if s == "" {
		return ""
	}
	return k.Prefix + "_…" + s[len(s)-4:]
}

// checksum returns the base62 CRC32 (IEEE) of body, most significant digit
// first, zero-padded.
func checksum(body string) [checksumLen]byte {
	// Inline table CRC: crc32.ChecksumIEEE takes a []byte and converting the
	// string would allocate.
	crc := ^uint32(0)
	for i := 0; i < len(body); i++ {
		crc = crc32.IEEETable[byte(crc)^body[i]] ^ crc>>8
	}
	var out [checksumLen]byte
	putBase62(out[:], uint64(^crc))
	return out
}

// putBase62 writes v into dst as fixed-width base62, most significant first.
func putBase62(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62Alphabet[v%62]
		v /= 62
	}
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// randomString returns n characters drawn uniformly from alphabet using
// crypto/rand.
func randomString(n int, alphabet string) (string, error) {
	// Bytes at or above the largest multiple of len(alphabet) are rejected;
	// a plain modulo would favour the first 256%len(alphabet) symbols.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit {
				out = append(out, alphabet[int(b)%len(alphabet)])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}

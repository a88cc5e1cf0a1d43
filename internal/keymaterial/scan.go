package keymaterial

import "regexp"

// Patterns for secret scanners (docs/secret-scanning.md publishes them as a
// gitleaks rule, a TruffleHog detector and a GitHub custom pattern; a test
// runs gitleaks with them). A regular expression cannot check a checksum:
// what they find are candidates, and Parse (or `kubectl keyward checksum`)
// tells real keys from look-alikes.
const (
	// APIKeyFormat is an API key: prefix, key ID, secret and checksum.
	APIKeyFormat = `[a-z0-9]{1,16}_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}`
	// APIKeyPattern finds APIKeyFormat in text (group 1): not glued to a
	// letter or digit before it, nor to a letter, digit or underscore after.
	// The trailing \b matches no character, so two keys one separator
	// apart are both found.
	APIKeyPattern = `(?:\A|[^0-9A-Za-z])(` + APIKeyFormat + `)\b`

	// AccessKeyIDFormat is an AccessKeyPair's access key id (public).
	AccessKeyIDFormat = accessKeyIDPrefix + `[A-Z2-7]{16}`
	// AccessKeyIDPattern finds AccessKeyIDFormat in text (group 1).
	AccessKeyIDPattern = `\b(` + AccessKeyIDFormat + `)\b`

	// SecretKeyFormat is an AccessKeyPair's secret key: 40 base62
	// characters, with neither a prefix nor a checksum, so a scanner can
	// only tell it by the access key id next to it.
	SecretKeyFormat = `[0-9A-Za-z]{40}`
	// SecretKeyPattern finds SecretKeyFormat in text (group 1), not inside
	// a longer base64 run.
	SecretKeyPattern = `(?:\A|[^0-9A-Za-z+/])(` + SecretKeyFormat + `)(?:[^0-9A-Za-z+/=_]|\z)`
)

var apiKeyPattern = regexp.MustCompile(APIKeyPattern)

// maxScanMatches bounds what FindAPIKeys returns for one text.
const maxScanMatches = 10000

// Candidate is a string shaped like an API key, found in a text.
type Candidate struct {
	// Offset is where it starts in the text, in bytes.
	Offset int
	// Redacted is its prefix and key id, the public parts, with the rest
	// starred: what may be printed.
	Redacted string
	// Key is the parsed key; valid only when Err is nil.
	Key Key
	// Err is ErrChecksum for a look-alike, nil for a real key.
	Err error
}

// FindAPIKeys finds the strings of text that APIKeyPattern matches, at most
// 10,000, and checks each one's checksum.
func FindAPIKeys(text string) []Candidate {
	var out []Candidate
	for _, m := range apiKeyPattern.FindAllStringSubmatchIndex(text, maxScanMatches) {
		start, s := m[2], text[m[2]:m[3]]
		k, err := Parse(s)
		// The format puts the key id's end 13 characters after the prefix's.
		prefixEnd := len(s) - (idLen + 1 + secretLen + checksumLen) - 1
		// A key right after a lower-case word reads with a longer prefix
		// ("tokenkw_…"): try the shorter ones (at most 15 checksums).
		for i := 1; err != nil && i < prefixEnd; i++ {
			if gk, gerr := Parse(s[i:]); gerr == nil {
				start, s, prefixEnd, k, err = start+i, s[i:], prefixEnd-i, gk, nil
			}
		}
		redacted := s[:prefixEnd+1+idLen] + "_****"
		out = append(out, Candidate{Offset: start, Redacted: redacted, Key: k, Err: err})
	}
	return out
}

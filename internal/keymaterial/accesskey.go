package keymaterial

// accessKeyIDPrefix marks Keyward access key IDs the way AKIA marks AWS ones,
// so scanners and humans can tell the public half from the secret half.
const accessKeyIDPrefix = "KWAK"

// RFC 4648 base32: uppercase and unambiguous, as access key IDs get read aloud
// and pasted into tickets.
const base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// GenerateAccessKeyID returns a public access key ID: "KWAK" followed by 16
// random base32 characters (80 bits).
func GenerateAccessKeyID() (string, error) {
	s, err := randomString(16, base32Alphabet)
	if err != nil {
		return "", err
	}
	return accessKeyIDPrefix + s, nil
}

// GenerateSecretKey returns 40 random base62 characters (about 238 bits), the
// secret half of an access key pair. Store only Hash of it.
func GenerateSecretKey() (string, error) {
	return randomString(40, base62Alphabet)
}

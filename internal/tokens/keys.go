package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// MaxPrivateKeyPEMBytes bounds what ParsePrivateKey reads. A PKCS#8 P-256
// key in PEM is about 240 bytes; anything near this limit is not ours.
const MaxPrivateKeyPEMBytes = 16 << 10

const pemTypePrivateKey = "PRIVATE KEY"

// SigningKey is the issuer's private key and its key id (the "kid" header).
type SigningKey struct {
	ID      string
	Private *ecdsa.PrivateKey
}

// PublicKey is a verification key as published in the JWKS.
type PublicKey struct {
	ID  string
	Key *ecdsa.PublicKey
}

// Public returns the verification half of k.
func (k SigningKey) Public() PublicKey {
	if k.Private == nil {
		return PublicKey{ID: k.ID}
	}
	return PublicKey{ID: k.ID, Key: &k.Private.PublicKey}
}

// GenerateSigningKey creates a P-256 key whose ID is its RFC 7638 JWK
// thumbprint, so the kid is derived from the key and cannot drift from it.
func GenerateSigningKey() (SigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return SigningKey{}, errors.New("tokens: generating signing key failed")
	}
	id, err := Thumbprint(&priv.PublicKey)
	if err != nil {
		return SigningKey{}, err
	}
	return SigningKey{ID: id, Private: priv}, nil
}

// Thumbprint returns the RFC 7638 SHA-256 JWK thumbprint of a P-256 public
// key, base64url without padding: the key id this package uses.
func Thumbprint(pub *ecdsa.PublicKey) (string, error) {
	if !isP256(pub) {
		return "", errors.New("tokens: key is not a P-256 public key")
	}
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", errors.New("tokens: computing key thumbprint failed")
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// MarshalPrivateKey encodes k.Private as a PKCS#8 PEM block, for storing in
// a Kubernetes Secret. The ID is not encoded: it is the key's thumbprint.
func MarshalPrivateKey(k SigningKey) ([]byte, error) {
	if k.Private == nil || !isP256(&k.Private.PublicKey) {
		return nil, errors.New("tokens: signing key is not a P-256 private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, errors.New("tokens: encoding private key failed")
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der}), nil
}

// ParsePrivateKey decodes a PKCS#8 PEM P-256 key written by
// MarshalPrivateKey. id must be the key's thumbprint: a Secret whose id and
// key disagree was edited by hand or mixed up, and signing with it would
// publish tokens under a kid that verifiers resolve to another key. Errors
// never include the input, which is secret.
func ParsePrivateKey(id string, pemBytes []byte) (SigningKey, error) {
	if len(pemBytes) > MaxPrivateKeyPEMBytes {
		return SigningKey{}, errors.New("tokens: private key PEM is too large")
	}
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != pemTypePrivateKey || len(block.Headers) != 0 {
		return SigningKey{}, errors.New("tokens: private key is not a PKCS#8 PEM block")
	}
	// One key per Secret value: trailing blocks would be silently ignored.
	if strings.TrimSpace(string(rest)) != "" {
		return SigningKey{}, errors.New("tokens: unexpected data after the private key PEM block")
	}
	// x509 errors are fixed strings today; replacing them keeps that true.
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return SigningKey{}, errors.New("tokens: private key is not valid PKCS#8")
	}
	priv, ok := key.(*ecdsa.PrivateKey)
	if !ok || !isP256(&priv.PublicKey) {
		return SigningKey{}, errors.New("tokens: private key is not a P-256 ECDSA key")
	}
	want, err := Thumbprint(&priv.PublicKey)
	if err != nil {
		return SigningKey{}, err
	}
	if id != want {
		return SigningKey{}, errors.New("tokens: key id does not match the key's thumbprint")
	}
	return SigningKey{ID: id, Private: priv}, nil
}

func isP256(pub *ecdsa.PublicKey) bool {
	return pub != nil && pub.Curve == elliptic.P256()
}

// Package agecrypt encrypts a key's plaintext to age recipients, so a key can
// be delivered through a status field that only its owner can read.
package agecrypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// MaxRecipients bounds the work of one encryption.
const MaxRecipients = 16

// ErrRecipient says a recipient is not a valid age X25519 public key.
var ErrRecipient = errors.New("not a valid age X25519 recipient")

// ParseRecipients parses age1… public keys; the error names the position,
// never the input.
func ParseRecipients(recipients []string) ([]age.Recipient, error) {
	if len(recipients) == 0 || len(recipients) > MaxRecipients {
		return nil, fmt.Errorf("between 1 and %d age recipients are needed, got %d", MaxRecipients, len(recipients))
	}
	out := make([]age.Recipient, 0, len(recipients))
	for i, r := range recipients {
		rec, err := age.ParseX25519Recipient(r)
		if err != nil {
			return nil, fmt.Errorf("ageRecipients[%d]: %w", i, ErrRecipient)
		}
		out = append(out, rec)
	}
	return out, nil
}

// Encrypt returns plaintext encrypted to every recipient, ASCII-armored.
func Encrypt(plaintext string, recipients []string) (string, error) {
	recs, err := ParseRecipients(recipients)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, recs...)
	if err != nil {
		return "", fmt.Errorf("age encryption: %w", err)
	}
	if _, err := io.WriteString(w, plaintext); err != nil {
		return "", fmt.Errorf("age encryption: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("age encryption: %w", err)
	}
	if err := aw.Close(); err != nil {
		return "", fmt.Errorf("age armor: %w", err)
	}
	return buf.String(), nil
}

// maxPlaintext bounds what Decrypt returns; a key is under 1 KiB.
const maxPlaintext = 4 << 10

// Decrypt opens an armored age file with the given identities.
func Decrypt(armored string, identities ...age.Identity) (string, error) {
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader([]byte(armored))), identities...)
	if err != nil {
		return "", fmt.Errorf("age decryption: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, maxPlaintext+1))
	if err != nil {
		return "", fmt.Errorf("age decryption: %w", err)
	}
	if len(out) > maxPlaintext {
		return "", errors.New("age decryption: plaintext larger than any key")
	}
	return string(out), nil
}

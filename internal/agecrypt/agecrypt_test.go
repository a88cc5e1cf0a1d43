package agecrypt

import (
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestEncryptDecryptForEveryRecipient(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	b, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	armored, err := Encrypt("kw_secret", []string{a.Recipient().String(), b.Recipient().String()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(armored, "-----BEGIN AGE ENCRYPTED FILE-----") || strings.Contains(armored, "kw_secret") {
		t.Fatal("not an armored age file, or the plaintext shows through")
	}
	for name, id := range map[string]*age.X25519Identity{"first recipient": a, "second recipient": b} {
		got, err := Decrypt(armored, id)
		if err != nil || got != "kw_secret" {
			t.Fatalf("%s: Decrypt = %q, %v", name, got, err)
		}
	}
	if _, err := Decrypt(armored, other); err == nil {
		t.Fatal("an identity that is not a recipient decrypted the key")
	}
}

func TestParseRecipientsNamesThePositionNotTheInput(t *testing.T) {
	cases := map[string][]string{
		"no recipients":   nil,
		"a malformed one": {"age1notarealkey"},
		"too many":        make([]string, MaxRecipients+1),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseRecipients(in)
			if err == nil {
				t.Fatal("accepted")
			}
			if len(in) == 1 && (!errors.Is(err, ErrRecipient) || strings.Contains(err.Error(), in[0])) {
				t.Fatalf("error %q should wrap ErrRecipient without quoting the input", err)
			}
		})
	}
}

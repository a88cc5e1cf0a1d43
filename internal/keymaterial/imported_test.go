package keymaterial_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keymaterial"
)

func TestCheckImportStrength(t *testing.T) {
	for name, tc := range map[string]struct {
		key  string
		want error
	}{
		"32 random hex characters are accepted":            {"3f9a1c7e5b2d4086af13c9e07b5d2e1f", nil},
		"a 40-character mixed key is accepted":             {"sk_live_4eC39HqLyjWDarjtT1zdp7dcXyZ0aBcD", nil},
		"a base64url key with symbols is accepted":         {"Zm9vYmFyLWJhei1xdXV4LXNlY3JldC1rZXk-_A1b", nil},
		"39 random digits are accepted":                    {"718281828459045235360287471352662497757", nil},
		"a 512-character key is accepted":                  {strings.Repeat("aB3$xY7!qZ", 51) + "Q9", nil},
		"31 characters are too short":                      {"3f9a1c7e5b2d4086af13c9e07b5d2e1", keymaterial.ErrImportTooShort},
		"an empty key is too short":                        {"", keymaterial.ErrImportTooShort},
		"513 characters are too long":                      {strings.Repeat("aB3$xY7!qZ", 51) + "Q9z", keymaterial.ErrImportTooLong},
		"a huge key is too long":                           {strings.Repeat("x", 1<<20), keymaterial.ErrImportTooLong},
		"a space is refused":                               {"3f9a1c7e5b2d4086 af13c9e07b5d2e1f", keymaterial.ErrImportCharset},
		"a tab is refused":                                 {"3f9a1c7e5b2d4086\taf13c9e07b5d2e1f", keymaterial.ErrImportCharset},
		"a trailing newline is refused":                    {"3f9a1c7e5b2d4086af13c9e07b5d2e1f\n", keymaterial.ErrImportCharset},
		"a NUL byte is refused":                            {"3f9a1c7e5b2d4086\x00af13c9e07b5d2e1f", keymaterial.ErrImportCharset},
		"DEL is refused":                                   {"3f9a1c7e5b2d4086\x7faf13c9e07b5d2e1f", keymaterial.ErrImportCharset},
		"non-ASCII letters are refused":                    {"3f9a1c7e5b2d4086éaf13c9e07b5d2e1f", keymaterial.ErrImportCharset},
		"one repeated character has too little variety":    {strings.Repeat("a", 64), keymaterial.ErrImportLowVariety},
		"nine distinct characters have too little variety": {strings.Repeat("abcdefghi", 8), keymaterial.ErrImportLowVariety},
		"32 digits carry too little entropy":               {"71828182845904523536028747135266", keymaterial.ErrImportLowEntropy},
		"38 digits carry too little entropy":               {"71828182845904523536028747135266249775", keymaterial.ErrImportLowEntropy},
	} {
		t.Run(name, func(t *testing.T) {
			err := keymaterial.CheckImportStrength(tc.key)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil && len(tc.key) >= 8 && strings.Contains(err.Error(), tc.key[:8]) {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}

func TestImportedHash(t *testing.T) {
	const foreign = "3f9a1c7e5b2d4086af13c9e07b5d2e1f"
	if h, kf := keymaterial.ImportedHash(foreign); h != keymaterial.Hash(foreign) || kf {
		t.Errorf("a foreign key: got %q %v, want the hash of the whole key", h, kf)
	}
	k, err := keymaterial.Generate("acme")
	if err != nil {
		t.Fatal(err)
	}
	if h, kf := keymaterial.ImportedHash(k.String()); h != k.SecretHash() || !kf {
		t.Errorf("a Keyward-format key: got %q %v, want the hash of its secret part", h, kf)
	}
}

func TestImportRulesNameEveryRule(t *testing.T) {
	for _, rule := range []string{"32", "512", "printable ASCII", "without spaces", "10 different", "128 bits"} {
		if !strings.Contains(keymaterial.ImportRules, rule) {
			t.Errorf("ImportRules does not state %q", rule)
		}
	}
}

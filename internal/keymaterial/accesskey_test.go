package keymaterial_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keymaterial"
)

func TestAccessKeyPair(t *testing.T) {
	idPattern := regexp.MustCompile(`^KWAK[A-Z2-7]{16}$`)
	secretPattern := regexp.MustCompile(`^[0-9A-Za-z]{40}$`)
	seen := map[string]bool{}
	for range 100 {
		id, err := keymaterial.GenerateAccessKeyID()
		if err != nil || !idPattern.MatchString(id) {
			t.Fatalf("GenerateAccessKeyID() = %q, %v", id, err)
		}
		secret, err := keymaterial.GenerateSecretKey()
		if err != nil || !secretPattern.MatchString(secret) {
			t.Fatalf("GenerateSecretKey() has wrong shape, err %v", err)
		}
		if seen[id] || seen[secret] {
			t.Fatal("repeated access key ID or secret")
		}
		seen[id], seen[secret] = true, true
	}
}

// TestRandomCharactersAreUniform would catch modulo bias: with b%62 on raw
// bytes the first 8 symbols come up ~21% more often than the rest.
func TestRandomCharactersAreUniform(t *testing.T) {
	counts := map[rune]int{}
	const keys = 2000
	for range keys {
		s, err := keymaterial.GenerateSecretKey()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range s {
			counts[c]++
		}
	}
	mean := float64(keys*40) / 62
	for _, c := range base62 {
		if n := float64(counts[c]); n < 0.85*mean || n > 1.15*mean {
			t.Errorf("symbol %q drawn %v times, expected about %.0f", c, n, mean)
		}
	}
	if len(counts) != 62 || strings.ContainsAny(base62, "_-") {
		t.Errorf("drew %d distinct symbols, want 62", len(counts))
	}
}

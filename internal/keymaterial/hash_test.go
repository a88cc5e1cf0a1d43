package keymaterial_test

import (
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keymaterial"
)

func TestHashKnownVector(t *testing.T) {
	const want = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := keymaterial.Hash("abc"); got != want {
		t.Errorf("Hash(abc) = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	good := keymaterial.Hash("s3cret")
	digest := strings.TrimPrefix(good, "sha256:")
	for name, tc := range map[string]struct {
		tagged, secret string
		want           bool
	}{
		"the right secret verifies":                 {good, "s3cret", true},
		"uppercase hex still verifies":              {"sha256:" + strings.ToUpper(digest), "s3cret", true},
		"a wrong secret does not verify":            {good, "s3cre", false},
		"an empty secret does not verify":           {good, "", false},
		"an unknown tag does not verify":            {"sha512:" + digest, "s3cret", false},
		"an uppercase tag does not verify":          {"SHA256:" + digest, "s3cret", false},
		"a missing tag does not verify":             {digest, "s3cret", false},
		"an empty stored hash does not verify":      {"", "", false},
		"a truncated digest does not verify":        {good[:len(good)-2], "s3cret", false},
		"a digest with extra hex does not verify":   {good + "00", "s3cret", false},
		"a non-hex digest does not verify":          {"sha256:" + strings.Repeat("g", 64), "s3cret", false},
		"the plaintext stored as hash never passes": {"s3cret", "s3cret", false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := keymaterial.Verify(tc.tagged, tc.secret); got != tc.want {
				t.Errorf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKeySecretHash(t *testing.T) {
	k := mustGenerate(t, "kw")
	h := k.SecretHash()
	if h != keymaterial.Hash(secretOf(t, k)) {
		t.Error("SecretHash is not Hash of the secret part")
	}
	if !k.Verify(h) || !keymaterial.Verify(h, secretOf(t, k)) {
		t.Error("a key does not verify against its own SecretHash")
	}
	if k.Verify(keymaterial.Hash(k.String())) {
		t.Error("SecretHash must cover the secret only, not the whole key")
	}
	if mustGenerate(t, "kw").Verify(h) {
		t.Error("another key verified against this key's hash")
	}
}

func BenchmarkVerify(b *testing.B) {
	const secret = "0123456789abcdefghijABCDEFGHIJxy"
	h := keymaterial.Hash(secret)
	b.ReportAllocs()
	for b.Loop() {
		if !keymaterial.Verify(h, secret) {
			b.Fatal("verify failed")
		}
	}
}

func TestEqualHashes(t *testing.T) {
	a, b := keymaterial.Hash("a"), keymaterial.Hash("b")
	for name, tc := range map[string]struct {
		x, y string
		want bool
	}{
		"the same hash":                {a, strings.Clone(a), true},
		"another hash":                 {a, b, false},
		"a prefix":                     {a, a[:len(a)-1], false},
		"the empty string with itself": {"", "", true},
	} {
		t.Run(name, func(t *testing.T) {
			if got := keymaterial.EqualHashes(tc.x, tc.y); got != tc.want {
				t.Errorf("EqualHashes = %v, want %v", got, tc.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { _ = keymaterial.EqualHashes(a, b) }); n != 0 {
		t.Errorf("allocates %v times", n)
	}
}

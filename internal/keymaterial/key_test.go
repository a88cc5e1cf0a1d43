package keymaterial_test

import (
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keymaterial"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// goldenKey pins the wire format; its checksum was cross-checked with
// Python's zlib.crc32. If this test breaks, issued keys stop parsing.
const goldenKey = "kw_AbCdEfGhIjKl_0123456789abcdefghijABCDEFGHIJxy1GEflu"

var keyPattern = regexp.MustCompile(`^[a-z0-9]{1,16}_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$`)

// withChecksum appends a checksum computed independently of the package, so
// structurally bad inputs can be tested without the checksum rejecting them.
func withChecksum(body string) string {
	v := crc32.ChecksumIEEE([]byte(body))
	var sum [6]byte
	for i := 5; i >= 0; i-- {
		sum[i] = base62[v%62]
		v /= 62
	}
	return body + string(sum[:])
}

// secretOf extracts the secret through the public API only.
func secretOf(t testing.TB, k keymaterial.Key) string {
	t.Helper()
	s := k.String()
	return s[len(k.Prefix)+1+12+1 : len(s)-6]
}

func mustGenerate(t testing.TB, prefix string) keymaterial.Key {
	t.Helper()
	k, err := keymaterial.Generate(prefix)
	if err != nil {
		t.Fatalf("Generate(%q): %v", prefix, err)
	}
	return k
}

func TestGenerateParseRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{"kw", "a", "0", "sk9", "0123456789abcdef"} {
		for range 200 {
			k := mustGenerate(t, prefix)
			s := k.String()
			if !keyPattern.MatchString(s) {
				t.Fatalf("generated key has wrong shape (len %d)", len(s))
			}
			if want := withChecksum(s[:len(s)-6]); s != want {
				t.Fatalf("checksum differs from hash/crc32: got %s, want %s", s[len(s)-6:], want[len(want)-6:])
			}
			if k.Prefix != prefix || len(k.ID) != 12 {
				t.Fatalf("got Prefix=%q ID=%q", k.Prefix, k.ID)
			}
			if seen[k.ID] || seen[secretOf(t, k)] {
				t.Fatal("repeated random ID or secret")
			}
			seen[k.ID], seen[secretOf(t, k)] = true, true

			p, err := keymaterial.Parse(s)
			if err != nil {
				t.Fatalf("Parse(generated): %v", err)
			}
			if !p.Equal(k) || p.String() != s {
				t.Fatal("Parse(k.String()) does not round-trip")
			}
		}
	}
}

func TestParseGolden(t *testing.T) {
	k, err := keymaterial.Parse(goldenKey)
	if err != nil {
		t.Fatalf("Parse(golden): %v", err)
	}
	if k.Prefix != "kw" || k.ID != "AbCdEfGhIjKl" || k.String() != goldenKey {
		t.Fatalf("golden parsed as %v", k)
	}
	if got, want := keymaterial.Hint(k), "kw_…Eflu"; got != want {
		t.Errorf("Hint = %q, want %q", got, want)
	}
}

func TestGenerateRejectsBadPrefix(t *testing.T) {
	for name, prefix := range map[string]string{
		"an empty prefix is refused":           "",
		"an uppercase prefix is refused":       "KW",
		"a 17-character prefix is refused":     "0123456789abcdefg",
		"a prefix with an underscore refused":  "k_w",
		"a prefix with a dash is refused":      "k-w",
		"a prefix with non-ASCII is refused":   "ké",
		"a prefix with a space is refused":     "k w",
		"a prefix with a NUL byte is refused":  "kw\x00",
		"a prefix with a newline is refused":   "kw\n",
		"a prefix with a trailing dot refused": "kw.",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := keymaterial.Generate(prefix); !errors.Is(err, keymaterial.ErrInvalidPrefix) {
				t.Fatalf("got %v, want ErrInvalidPrefix", err)
			}
		})
	}
}

func TestParseRejectsEverySingleCharacterChange(t *testing.T) {
	for _, k := range []string{goldenKey, mustGenerate(t, "kw").String(), mustGenerate(t, "0123456789abcdef").String()} {
		for i := range len(k) {
			// Same-class neighbours of the original plus other classes.
			idx := strings.IndexByte(base62, k[i])
			candidates := "0aZz9_-.+/= \x00\xff"
			if idx >= 0 {
				candidates += string([]byte{base62[(idx+1)%62], base62[(idx+7)%62], base62[(idx+31)%62], base62[(idx+61)%62]})
			}
			for _, c := range []byte(candidates) {
				if c == k[i] {
					continue
				}
				mutated := k[:i] + string(c) + k[i+1:]
				_, err := keymaterial.Parse(mutated)
				if !errors.Is(err, keymaterial.ErrChecksum) && !errors.Is(err, keymaterial.ErrInvalidFormat) {
					t.Fatalf("changing position %d of a valid key to %q: got %v, want ErrChecksum or ErrInvalidFormat", i, c, err)
				}
			}
		}
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	const id, secret = "AbCdEfGhIjKl", "0123456789abcdefghijABCDEFGHIJxy"
	for name, tc := range map[string]struct {
		input string
		want  error
	}{
		"an empty string is not a key":                   {"", keymaterial.ErrInvalidFormat},
		"a string without underscores is not a key":      {"kwAbCdEfGhIjKl0123456789abcdefghijABCDEFGHIJxy123456", keymaterial.ErrInvalidFormat},
		"a single underscore is not a key":               {"_", keymaterial.ErrInvalidFormat},
		"an empty prefix is refused":                     {withChecksum("_" + id + "_" + secret), keymaterial.ErrInvalidFormat},
		"an uppercase prefix is refused":                 {withChecksum("KW_" + id + "_" + secret), keymaterial.ErrInvalidFormat},
		"a 17-character prefix is refused":               {withChecksum("0123456789abcdefg_" + id + "_" + secret), keymaterial.ErrInvalidFormat},
		"an 11-character key ID is refused":              {withChecksum("kw_" + id[:11] + "_" + secret + "x"), keymaterial.ErrInvalidFormat},
		"a 13-character key ID is refused":               {withChecksum("kw_" + id + "x_" + secret[1:]), keymaterial.ErrInvalidFormat},
		"a 31-character secret is refused":               {withChecksum("kw_" + id + "_" + secret[:31]), keymaterial.ErrInvalidFormat},
		"a 33-character secret is refused":               {withChecksum("kw_" + id + "_" + secret + "x"), keymaterial.ErrInvalidFormat},
		"a missing checksum is refused":                  {"kw_" + id + "_" + secret, keymaterial.ErrInvalidFormat},
		"a dash in the secret is refused":                {withChecksum("kw_" + id + "_" + secret[:31] + "-"), keymaterial.ErrInvalidFormat},
		"a non-ASCII key ID is refused":                  {withChecksum("kw_" + id[:10] + "é_" + secret), keymaterial.ErrInvalidFormat},
		"a third underscore is refused":                  {withChecksum("kw_" + id + "_" + secret[:31] + "_"), keymaterial.ErrInvalidFormat},
		"leading whitespace is refused":                  {" " + goldenKey[1:], keymaterial.ErrInvalidFormat},
		"a trailing newline is refused":                  {goldenKey + "\n", keymaterial.ErrInvalidFormat},
		"a valid key with a wrong checksum is refused":   {goldenKey[:len(goldenKey)-1] + "T", keymaterial.ErrChecksum},
		"a checksum above 2^32 is refused":               {goldenKey[:len(goldenKey)-6] + "zzzzzz", keymaterial.ErrChecksum},
		"a one-mebibyte input is refused":                {strings.Repeat("a", 1<<20), keymaterial.ErrInvalidFormat},
		"a valid key followed by a mebibyte is refused":  {goldenKey + strings.Repeat("a", 1<<20), keymaterial.ErrInvalidFormat},
		"a key with a 16-char prefix plus 1 is too long": {withChecksum("0123456789abcdef_"+id+"_"+secret) + "0", keymaterial.ErrInvalidFormat},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := keymaterial.Parse(tc.input)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if k.String() != "" {
				t.Error("failed Parse returned a non-zero Key")
			}
			msg := err.Error()
			if len(tc.input) >= 4 && strings.Contains(msg, tc.input) {
				t.Errorf("error %q contains the input", msg)
			}
			for _, part := range []string{secret, secret[:8], secret[len(secret)-8:], goldenKey[16:24]} {
				if strings.Contains(msg, part) {
					t.Errorf("error %q contains part of the secret", msg)
				}
			}
		})
	}
}

func TestParseAllocations(t *testing.T) {
	junk := strings.Repeat("x", 1<<20)
	if n := testing.AllocsPerRun(100, func() { _, _ = keymaterial.Parse(junk) }); n != 0 {
		t.Errorf("Parse of 1 MiB junk allocates %v times, want 0", n)
	}
	bad := goldenKey[:len(goldenKey)-1] + "T"
	if n := testing.AllocsPerRun(100, func() { _, _ = keymaterial.Parse(bad) }); n != 0 {
		t.Errorf("Parse with a bad checksum allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = keymaterial.Parse(goldenKey) }); n > 2 {
		t.Errorf("Parse of a valid key allocates %v times, want <= 2", n)
	}
}

// TestParsePartsIsParseWithoutCopies: the id and the secret's hash Parse
// gives, views into the input, no allocation; and Parse's refusals (every
// check is ParseParts', TestParseRejectsMalformed).
func TestParsePartsIsParseWithoutCopies(t *testing.T) {
	for range 200 {
		k := mustGenerate(t, "kw")
		id, secret, err := keymaterial.ParseParts(k.String())
		if err != nil {
			t.Fatalf("ParseParts(generated): %v", err)
		}
		if id != k.ID || keymaterial.Hash(secret) != k.SecretHash() {
			t.Fatal("ParseParts disagrees with Parse")
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = keymaterial.ParseParts(goldenKey) }); n != 0 {
		t.Errorf("ParseParts of a valid key allocates %v times, want 0", n)
	}
	if _, _, err := keymaterial.ParseParts(goldenKey[:len(goldenKey)-1] + "T"); !errors.Is(err, keymaterial.ErrChecksum) {
		t.Errorf("a bad checksum: %v", err)
	}
}

func TestHashAllocatesOnce(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = keymaterial.Hash("0123456789abcdefghijABCDEFGHIJxy") }); n > 1 {
		t.Errorf("Hash allocates %v times, want 1", n)
	}
}

func TestKeyNeverPrintsSecret(t *testing.T) {
	k := mustGenerate(t, "kw")
	secret := secretOf(t, k)
	type holder struct {
		Exported   keymaterial.Key
		unexported keymaterial.Key
		ptr        *keymaterial.Key
	}
	values := map[string]any{
		"a Key value":                     k,
		"a pointer to a Key":              &k,
		"a slice of Keys":                 []keymaterial.Key{k},
		"a map of Keys":                   map[string]keymaterial.Key{"k": k},
		"a struct holding Keys in fields": holder{k, k, &k},
		"a pointer to such a struct":      &holder{k, k, &k},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%#q", "%x", "%X", "%d", "%10s", "%-80v", "%.5s", "%T"}
	for name, v := range values {
		for _, verb := range verbs {
			got := fmt.Sprintf(verb, v)
			if strings.Contains(got, secret) || strings.Contains(got, secret[:6]) || strings.Contains(got, k.String()) {
				t.Errorf("%s printed with %s reveals the secret: %s", name, verb, got)
			}
		}
		if got := fmt.Sprint(v); strings.Contains(got, secret) {
			t.Errorf("fmt.Sprint of %s reveals the secret", name)
		}
	}
	for verb, want := range map[string]string{
		"%v":  "kw_" + k.ID + "_****",
		"%s":  "kw_" + k.ID + "_****",
		"%q":  `"kw_` + k.ID + `_****"`,
		"%#v": `keymaterial.Key{Prefix:"kw", ID:"` + k.ID + `", secret:"****"}`,
	} {
		if got := fmt.Sprintf(verb, k); got != want {
			t.Errorf("%s: got %s, want %s", verb, got, want)
		}
	}
	var nilKey *keymaterial.Key
	if got := fmt.Sprintf("%v", nilKey); got != "<nil>" {
		t.Errorf("nil *Key printed as %q", got)
	}
}

func TestZeroKey(t *testing.T) {
	var k keymaterial.Key
	if k.String() != "" || k.SecretHash() != "" || keymaterial.Hint(k) != "" {
		t.Error("zero Key should have empty String, SecretHash and Hint")
	}
	if k.Verify(keymaterial.Hash("")) {
		t.Error("zero Key verified against the hash of an empty secret")
	}
	if !k.Equal(keymaterial.Key{}) || k.Equal(mustGenerate(t, "kw")) {
		t.Error("Equal mishandles the zero Key")
	}
}

func TestHint(t *testing.T) {
	k := mustGenerate(t, "abc")
	s := k.String()
	if got, want := keymaterial.Hint(k), "abc_…"+s[len(s)-4:]; got != want {
		t.Errorf("Hint = %q, want %q", got, want)
	}
	if strings.Contains(keymaterial.Hint(k), secretOf(t, k)[28:]) {
		t.Error("Hint contains the end of the secret")
	}
}

func TestGenerateID(t *testing.T) {
	id, err := keymaterial.GenerateID()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9A-Za-z]{12}$`).MatchString(id) {
		t.Errorf("GenerateID() = %q", id)
	}
}

// FuzzParse checks Parse never panics, only returns its sentinel errors, and
// that anything it accepts is canonical.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		goldenKey,
		withChecksum("a_000000000000_00000000000000000000000000000000"),
		withChecksum("0123456789abcdef_zzzzzzzzzzzz_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
		goldenKey[:len(goldenKey)-1],
		goldenKey + "0",
		"", "_", "__", "kw__", "kw_\x00", "\xff\xfe", strings.Repeat("_", 70),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := keymaterial.Parse(s)
		if err != nil {
			if !errors.Is(err, keymaterial.ErrInvalidFormat) && !errors.Is(err, keymaterial.ErrChecksum) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if k.String() != s {
			t.Fatalf("accepted non-canonical input")
		}
		k2, err := keymaterial.Parse(k.String())
		if err != nil || !k2.Equal(k) || k2.String() != s {
			t.Fatalf("round trip failed: %v", err)
		}
		if strings.Contains(fmt.Sprintf("%v %+v %#v %s %q", k, k, k, k, k), secretOf(t, k)) {
			t.Fatal("formatted key reveals the secret")
		}
	})
}

func BenchmarkParse(b *testing.B) {
	s := mustGenerate(b, "kw").String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keymaterial.Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}

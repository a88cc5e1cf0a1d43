package keymaterial_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keymaterial"
)

// The published formats describe what the generators make: every key,
// access key id and secret key matches its format whole.
func TestGeneratedKeyMaterialMatchesThePublishedFormats(t *testing.T) {
	anchored := func(f string) *regexp.Regexp { return regexp.MustCompile(`\A(?:` + f + `)\z`) }
	apiKey, akid, sk := anchored(keymaterial.APIKeyFormat), anchored(keymaterial.AccessKeyIDFormat), anchored(keymaterial.SecretKeyFormat)
	for i := range 200 {
		prefix := []string{"kw", "acme", "0123456789abcdef", "x"}[i%4]
		k := mustGenerate(t, prefix)
		if !apiKey.MatchString(k.String()) {
			t.Fatalf("a generated key (prefix %q) does not match APIKeyFormat", prefix)
		}
		id, err := keymaterial.GenerateAccessKeyID()
		if err != nil || !akid.MatchString(id) {
			t.Fatalf("access key id %q does not match AccessKeyIDFormat", id)
		}
		secret, err := keymaterial.GenerateSecretKey()
		if err != nil || !sk.MatchString(secret) {
			t.Fatal("a secret key does not match SecretKeyFormat")
		}
	}
}

func TestFindAPIKeysFindsKeysAndTellsLookAlikesByTheirChecksum(t *testing.T) {
	a, b := mustGenerate(t, "kw").String(), mustGenerate(t, "acme").String()
	// A look-alike: a real key with its last checksum character changed.
	last := a[len(a)-1]
	lookAlike := a[:len(a)-1] + string("01"[map[bool]int{true: 1}[last == '0']])
	for name, tc := range map[string]struct {
		text  string
		found []string // the keys found, in order
		valid []bool
	}{
		"a key alone":                            {a, []string{a}, []bool{true}},
		"keys in YAML, env and a header":         {"key: " + a + "\nTOKEN=" + b + "\nAuthorization: Bearer " + a + "\n", []string{a, b, a}, []bool{true, true, true}},
		"two keys one separator apart":           {a + " " + b + "," + a, []string{a, b, a}, []bool{true, true, true}},
		"after an underscore":                    {"MY_TOKEN_" + a, []string{a}, []bool{true}},
		"quoted in JSON":                         {`{"apiKey":"` + b + `"}`, []string{b}, []bool{true}},
		"a look-alike is found, checksum wrong":  {"x=" + lookAlike, []string{lookAlike}, []bool{false}},
		"glued to a letter before: not a key":    {"Z" + a, nil, nil},
		"one character longer: not a key":        {a + "x", nil, nil},
		"one character shorter: not a key":       {a[:len(a)-1], nil, nil},
		"followed by an underscore: not matched": {a + "_", nil, nil},
		"an uppercase prefix: not a key":         {"KW" + a[2:], nil, nil},
		"dashes for underscores: not a key":      {strings.ReplaceAll(a, "_", "-"), nil, nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := keymaterial.FindAPIKeys(tc.text)
			if len(got) != len(tc.found) {
				t.Fatalf("found %d candidates, want %d", len(got), len(tc.found))
			}
			for i, c := range got {
				if s := tc.text[c.Offset : c.Offset+len(tc.found[i])]; s != tc.found[i] {
					t.Errorf("candidate %d is at the wrong offset", i)
				}
				if (c.Err == nil) != tc.valid[i] {
					t.Errorf("candidate %d: err %v, want valid=%v", i, c.Err, tc.valid[i])
				}
				if c.Err != nil && !errors.Is(c.Err, keymaterial.ErrChecksum) {
					t.Errorf("candidate %d: %v, want ErrChecksum", i, c.Err)
				}
				if c.Err == nil && c.Key.String() != tc.found[i] {
					t.Errorf("candidate %d parsed to another key", i)
				}
				want := tc.found[i][:strings.LastIndex(tc.found[i], "_")] + "_****"
				if c.Redacted != want || strings.Contains(c.Redacted, tc.found[i][len(tc.found[i])-38:]) {
					t.Errorf("candidate %d redacted as %q, want %q", i, c.Redacted, want)
				}
			}
		})
	}
}

func TestFindAPIKeysIsBounded(t *testing.T) {
	k := mustGenerate(t, "kw").String()
	if n := len(keymaterial.FindAPIKeys(strings.Repeat(k+"\n", 10001))); n != 10000 {
		t.Errorf("%d candidates, want the bound 10000", n)
	}
}

// A key pasted right after a lower-case word ("tokenkw_...") reads, to the
// pattern, as a key with prefix "tokenkw" whose checksum fails: a leaked
// key the checksum step would call a look-alike. FindAPIKeys tries the
// shorter prefixes too.
func TestFindAPIKeysFindsAKeyGluedToALowerCaseWord(t *testing.T) {
	k := mustGenerate(t, "kw")
	text := "export tokenkw" + k.String()[2:] + "\n"
	got := keymaterial.FindAPIKeys(text)
	if len(got) != 1 || got[0].Err != nil || got[0].Key.String() != k.String() {
		t.Fatalf("found %+v, want the key inside the glued word", got)
	}
	if got[0].Offset != strings.Index(text, k.String()) || got[0].Redacted != "kw_"+k.ID+"_****" {
		t.Errorf("offset %d, redacted %q: not the key's", got[0].Offset, got[0].Redacted)
	}
	// A look-alike glued to a word stays a look-alike.
	bad := "tokenkw" + k.String()[2:len(k.String())-1] + "x"
	if k.String()[len(k.String())-1] == 'x' {
		bad = bad[:len(bad)-1] + "y"
	}
	if got := keymaterial.FindAPIKeys(bad); len(got) != 1 || !errors.Is(got[0].Err, keymaterial.ErrChecksum) {
		t.Errorf("a glued look-alike: %+v", got)
	}
}

package keypolicy

import (
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	for name, tc := range map[string]struct {
		in, want string
		ok       bool
	}{
		"a lowercase name is kept":                       {"api.example.com", "api.example.com", true},
		"upper case is lowered":                          {"API.Example.COM", "api.example.com", true},
		"the port is dropped":                            {"api.example.com:8443", "api.example.com", true},
		"one trailing dot is dropped":                    {"api.example.com.", "api.example.com", true},
		"a trailing dot before the port is dropped":      {"api.example.com.:443", "api.example.com", true},
		"a single label is a host":                       {"localhost", "localhost", true},
		"an underscore is kept (no policy names it)":     {"a_b.example.com", "a_b.example.com", true},
		"a bracketed IPv6 literal is kept":               {"[::1]:8080", "[::1]", true},
		"a label of 63 characters is kept":               {long63 + ".example.com", long63 + ".example.com", true},
		"two trailing dots are refused":                  {"api.example.com..", "", false},
		"an empty host is refused":                       {"", "", false},
		"a lone dot is refused":                          {".", "", false},
		"an empty label is refused":                      {"api..example.com", "", false},
		"a leading dot is refused":                       {".example.com", "", false},
		"a label of 64 characters is refused":            {long63 + "a.example.com", "", false},
		"a name over 253 characters is refused":          {strings.Repeat("a.", 127) + "ab", "", false},
		"userinfo is refused":                            {"evil@api.example.com", "", false},
		"a space is refused":                             {"api.example.com ", "", false},
		"a slash is refused":                             {"api.example.com/x", "", false},
		"a percent escape is refused":                    {"api%2eexample.com", "", false},
		"non-ASCII is refused (IDNs come as xn--)":       {"bücher.example", "", false},
		"an empty port is refused":                       {"api.example.com:", "", false},
		"a port that is not a number is refused":         {"api.example.com:http", "", false},
		"a port of six digits is refused":                {"api.example.com:123456", "", false},
		"two ports are refused":                          {"api.example.com:1:2", "", false},
		"an unbracketed IPv6 address is refused":         {"::1", "", false},
		"an unterminated bracket is refused":             {"[::1", "", false},
		"garbage after the bracket is refused":           {"[::1]x", "", false},
		"something else between brackets is refused":     {"[api.example.com]", "", false},
		"a NUL is refused":                               {"api.example.com\x00.evil", "", false},
		"a host longer than any host with port refused":  {strings.Repeat("a", 300), "", false},
		"only a port is refused":                         {":443", "", false},
		"a trailing dot alone after a port is refused":   {".:443", "", false},
		"a wildcard is not a request host":               {"*.example.com", "", false},
		"a numeric name is kept (no policy names one)":   {"10.0.0.1:80", "10.0.0.1", true},
		"upper case in a bracketed literal is lowered":   {"[FE80::1]", "[fe80::1]", true},
		"a label of hyphens is kept (matches no policy)": {"-.example.com", "-.example.com", true},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := NormalizeHost(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("NormalizeHost(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestValidPolicyHost(t *testing.T) {
	for name, tc := range map[string]struct {
		in string
		ok bool
	}{
		"an exact name":                          {"api.example.com", true},
		"a single label":                         {"localhost", true},
		"a wildcard of two labels":               {"*.example.com", true},
		"a wildcard over a top-level domain":     {"*.com", false},
		"a bare wildcard":                        {"*", false},
		"a wildcard in the middle":               {"api.*.example.com", false},
		"upper case":                             {"API.example.com", false},
		"a trailing dot":                         {"api.example.com.", false},
		"a port":                                 {"api.example.com:80", false},
		"an IP address":                          {"10.0.0.1", false},
		"a label starting with a hyphen":         {"-api.example.com", false},
		"a label ending with a hyphen":           {"api-.example.com", false},
		"an underscore":                          {"a_b.example.com", false},
		"an empty label":                         {"api..example.com", false},
		"empty":                                  {"", false},
		"a numeric label among letters is fine":  {"1.example.com", true},
		"a wildcard over numeric labels matches": {"*.1.2", true}, // as the schema's rule
	} {
		t.Run(name, func(t *testing.T) {
			if got := validPolicyHost(tc.in); got != tc.ok {
				t.Fatalf("validPolicyHost(%q) = %v, want %v", tc.in, got, tc.ok)
			}
		})
	}
}

// FuzzNormalizeHost: what comes out is normal (normalising again changes
// nothing), lowercase, and carries no port.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"api.example.com", "API.example.com.:80", "[::1]:1", "a..b", "x:y:z", "é.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, ok := NormalizeHost(in)
		if !ok {
			return
		}
		if again, ok2 := NormalizeHost(h); !ok2 || again != h {
			t.Fatalf("NormalizeHost(%q) = %q, and again %q, %v", in, h, again, ok2)
		}
		if h != strings.ToLower(h) || len(h) > maxHostLength || h[0] != '[' && strings.ContainsAny(h, ":[]") {
			t.Fatalf("NormalizeHost(%q) = %q: not normal", in, h)
		}
	})
}

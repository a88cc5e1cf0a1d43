package keypolicy

import (
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	for name, tc := range map[string]struct {
		in, want string
		ok       bool
	}{
		"a plain path is kept":                              {"/invoices/7", "/invoices/7", true},
		"the query is dropped":                              {"/invoices?scope=admin", "/invoices", true},
		"the fragment is dropped":                           {"/invoices#x", "/invoices", true},
		"an empty path is the root":                         {"", "/", true},
		"a bare query is the root":                          {"?x=1", "/", true},
		"escapes are decoded":                               {"/%61dmin", "/admin", true},
		"a double escape is decoded twice":                  {"/%2561dmin", "/admin", true},
		"a triple escape is decoded three times":            {"/%252561dmin", "/admin", true},
		"a path still encoded after three decodings":        {"/%25252561dmin", "", false},
		"an encoded slash is a slash":                       {"/admin%2Fusers", "/admin/users", true},
		"a backslash is a slash":                            {"/admin\\users", "/admin/users", true},
		"an encoded backslash is a slash":                   {"/admin%5Cusers", "/admin/users", true},
		"repeated slashes are merged":                       {"//admin///users", "/admin/users", true},
		"dots inside a segment are kept":                    {"/a.b/..c/.../c..", "/a.b/..c/.../c..", true},
		"a trailing slash is kept":                          {"/invoices/", "/invoices/", true},
		"UTF-8 is kept":                                     {"/r%C3%A9sum%C3%A9", "/résumé", true},
		"a percent sign decoding produced is a literal one": {"/100%25zz", "/100%zz", true},
		"a '..' segment is refused":                         {"/public/../admin", "", false},
		"a '.' segment is refused":                          {"/./admin", "", false},
		"a trailing '..' is refused":                        {"/admin/..", "", false},
		"an encoded '..' segment is refused":                {"/public/%2e%2e/admin", "", false},
		"a double-encoded '..' segment is refused":          {"/public/%252e%252e/admin", "", false},
		"a '..' segment between backslashes is refused":     {"/public\\..\\admin", "", false},
		"an encoded slash making a '..' segment is refused": {"/public%2F..%2Fadmin", "", false},
		"a path parameter is refused":                       {"/admin;jsessionid=1", "", false},
		"a '..;' segment is refused":                        {"/public/..;/admin", "", false},
		"an encoded ';' is refused":                         {"/admin%3Bx", "", false},
		"a NUL is refused":                                  {"/admin%00.json", "", false},
		"a raw control character is refused":                {"/admin\t", "", false},
		"DEL is refused":                                    {"/admin\x7f", "", false},
		"a bad escape is refused":                           {"/admin%zz", "", false},
		"a truncated escape is refused":                     {"/admin%2", "", false},
		"an absolute URI is refused":                        {"http://evil.example/admin", "", false},
		"an asterisk is refused":                            {"*", "", false},
		"a relative path is refused":                        {"admin", "", false},
		"a path over the limit is refused":                  {"/" + strings.Repeat("a", MaxPathLength), "", false},
		"a path at the limit is kept":                       {"/" + strings.Repeat("a", MaxPathLength-1), "/" + strings.Repeat("a", MaxPathLength-1), true},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := NormalizePath(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("NormalizePath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestPrefixMatch(t *testing.T) {
	for name, tc := range map[string]struct {
		prefix, path string
		want         bool
	}{
		"the root matches every path":            {"/", "/anything/at/all", true},
		"a prefix matches itself":                {"/invoices", "/invoices", true},
		"a prefix matches itself with a slash":   {"/invoices", "/invoices/", true},
		"a prefix matches a deeper path":         {"/invoices", "/invoices/7", true},
		"a prefix does not match a longer name":  {"/invoices", "/invoices-old", false},
		"a prefix does not match a shorter path": {"/invoices/7", "/invoices", false},
		"matching is case-sensitive":             {"/admin", "/Admin", false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := prefixMatch(tc.prefix, tc.path); got != tc.want {
				t.Fatalf("prefixMatch(%q, %q) = %v, want %v", tc.prefix, tc.path, got, tc.want)
			}
		})
	}
}

func TestNormalizePathPrefix(t *testing.T) {
	for name, tc := range map[string]struct {
		in, want string
		ok       bool
	}{
		"unset is the root":                  {"", "/", true},
		"the root is kept":                   {"/", "/", true},
		"a trailing slash is dropped":        {"/v1/", "/v1", true},
		"a plain prefix is kept":             {"/v1/invoices", "/v1/invoices", true},
		"no leading slash is refused":        {"v1", "", false},
		"'//' is refused":                    {"/v1//x", "", false},
		"a '..' segment is refused":          {"/v1/..", "", false},
		"a percent escape is refused":        {"/v%31", "", false},
		"a ';' is refused":                   {"/v1;x", "", false},
		"a query is refused":                 {"/v1?x", "", false},
		"a prefix over the limit is refused": {"/" + strings.Repeat("a", maxPathPrefixLength), "", false},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := normalizePathPrefix(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("normalizePathPrefix(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzNormalizePath: an accepted path starts with "/" and has no "."/".."
// segment, no ";", no backslash, no repeated slash and no control character,
// whatever the input: the properties policies rely on.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/a/b", "/%2e%2e/", "/a\\..\\b", "//x", "/%25%32%65", "/a;b", "/a?b#c", "/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, ok := NormalizePath(in)
		if !ok {
			return
		}
		if p == "" || p[0] != '/' || hasDotSegment(p) || strings.ContainsAny(p, ";\\\x00") || strings.Contains(p, "//") {
			t.Fatalf("NormalizePath(%q) = %q: not normal", in, p)
		}
		for i := 0; i < len(p); i++ {
			if p[i] < 0x20 || p[i] == 0x7f {
				t.Fatalf("NormalizePath(%q) = %q: control character", in, p)
			}
		}
	})
}

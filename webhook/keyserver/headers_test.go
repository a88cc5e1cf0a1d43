package keyserver

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
)

// setIdentityHeaders stores names as they are: a name that is not
// canonical would be missed by Header.Get and sent twice by a later Set.
func TestIdentityHeaderNamesAreCanonical(t *testing.T) {
	for _, f := range identityHeaders(authzAnswer{}) {
		if c := http.CanonicalHeaderKey(f.name); c != f.name {
			t.Errorf("%q is not canonical (%q)", f.name, c)
		}
	}
}

// TestSetIdentityHeadersIsHeaderSet: the same map as Header.Set would
// make, and values that do not share an array's room with each other.
func TestSetIdentityHeadersIsHeaderSet(t *testing.T) {
	a := authzAnswer{
		res:      keyindex.Result{Subject: "svc", Groups: []string{"a", "b"}, Scopes: []string{"read", "write"}, KeyID: "k1", Namespace: "team-a"},
		decision: keypolicy.Decision{Policy: keypolicy.Ref{Namespace: "team-a", Name: "api"}},
	}
	want := http.Header{}
	want.Set(wire.HeaderSubject, "svc")
	want.Set(wire.HeaderGroups, "a,b")
	want.Set(wire.HeaderScopes, "read write")
	want.Set(wire.HeaderKeyID, "k1")
	want.Set(wire.HeaderNamespace, "team-a")
	want.Set(wire.HeaderPolicy, "team-a/api")
	got := http.Header{}
	setIdentityHeaders(got, identityHeaders(a))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	got.Add(wire.HeaderSubject, "other")
	if v := got.Values(wire.HeaderGroups); len(v) != 1 || v[0] != "a,b" {
		t.Fatalf("an Add to one header changed the next: %v", v)
	}
	// Empty values are present, not absent (Caddy copies an absent header
	// as its placeholder).
	empty := http.Header{}
	setIdentityHeaders(empty, identityHeaders(authzAnswer{res: keyindex.Result{Subject: "svc"}}))
	if v, ok := empty[wire.HeaderPolicy]; !ok || len(v) != 1 || v[0] != "" {
		t.Fatalf("policy header: %v, %v", v, ok)
	}
}

// originalRequest reads these names straight from the header map, where
// net/http stores names canonical.
func TestOriginHeaderNamesAreCanonical(t *testing.T) {
	for _, name := range []string{HeaderForwardedHost, HeaderForwardedURI, HeaderOriginalURI, HeaderForwardedMethod, HeaderOriginalMethod,
		headerAuthorization, headerAPIKey} {
		if c := http.CanonicalHeaderKey(name); c != name {
			t.Errorf("%q is not canonical (%q)", name, c)
		}
	}
}

// writeRateLimitHeaders assigns these names straight into the header map.
func TestRateLimitHeaderNamesAreCanonical(t *testing.T) {
	for name, want := range map[string]string{"RateLimit-Policy": headerRateLimitPolicy, "RateLimit": headerRateLimit} {
		if c := http.CanonicalHeaderKey(name); c != want {
			t.Errorf("%q is stored as %q, not %q", name, c, want)
		}
	}
}

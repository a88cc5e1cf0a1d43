package keyserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keyward/keyward/internal/hashsecret"
)

// Usage per key (issue 17, item 4): what the key server counts for
// status.usage, through every front end.

func (f *fixture) counted(kind, name string) [2]int64 {
	a, r := f.s.LastUsed().Counted(kind, "team-a", name)
	return [2]int64{a, r}
}

func TestUsageCountsAcceptedAndRefusedRequestsOfValidKeys(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", limitOf(3, time.Hour))
	cidr := f.apiKey("office", cidrsOf("10.0.0.0/8"))
	withKey := func(path string) *http.Request {
		return authzReq(path, func(h http.Header) { h.Set("X-API-Key", key) })
	}
	for _, c := range []struct {
		what string
		req  *http.Request
		want int
	}{
		{"accepted", withKey("/v1/authz"), 200},
		{"refused: a scope the key lacks", withKey("/v1/authz?scope=invoices:write"), 403},
		{"accepted by verify", verifyWith(key), 200},
		{"accepted", withKey("/v1/authz"), 200},
		{"refused: the rate limit is used up", withKey("/v1/authz"), 429},
	} {
		if rec := f.do(c.req); rec.Code != c.want {
			t.Fatalf("%s: %d, want %d", c.what, rec.Code, c.want)
		}
	}
	if got := f.counted(hashsecret.KindAPIKey, "billing"); got != [2]int64{3, 2} {
		t.Fatalf("billing: %v accepted/refused, want [3 2]", got)
	}
	scoped := httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(`{"key":"`+cidr+`","scopes":["invoices:write"]}`))
	if rec := f.do(scoped); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"valid":false`) {
		t.Fatalf("verify of a scope the key lacks: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", cidr) })); rec.Code != 403 {
		t.Fatalf("outside the allow-list: %d", rec.Code)
	}
	if rec := f.do(verifyWith(cidr)); rec.Code != 200 || !strings.Contains(rec.Body.String(), "CIDR_NOT_ALLOWED") {
		t.Fatalf("verify outside the allow-list: %d %s", rec.Code, rec.Body)
	}
	// ext_authz decides through the same core, and counts the same.
	client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
	for _, k := range []string{key, cidr} {
		if _, err := client.Check(context.Background(), envoyCheck("api.example.com", "GET", "/", map[string]string{"x-api-key": k}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.counted(hashsecret.KindAPIKey, "office"); got != [2]int64{0, 4} {
		t.Fatalf("office: %v, want [0 4]", got)
	}
	if got := f.counted(hashsecret.KindAPIKey, "billing"); got != [2]int64{3, 3} {
		t.Fatalf("billing after ext_authz: %v, want [3 3] (its limit is used up)", got)
	}
}

func TestUsageCountsTokensIssuedAndTheirRequestsForThePair(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("ci", limitOf(2, time.Hour))
	tok := f.token(basicToken(ak, sk))
	if tok.status != 200 {
		t.Fatalf("token: %d", tok.status)
	}
	if rec := f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("Authorization", "Bearer "+tok.resp.Token) })); rec.Code != 200 {
		t.Fatalf("the token's request: %d", rec.Code)
	}
	if rec := f.do(basicToken(ak, sk)); rec.Code != 429 {
		t.Fatalf("a token over the pair's limit: %d", rec.Code)
	}
	if rec := f.do(basicToken(ak, "wrong"+sk[5:])); rec.Code != 401 {
		t.Fatalf("a wrong secret key: %d", rec.Code)
	}
	if got := f.counted(hashsecret.KindAccessKeyPair, "ci"); got != [2]int64{2, 1} {
		t.Fatalf("ci: %v, want [2 1] (the wrong secret key is not the pair's use)", got)
	}
}

// TestAttack60NamingAVictimsKeyIDMovesItsUsage: an anonymous client sends
// well-formed keys naming a victim's key id (public: it is in status, in
// identity headers) with a secret it guessed, or junk, hoping to inflate
// the victim's refused count (and raise its alerts) or hide its own
// traffic. A credential that does not validate is counted against no key.
func TestAttack60NamingAVictimsKeyIDMovesItsUsage(t *testing.T) {
	f := newFixture(t)
	victim := f.apiKey("victim")
	forged := guessFor(t, keyIDOf(t, victim))
	for range 3 {
		f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", forged) }))
		f.do(verifyWith(forged))
	}
	f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("X-Keyward-Key-Id", keyIDOf(t, victim)) }))
	if got := f.counted(hashsecret.KindAPIKey, "victim"); got != [2]int64{0, 0} {
		t.Fatalf("forged keys were counted for the victim: %v", got)
	}
}

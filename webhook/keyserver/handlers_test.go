package keyserver

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/keyward/keyward/api/wire"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	authnv1 "k8s.io/api/authentication/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/signingkeys"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t     *testing.T
	s     *Server
	clock *clocktesting.FakeClock
}

func newFixture(t *testing.T, mut ...func(*Options)) *fixture {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	// These tests are about keys, not policies: any valid key passes
	// where no KeyPolicy names the host (the policy tests say deny).
	o := Options{Issuer: "https://keyward.test", MaxTokenLifetime: 7 * 24 * time.Hour, Clock: clk, FailureLimit: 5, FailureRefill: 10 * time.Second,
		DefaultPolicy: keypolicy.ModeAllowValidKey}
	for _, m := range mut {
		m(&o)
	}
	s := New(o)
	ks, err := signingkeys.Apply(nil, signingkeys.Plan{Generate: true}, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := signingkeys.Load(ks, t0)
	if err != nil {
		t.Fatal(err)
	}
	s.keys.Store(loaded)
	return &fixture{t: t, s: s, clock: clk}
}

type keyOpt func(*hashsecret.Record)

func readOnly(r *hashsecret.Record)  { r.Access = string(kw.AccessReadOnly) }
func suspended(r *hashsecret.Record) { r.Suspended = true }
func expiresIn(d time.Duration) keyOpt {
	return func(r *hashsecret.Record) {
		t := t0.Add(d)
		r.ExpiresAt = &t
		r.Current.NotAfter = &t
	}
}

// apiKey indexes a new API key and returns its plaintext.
func (f *fixture) apiKey(name string, opts ...keyOpt) string {
	f.t.Helper()
	k, err := keymaterial.Generate("kw")
	if err != nil {
		f.t.Fatal(err)
	}
	rec := &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: name, Subject: name + "-subject",
		Groups: []string{"reporting"}, Scopes: []string{"invoices:read"}, Access: string(kw.AccessReadWrite),
		Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
	}
	for _, o := range opts {
		o(rec)
	}
	if err := f.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, "team-a", name), rec); err != nil {
		f.t.Fatal(err)
	}
	return k.String()
}

// apiKeyAs indexes k as the only version of APIKey name.
func (f *fixture) apiKeyAs(name string, k keymaterial.Key) {
	f.t.Helper()
	rec := &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: name, Subject: name + "-subject", Access: string(kw.AccessReadWrite),
		Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
	}
	if err := f.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, "team-a", name), rec); err != nil {
		f.t.Fatal(err)
	}
}

// pair indexes an access key pair and returns its AK and SK.
func (f *fixture) pair(name string, opts ...keyOpt) (string, string) {
	f.t.Helper()
	ak, _ := keymaterial.GenerateAccessKeyID()
	sk, _ := keymaterial.GenerateSecretKey()
	rec := &hashsecret.Record{
		Kind: hashsecret.KindAccessKeyPair, Namespace: "team-a", Name: name, Subject: "alice",
		Groups: []string{"devs"}, Scopes: []string{"reports:read"},
		Current: &hashsecret.Version{ID: ak, Hash: keymaterial.Hash(sk), NotBefore: t0.Add(-time.Hour)},
		Tokens:  &hashsecret.TokenPolicy{DefaultLifetime: 72 * time.Hour, MaxLifetime: 168 * time.Hour},
	}
	for _, o := range opts {
		o(rec)
	}
	if err := f.s.index.Upsert(hashsecret.Name(hashsecret.KindAccessKeyPair, "team-a", name), rec); err != nil {
		f.t.Fatal(err)
	}
	return ak, sk
}

func (f *fixture) do(req *http.Request) *httptest.ResponseRecorder {
	if req.RemoteAddr == "" || req.RemoteAddr == "192.0.2.1:1234" {
		req.RemoteAddr = "203.0.113.7:4242"
	}
	rec := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(rec, req)
	return rec
}

func authzReq(path string, header func(http.Header)) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if header != nil {
		header(r.Header)
	}
	return r
}

func TestAuthzReadsTheKeyFromEverySchemeUsersSend(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	cases := map[string]func(http.Header){
		"Authorization: Bearer":                  func(h http.Header) { h.Set("Authorization", "Bearer "+key) },
		"Authorization: Token (Adverity)":        func(h http.Header) { h.Set("Authorization", "Token "+key) },
		"Authorization: apk (Delphix DCT)":       func(h http.Header) { h.Set("Authorization", "apk "+key) },
		"Authorization: ApiKey":                  func(h http.Header) { h.Set("Authorization", "ApiKey "+key) },
		"a lower-case scheme":                    func(h http.Header) { h.Set("Authorization", "bearer "+key) },
		"the raw key as Authorization (Concord)": func(h http.Header) { h.Set("Authorization", key) },
		"X-API-Key":                              func(h http.Header) { h.Set("X-API-Key", key) },
	}
	for name, set := range cases {
		t.Run(name, func(t *testing.T) {
			rec := f.do(authzReq("/v1/authz/any/sub/path", set))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200", rec.Code)
			}
			h := rec.Header()
			if h.Get(wire.HeaderSubject) != "billing-subject" || h.Get(wire.HeaderGroups) != "reporting" ||
				h.Get(wire.HeaderScopes) != "invoices:read" || h.Get(wire.HeaderKeyID) == "" {
				t.Fatalf("identity headers: %v", h)
			}
		})
	}
}

func TestAuthzRefusals(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	ro := f.apiKey("reader", readOnly)
	cases := map[string]struct {
		path   string
		header func(http.Header)
		want   int
	}{
		"no key":                               {"/v1/authz", nil, 401},
		"an unknown key":                       {"/v1/authz", func(h http.Header) { h.Set("Authorization", "Bearer kw_AAAAAAAAAAAA_"+strings.Repeat("a", 38)) }, 401},
		"a required scope the key lacks":       {"/v1/authz?scope=invoices:write", func(h http.Header) { h.Set("X-API-Key", key) }, 403},
		"a required scope the key has":         {"/v1/authz?scope=invoices:read", func(h http.Header) { h.Set("X-API-Key", key) }, 200},
		"a read-only key and a POST (Traefik)": {"/v1/authz", func(h http.Header) { h.Set("X-API-Key", ro); h.Set("X-Forwarded-Method", "POST") }, 403},
		"a read-only key and a DELETE (nginx)": {"/v1/authz", func(h http.Header) { h.Set("X-API-Key", ro); h.Set("X-Original-Method", "DELETE") }, 403},
		"a read-only key and a GET":            {"/v1/authz", func(h http.Header) { h.Set("X-API-Key", ro); h.Set("X-Forwarded-Method", "GET") }, 200},
		"a read-write key and a POST":          {"/v1/authz", func(h http.Header) { h.Set("X-API-Key", key); h.Set("X-Forwarded-Method", "POST") }, 200},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			rec := f.do(authzReq(c.path, c.header))
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d", rec.Code, c.want)
			}
			if c.want == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Fatal("a 401 must carry WWW-Authenticate")
			}
			if c.want != 200 && rec.Header().Get(wire.HeaderSubject) != "" {
				t.Fatal("a refusal must not reveal the identity")
			}
		})
	}
}

func verifyBody(t *testing.T, f *fixture, body string) (int, wire.VerifyResponse) {
	t.Helper()
	rec := f.do(httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(body)))
	var out wire.VerifyResponse
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code, out
}

func TestVerifyAnswersWithACode(t *testing.T) {
	f := newFixture(t)
	good := f.apiKey("good")
	sus := f.apiKey("paused", suspended)
	soon := f.apiKey("soon", expiresIn(time.Hour))
	k, _ := keymaterial.Parse(good)
	stranger, _ := keymaterial.Generate("kw") // well-formed, never issued here
	cases := map[string]struct {
		body   string
		before func()
		code   string
	}{
		"a valid key":                       {body: `{"key":"` + good + `"}`, code: "VALID"},
		"a valid key with its scope":        {body: `{"key":"` + good + `","scopes":["invoices:read"]}`, code: "VALID"},
		"a valid key without a scope asked": {body: `{"key":"` + good + `","scopes":["invoices:write"]}`, code: "INSUFFICIENT_SCOPE"},
		"a suspended key":                   {body: `{"key":"` + sus + `"}`, code: "SUSPENDED"},
		"a mistyped key (checksum)":         {body: `{"key":"` + good[:len(good)-1] + "x" + `"}`, code: "INVALID_FORMAT"},
		"a well-formed key never issued":    {body: `{"key":"` + stranger.String() + `"}`, code: "NOT_FOUND"},
		"garbage":                           {body: `{"key":"hello"}`, code: "INVALID_FORMAT"},
		"a key at the instant it expires":   {body: `{"key":"` + soon + `"}`, before: func() { f.clock.SetTime(t0.Add(time.Hour)) }, code: "EXPIRED"},
	}
	for _, name := range []string{"a valid key", "a valid key with its scope", "a valid key without a scope asked", "a suspended key",
		"a mistyped key (checksum)", "a well-formed key never issued", "garbage", "a key at the instant it expires"} {
		c := cases[name]
		t.Run(name, func(t *testing.T) {
			if c.before != nil {
				c.before()
			}
			status, out := verifyBody(t, f, c.body)
			if status != 200 || out.Code != c.code || out.Valid != (c.code == "VALID") {
				t.Fatalf("status %d, %+v; want code %s", status, out, c.code)
			}
			if c.code == "VALID" && (out.Subject != "good-subject" || out.KeyID != k.ID || out.Namespace != "team-a") {
				t.Fatalf("identity: %+v", out)
			}
		})
	}
}

func TestVerifyRefusesMalformedAndOversizedBodies(t *testing.T) {
	f := newFixture(t)
	for name, body := range map[string]string{
		"not JSON":        `key=abc`,
		"unknown fields":  `{"key":"a","admin":true}`,
		"over 16 KiB":     `{"key":"` + strings.Repeat("a", 20<<10) + `"}`,
		"too many scopes": `{"key":"a","scopes":[` + strings.Repeat(`"s",`, 40) + `"s"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if status, _ := verifyBody(t, f, body); status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", status)
			}
		})
	}
}

type tokenResult struct {
	status int
	resp   wire.TokenResponse
	body   string
}

func (f *fixture) token(req *http.Request) tokenResult {
	rec := f.do(req)
	out := tokenResult{status: rec.Code, body: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &out.resp)
	return out
}

func TestTokensAcceptTheAccessKeyPairAsJSONFormOrBasic(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("alice-1")
	cases := map[string]func() *http.Request{
		"JSON": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/v1/tokens", strings.NewReader(`{"accessKeyID":"`+ak+`","secretKey":"`+sk+`"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		},
		"a form": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/v1/tokens", strings.NewReader(url.Values{"ak": {ak}, "sk": {sk}}.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		},
		"HTTP Basic": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/v1/tokens", nil)
			r.SetBasicAuth(ak, sk)
			return r
		},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			got := f.token(req())
			if got.status != 200 || got.resp.TokenType != "Bearer" || got.resp.Token == "" {
				t.Fatalf("status %d: %s", got.status, got.body)
			}
			if !got.resp.ExpiresAt.Equal(t0.Add(72 * time.Hour)) {
				t.Fatalf("expiresAt %v, want the default 72h", got.resp.ExpiresAt)
			}
			rec := f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("Authorization", "Bearer "+got.resp.Token) }))
			if rec.Code != 200 || rec.Header().Get(wire.HeaderSubject) != "alice" || rec.Header().Get(wire.HeaderKeyID) != ak {
				t.Fatalf("the token does not pass forward-auth: %d %v", rec.Code, rec.Header())
			}
		})
	}
}

func jsonToken(ak, sk, lifetime string) *http.Request {
	body, _ := json.Marshal(wire.TokenRequest{AccessKeyID: ak, SecretKey: sk, Lifetime: lifetime})
	r := httptest.NewRequest(http.MethodPost, "/v1/tokens", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func TestTokenLifetimeIsBoundedByThePair(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("alice-1")
	if got := f.token(jsonToken(ak, sk, "24h")); got.status != 200 || !got.resp.ExpiresAt.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("24h: %d %s", got.status, got.body)
	}
	if got := f.token(jsonToken(ak, sk, "169h")); got.status != 400 || !strings.Contains(got.body, "exceeds the maximum of 168h0m0s") {
		t.Fatalf("169h: %d %s", got.status, got.body)
	}
	if got := f.token(jsonToken(ak, sk, "-1h")); got.status != 400 {
		t.Fatalf("-1h: %d %s", got.status, got.body)
	}
}

func TestEveryFailedExchangeGetsTheSameAnswer(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("alice-1")
	sak, ssk := f.pair("suspended-1", suspended)
	eak, esk := f.pair("expired-1", expiresIn(-time.Minute))
	cases := map[string][2]string{
		"an unknown access key id": {"KWAKAAAAAAAAAAAAAAAA", sk},
		"a wrong secret key":       {ak, sk + "x"},
		"a suspended pair":         {sak, ssk},
		"an expired pair":          {eak, esk},
	}
	var first string
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := f.token(jsonToken(c[0], c[1], ""))
			if got.status != 401 {
				t.Fatalf("status %d, want 401", got.status)
			}
			if first == "" {
				first = got.body
			} else if got.body != first {
				t.Fatalf("answers differ: %q vs %q", got.body, first)
			}
		})
	}
}

func TestDCETokenGETIsOffByDefault(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("alice-1")
	path := "/v1/token?" + url.Values{"ak": {ak}, "sk": {sk}, "cycle": {"1"}}.Encode()
	if rec := f.do(httptest.NewRequest(http.MethodGet, path, nil)); rec.Code == 200 {
		t.Fatal("GET /v1/token answered without --enable-dce-token-get")
	}
	on := newFixture(t, func(o *Options) { o.EnableDCETokenGET = true })
	ak, sk = on.pair("alice-1")
	path = "/v1/token?" + url.Values{"ak": {ak}, "sk": {sk}, "cycle": {"1"}}.Encode()
	got := on.token(httptest.NewRequest(http.MethodGet, path, nil))
	if got.status != 200 || !got.resp.ExpiresAt.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("with the flag: %d %s", got.status, got.body)
	}
}

func TestTokensOfASuspendedOrDeletedPairAreRefused(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("alice-1")
	tok := f.token(jsonToken(ak, sk, "")).resp.Token
	check := func(want int) {
		t.Helper()
		if rec := f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("Authorization", "Bearer "+tok) })); rec.Code != want {
			t.Fatalf("status %d, want %d", rec.Code, want)
		}
	}
	check(200)
	f.pair("alice-1", suspended) // a new record replaces the pair, suspended
	check(401)
	f.s.index.Delete(hashsecret.Name(hashsecret.KindAccessKeyPair, "team-a", "alice-1"))
	check(401)
}

func TestFailedAttemptsAreLimitedPerAddress(t *testing.T) {
	f := newFixture(t)
	good := f.apiKey("good")
	bad := func(addr string) *httptest.ResponseRecorder {
		r := authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", "kw_nope") })
		r.RemoteAddr = addr
		return f.do(r)
	}
	for range 5 {
		if code := bad("198.51.100.1:1").Code; code != 401 {
			t.Fatalf("status %d before the limit", code)
		}
	}
	if rec := bad("198.51.100.1:2"); rec.Code != 429 || rec.Header().Get("Retry-After") != "10" {
		t.Fatalf("after 5 failures: %d Retry-After=%q, want 429 and 10", rec.Code, rec.Header().Get("Retry-After"))
	}
	r := authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", good) })
	r.RemoteAddr = "198.51.100.1:3"
	if code := f.do(r).Code; code != 200 {
		t.Fatalf("a valid key from the limited address: %d, want 200", code)
	}
	if code := bad("198.51.100.2:1").Code; code != 401 {
		t.Fatalf("another address was limited too: %d", code)
	}
	f.clock.Step(10 * time.Second)
	if code := bad("198.51.100.1:3").Code; code != 401 {
		t.Fatalf("after the refill: %d, want 401", code)
	}
}

func TestKeylessRequestsDoNotLockOutAGateway(t *testing.T) {
	f := newFixture(t)
	good := f.apiKey("good")
	for range 50 { // anonymous visitors behind one gateway address
		if code := f.do(authzReq("/v1/authz", nil)).Code; code != 401 {
			t.Fatalf("status %d", code)
		}
	}
	if code := f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", good) })).Code; code != 200 {
		t.Fatalf("a key holder behind the same gateway got %d", code)
	}
}

func TestSuccessesAreNeverLimited(t *testing.T) {
	f := newFixture(t)
	good := f.apiKey("good")
	for i := range 50 {
		if rec := f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", good) })); rec.Code != 200 {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
}

func TestTheSameKeyGivesTheSameIdentityThroughEveryFrontEnd(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	rec := f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("Authorization", "apk "+key) }))
	_, v := verifyBody(t, f, `{"key":"`+key+`"}`)
	body, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: key}})
	trRec := f.tokenReview(bytes.NewReader(body))
	var tr authnv1.TokenReview
	if err := json.Unmarshal(trRec.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	u := tr.Status.User
	if !tr.Status.Authenticated || u.Username != "keyward:team-a:"+v.Subject || rec.Header().Get(wire.HeaderSubject) != v.Subject ||
		strings.Join(u.Groups, ",") != "keyward:team-a:reporting,keyward:authenticated" || strings.Join(v.Groups, ",") != rec.Header().Get(wire.HeaderGroups) ||
		rec.Header().Get(wire.HeaderNamespace) != "team-a" || v.Namespace != "team-a" || len(tr.Status.Audiences) != 0 ||
		u.Extra[ExtraKeyID][0] != v.KeyID || rec.Header().Get(wire.HeaderKeyID) != v.KeyID || u.Extra[ExtraNamespace][0] != "team-a" {
		t.Fatalf("identities differ: authz %v, verify %+v, tokenreview %+v", rec.Header(), v, tr.Status)
	}
	body, _ = json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: "kw_bogus"}})
	trRec = f.tokenReview(bytes.NewReader(body))
	tr = authnv1.TokenReview{}
	_ = json.Unmarshal(trRec.Body.Bytes(), &tr)
	if tr.Status.Authenticated || tr.Status.User.Username != "" {
		t.Fatalf("a bogus token authenticated: %+v", tr.Status)
	}
}

func TestMetricsCarryNoKeyMaterial(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", key) }))
	f.do(authzReq("/v1/authz", func(h http.Header) { h.Set("X-API-Key", key+"x") }))
	verifyBody(t, f, `{"key":"`+key+`"}`)
	for _, k := range []string{key, key + "x"} {
		if _, err := (&extAuthz{s: f.s}).Check(context.Background(), envoyCheck("api.example.com", "GET", "/", map[string]string{"x-api-key": k}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "keyward_key_server_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			seen++
			for _, l := range m.GetLabel() {
				checkLabel(t, l)
				if strings.Contains(l.GetValue(), key[3:15]) {
					t.Fatalf("label %s carries key material", l.GetName())
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("no key server metrics were recorded")
	}
}

func checkLabel(t *testing.T, l *dto.LabelPair) {
	t.Helper()
	switch l.GetName() {
	case "frontend":
		switch l.GetValue() {
		case frontendAuthz, frontendVerify, frontendTokens, frontendTokenReview, frontendRotate, frontendExtAuthz:
			return
		}
	case "result", "code":
		if v := l.GetValue(); v == strings.ToUpper(v) && len(v) < 32 {
			return
		}
	case "policy": // a KeyPolicy's namespace/name, or none
		if v := l.GetValue(); v == "" || strings.Count(v, "/") == 1 && v == strings.ToLower(v) {
			return
		}
	}
	t.Fatalf("unexpected metric label %s=%q", l.GetName(), l.GetValue())
}

func TestReadyzFollowsTheCaches(t *testing.T) {
	f := newFixture(t)
	if rec := f.do(httptest.NewRequest(http.MethodGet, "/readyz", nil)); rec.Code != 503 {
		t.Fatalf("before sync: %d", rec.Code)
	}
	synced := func() bool { return true }
	f.s.synced.Store(&synced)
	if rec := f.do(httptest.NewRequest(http.MethodGet, "/readyz", nil)); rec.Code != 200 {
		t.Fatalf("after sync: %d", rec.Code)
	}
}

func TestHeadersAreBounded(t *testing.T) {
	f := newFixture(t)
	s := New(f.s.opts)
	s.opts.BindAddress = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Start(ctx) }()
	addr, err := s.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr.String()+"/v1/authz", nil)
	req.Header.Set("X-Filler", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

func TestAReadOnlyKeyIsRefusedWhenTheForwardedRequestIsUnsafe(t *testing.T) {
	f := newFixture(t)
	ro := f.apiKey("reader", readOnly)
	r := httptest.NewRequest(http.MethodPost, "/v1/authz", nil) // Envoy forwards the original method
	r.Header.Set("X-API-Key", ro)
	r.Header.Set("X-Forwarded-Method", "GET") // smuggled by the client
	if rec := f.do(r); rec.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", rec.Code)
	}
}

func TestTokenReviewFailuresAreNotRateLimited(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	review := func(tok string) bool {
		body, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}})
		rec := f.tokenReview(bytes.NewReader(body))
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		var tr authnv1.TokenReview
		_ = json.Unmarshal(rec.Body.Bytes(), &tr)
		return tr.Status.Authenticated
	}
	for range 30 { // kube-apiserver forwards every unknown bearer token
		review("some-oidc-token-that-is-not-ours")
	}
	if !review(key) {
		t.Fatal("junk tokens locked a valid key out of the API server")
	}
}

func TestATokenCarriesNoMoreThanItsPairGrantsNow(t *testing.T) {
	f := newFixture(t)
	ak, sk := f.pair("alice-1")
	tok := f.token(jsonToken(ak, sk, "")).resp.Token
	// The pair loses its scope: re-index it with the same key and none.
	f.s.index.Upsert(hashsecret.Name(hashsecret.KindAccessKeyPair, "team-a", "alice-1"), &hashsecret.Record{
		Kind: hashsecret.KindAccessKeyPair, Namespace: "team-a", Name: "alice-1", Subject: "alice",
		Current: &hashsecret.Version{ID: ak, Hash: keymaterial.Hash(sk), NotBefore: t0.Add(-time.Hour)},
		Tokens:  &hashsecret.TokenPolicy{DefaultLifetime: time.Hour},
	})
	rec := f.do(authzReq("/v1/authz?scope=reports:read", func(h http.Header) { h.Set("Authorization", "Bearer "+tok) }))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("a scope removed from the pair still passed through its token: %d", rec.Code)
	}
}

func TestTheDefaultLifetimeIsClampedToTheServerCap(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxTokenLifetime = 24 * time.Hour })
	ak, sk := f.pair("alice-1") // default 72h
	got := f.token(jsonToken(ak, sk, ""))
	if got.status != 200 || !got.resp.ExpiresAt.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("%d %s", got.status, got.body)
	}
	if got := f.token(jsonToken(ak, sk, "48h")); got.status != 400 {
		t.Fatalf("an explicit lifetime over the cap: %d", got.status)
	}
}

// rotatorFunc adapts a function to Rotator.
type rotatorFunc func(ctx context.Context, namespace, name, presentedKeyID, presentedHash string) (string, string, error)

func (f rotatorFunc) Rotate(ctx context.Context, namespace, name, presentedKeyID, presentedHash string) (string, string, error) {
	return f(ctx, namespace, name, presentedKeyID, presentedHash)
}

// The self-rotation answer comes back through the APIKey's status, which
// others may write: only a key the index validates as the same APIKey's
// new version is handed out.
func TestSelfRotationHandsOutOnlyAKeyTheIndexConfirms(t *testing.T) {
	var answer func(f *fixture) (string, string)
	var gotHash string
	var onRotate func()
	f := newFixture(t, func(o *Options) {
		o.ConfirmRotationWait = 200 * time.Millisecond
		o.SelfRotationBurst = 100 // one key rotates in every case; the limit has its own tests
		o.Rotator = rotatorFunc(func(_ context.Context, _, _, _, presentedHash string) (string, string, error) {
			gotHash = presentedHash
			onRotate()
			k, id := answer(nil)
			return k, id, nil
		})
	})
	current := f.apiKey("billing")
	mallory := f.apiKey("mallory")
	successor, _ := keymaterial.Generate("kw")
	parsed, _ := keymaterial.Parse(current)
	malloryKey, _ := keymaterial.Parse(mallory)
	cases := map[string]struct {
		answer func(*fixture) (string, string)
		index  bool // index the successor as billing's new version first
		want   int
	}{
		"another APIKey's valid key":          {answer: func(*fixture) (string, string) { return mallory, malloryKey.ID }, want: http.StatusServiceUnavailable},
		"the presented key itself":            {answer: func(*fixture) (string, string) { return current, parsed.ID }, want: http.StatusServiceUnavailable},
		"a key the index does not know":       {answer: func(*fixture) (string, string) { return successor.String(), successor.ID }, want: http.StatusServiceUnavailable},
		"the indexed successor, wrong key id": {answer: func(*fixture) (string, string) { return successor.String(), "other" }, index: true, want: http.StatusServiceUnavailable},
		"the indexed successor":               {answer: func(*fixture) (string, string) { return successor.String(), successor.ID }, index: true, want: http.StatusOK},
	}
	for _, name := range []string{"another APIKey's valid key", "the presented key itself", "a key the index does not know", "the indexed successor, wrong key id", "the indexed successor"} {
		c := cases[name]
		t.Run(name, func(t *testing.T) {
			answer = c.answer
			// The controller's rotation: the successor becomes current.
			onRotate = func() {
				if !c.index {
					return
				}
				rec := &hashsecret.Record{Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "billing", Subject: "billing-subject", Access: string(kw.AccessReadWrite),
					Current:  &hashsecret.Version{ID: successor.ID, Hash: successor.SecretHash(), NotBefore: t0},
					Previous: []hashsecret.Version{{ID: parsed.ID, Hash: parsed.SecretHash(), NotBefore: t0.Add(-time.Hour)}}}
				if err := f.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, "team-a", "billing"), rec); err != nil {
					t.Fatal(err)
				}
			}
			defer f.apiKeyAs("billing", parsed) // billing's current version again
			req := httptest.NewRequest(http.MethodPost, "/v1/keys/current/rotate", nil)
			req.Header.Set("Authorization", "Bearer "+current)
			rr := httptest.NewRecorder()
			f.s.Handler().ServeHTTP(rr, req)
			if rr.Code != c.want {
				t.Fatalf("status %d, want %d: %s", rr.Code, c.want, rr.Body)
			}
			if c.want != http.StatusOK && strings.Contains(rr.Body.String(), "kw_") {
				t.Fatalf("a refused answer leaked a key: %s", rr.Body)
			}
			if gotHash != parsed.SecretHash() {
				t.Fatal("the rotator was not given the presented version's stored hash (the proof's key)")
			}
		})
	}
}

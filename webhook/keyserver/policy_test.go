package keyserver

import (
	"encoding/json"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
)

// gatewayAddr is the gateways' address in these tests, and trustedGateways
// the --trusted-proxies that lists it.
const gatewayAddr = "10.0.0.5:4242"

var trustedGateways = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}

// forwardStyle is how one gateway sends the original request to /v1/authz,
// as docs/gateways.md configures it.
type forwardStyle struct {
	name string
	// trusted: the gateway is in --trusted-proxies.
	trusted bool
	build   func(c decisionCase, cred string) *http.Request
}

func narrowingQuery(c decisionCase) string {
	q := url.Values{}
	for _, s := range c.scopes {
		q.Add("scope", s)
	}
	for _, ns := range c.namespaces {
		q.Add("namespace", ns)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func withCred(r *http.Request, cred string) *http.Request {
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	r.RemoteAddr = gatewayAddr
	return r
}

var forwardStyles = []forwardStyle{
	{name: "Envoy (the original method, the path appended, Host the client's :authority)", build: func(c decisionCase, cred string) *http.Request {
		r := httptest.NewRequest(c.method, "/v1/authz"+c.path+narrowingQuery(c), nil)
		r.Host = c.host
		return withCred(r, cred)
	}},
	{name: "nginx (the documented block: Host, X-Forwarded-Host, both URI and method headers)", build: nginxStyle},
	{name: "nginx in --trusted-proxies", trusted: true, build: nginxStyle},
	{name: "Traefik in --trusted-proxies (Host is the key server's)", trusted: true, build: func(c decisionCase, cred string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/v1/authz"+narrowingQuery(c), nil)
		r.Host = "keyward-key-server.keyward-system.svc:8443"
		r.Header.Set("X-Forwarded-Host", c.host)
		r.Header.Set("X-Forwarded-Uri", c.path)
		r.Header.Set("X-Forwarded-Method", c.method)
		r.Header.Set("X-Forwarded-For", "198.51.100.7")
		return withCred(r, cred)
	}},
	{name: "Caddy (the client's Host, X-Forwarded-*)", build: func(c decisionCase, cred string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/v1/authz"+narrowingQuery(c), nil)
		r.Host = c.host
		r.Header.Set("X-Forwarded-Host", c.host)
		r.Header.Set("X-Forwarded-Uri", c.path)
		r.Header.Set("X-Forwarded-Method", c.method)
		return withCred(r, cred)
	}},
}

func nginxStyle(c decisionCase, cred string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/authz"+narrowingQuery(c), nil)
	r.Host = c.host
	for _, h := range []string{"X-Forwarded-Host"} {
		r.Header.Set(h, c.host)
	}
	for _, h := range []string{"X-Original-Uri", "X-Forwarded-Uri"} {
		r.Header.Set(h, c.path)
	}
	for _, h := range []string{"X-Original-Method", "X-Forwarded-Method"} {
		r.Header.Set(h, c.method)
	}
	return withCred(r, cred)
}

// TestForwardAuthDecidesEveryCase runs the shared decision cases through
// /v1/authz the way each gateway asks.
func TestForwardAuthDecidesEveryCase(t *testing.T) {
	for _, style := range forwardStyles {
		t.Run(style.name, func(t *testing.T) {
			worlds := decisionWorlds(t, func(o *Options) {
				if style.trusted {
					o.TrustedProxies = trustedGateways
				}
			})
			for _, c := range decisionCases() {
				t.Run(c.name, func(t *testing.T) {
					w := worlds[c.mode]
					checkForwardAuth(t, c, w.do(style.build(c, w.creds[c.cred])))
				})
			}
		})
	}
}

func checkForwardAuth(t *testing.T, c decisionCase, rec *httptest.ResponseRecorder) {
	t.Helper()
	h := rec.Header()
	if rec.Code != c.status {
		t.Fatalf("status %d, want %d (%s: %s)", rec.Code, c.status, h.Get(wire.HeaderCode), strings.TrimSpace(rec.Body.String()))
	}
	if got := h.Get(wire.HeaderPolicy); got != c.policy && c.status != http.StatusUnauthorized {
		t.Errorf("%s: %q, want %q", wire.HeaderPolicy, got, c.policy)
	}
	switch c.status {
	case http.StatusOK:
		if h.Get(wire.HeaderSubject) == "" || h.Get(wire.HeaderNamespace) == "" || h.Get(wire.HeaderKeyID) == "" || h.Get(wire.HeaderCode) != "" {
			t.Errorf("a 200 without the identity, or with a code: %v", h)
		}
	case http.StatusForbidden:
		if got := h.Get(wire.HeaderCode); got != string(c.code) {
			t.Errorf("%s: %q, want %q", wire.HeaderCode, got, c.code)
		}
		body := strings.TrimSuffix(rec.Body.String(), "\n")
		if !strings.HasPrefix(body, "forbidden: ") || strings.Contains(body, "\n") || len(body) > 512 {
			t.Errorf("the reason is not one line: %q", body)
		}
		if h.Get(wire.HeaderSubject) != "" || h.Get(wire.HeaderNamespace) != "" {
			t.Errorf("a refusal revealed the identity: %v", h)
		}
	case http.StatusUnauthorized:
		if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || h.Get(wire.HeaderCode) != "" || h.Get(wire.HeaderPolicy) != "" {
			t.Errorf("a 401 with %v", h)
		}
	}
}

// TestVerifyDecidesEveryCase runs the shared decision cases through
// /v1/verify with host, path and method.
func TestVerifyDecidesEveryCase(t *testing.T) {
	worlds := decisionWorlds(t)
	for _, c := range decisionCases() {
		t.Run(c.name, func(t *testing.T) {
			if len(c.namespaces) > 0 {
				t.Skip("verify has no namespace narrowing: the policy says whose keys are accepted")
			}
			w := worlds[c.mode]
			body, _ := json.Marshal(wire.VerifyRequest{Key: w.creds[c.cred], Scopes: c.scopes, Host: c.host, Path: c.path, Method: c.method})
			status, v := verifyBody(t, w.fixture, string(body))
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			checkVerify(t, c, v)
		})
	}
}

func checkVerify(t *testing.T, c decisionCase, v wire.VerifyResponse) {
	t.Helper()
	switch c.status {
	case http.StatusOK:
		if !v.Valid || v.Code != string(keyindex.Valid) || v.Policy != c.policy || v.Reason != "" || v.Namespace == "" {
			t.Errorf("got %+v, want valid, policy %q", v, c.policy)
		}
	case http.StatusForbidden:
		if v.Valid || v.Code != string(c.code) || v.Policy != c.policy || v.Reason == "" || v.Namespace == "" {
			t.Errorf("got %+v, want %s by %q with the identity and a reason", v, c.code, c.policy)
		}
	case http.StatusUnauthorized:
		if v.Valid || (v.Code != string(keyindex.NotFound) && v.Code != string(keyindex.InvalidFormat)) || v.Policy != "" || v.Namespace != "" {
			t.Errorf("got %+v, want an invalid key", v)
		}
	}
}

func TestVerifyByPolicyName(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny)
	for _, c := range []struct {
		name, cred, policy, path, method string
		valid                            bool
		code                             string
	}{
		{"the policy of the key's namespace", credTeamA, "team-a/api", "", "", true, "VALID"},
		{"another namespace's policy", credTeamB, "team-a/api", "/", "GET", false, string(keypolicy.WrongNamespace)},
		{"a rule by path and method", credTeamA, "team-b/api", "/orders", "POST", false, string(keypolicy.InsufficientScope)},
		{"a policy that lost its only host", credSandbox, "sandbox/squatter", "/", "GET", false, string(keypolicy.NoPolicy)},
		{"a policy that does not exist", credTeamA, "team-a/nothing", "/", "GET", false, string(keypolicy.NoPolicy)},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, _ := json.Marshal(wire.VerifyRequest{Key: w.creds[c.cred], Policy: c.policy, Path: c.path, Method: c.method})
			status, v := verifyBody(t, w.fixture, string(body))
			if status != http.StatusOK || v.Valid != c.valid || v.Code != c.code {
				t.Fatalf("%d %+v, want valid=%v code %s", status, v, c.valid, c.code)
			}
		})
	}
	for name, body := range map[string]string{
		"a policy and a host":           `{"key":"x","policy":"team-a/api","host":"a.example.com"}`,
		"a path without policy or host": `{"key":"x","path":"/"}`,
		"a policy without a namespace":  `{"key":"x","policy":"api"}`,
		"a policy with two slashes":     `{"key":"x","policy":"team-a/api/x"}`,
		"an over-long method":           `{"key":"x","host":"a.example.com","method":"` + strings.Repeat("G", 40) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if status, _ := verifyBody(t, w.fixture, body); status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", status)
			}
		})
	}
}

// TestVerifyWithoutPolicyOrHostAnswersValidity: a service that binds keys
// itself asks whether a key is valid, whatever --default-policy says.
func TestVerifyWithoutPolicyOrHostAnswersValidity(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny)
	_, v := verifyBody(t, w.fixture, `{"key":"`+w.creds[credTeamB]+`"}`)
	if !v.Valid || v.Code != "VALID" || v.Policy != "" || v.Namespace != "team-b" {
		t.Fatalf("%+v", v)
	}
}

// What a client behind a gateway may try, to be judged by a policy other
// than the one of the host and path the gateway serves it.
func TestTheOriginalRequestCannotBeChosenByTheClient(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny, func(o *Options) { o.TrustedProxies = trustedGateways })
	teamA, teamB := w.creds[credTeamA], w.creds[credTeamB]
	get := func(path string, peer string, cred string, h map[string][]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Host = "a.example.com"
		for k, v := range h {
			r.Header[http.CanonicalHeaderKey(k)] = v
		}
		r.Header.Set("X-Api-Key", cred)
		r.RemoteAddr = peer
		return w.do(r)
	}
	for _, c := range []struct {
		name   string
		path   string
		peer   string
		cred   string
		header map[string][]string
		status int
		code   keypolicy.Code
	}{
		{name: "X-Forwarded-Host from a peer not in --trusted-proxies is ignored", path: "/v1/authz/",
			peer: "203.0.113.9:1", cred: teamB, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}},
			status: 403, code: keypolicy.WrongNamespace},
		{name: "X-Forwarded-Host from a trusted peer is the host", path: "/v1/authz",
			peer: gatewayAddr, cred: teamB, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}, "X-Forwarded-Uri": {"/orders"}},
			status: 200},
		{name: "two X-Forwarded-Host from a trusted peer", path: "/v1/authz/",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"a.example.com", "b.example.com"}},
			status: 403, code: keypolicy.InvalidRequest},
		{name: "a comma-separated X-Forwarded-Host", path: "/v1/authz/",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"a.example.com, b.example.com"}},
			status: 403, code: keypolicy.InvalidRequest},
		{name: "the client's X-Forwarded-Uri beside the gateway's X-Original-Uri", path: "/v1/authz",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}, "X-Original-Uri": {"/admin"}, "X-Forwarded-Uri": {"/orders"}},
			status: 403, code: keypolicy.InvalidRequest},
		{name: "the client's X-Forwarded-Uri beside Envoy's appended path", path: "/v1/authz/admin",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}, "X-Forwarded-Uri": {"/orders"}},
			status: 403, code: keypolicy.InvalidRequest},
		{name: "the same path twice, written differently", path: "/v1/authz",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}, "X-Original-Uri": {"/orders?x=1"}, "X-Forwarded-Uri": {"//%6frders"}},
			status: 200},
		{name: "the client's X-Forwarded-Method beside the gateway's X-Original-Method", path: "/v1/authz",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}, "X-Forwarded-Uri": {"/orders"}, "X-Original-Method": {"POST"}, "X-Forwarded-Method": {"GET"}},
			status: 403, code: keypolicy.InvalidRequest},
		{name: "a method header unlike Envoy's method", path: "/v1/authz/orders",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}, "X-Forwarded-Method": {"POST"}},
			status: 403, code: keypolicy.InvalidRequest},
		{name: "no path on a host a policy names", path: "/v1/authz",
			peer: gatewayAddr, cred: teamA, header: map[string][]string{"X-Forwarded-Host": {"b.example.com"}},
			status: 403, code: keypolicy.InvalidRequest},
		{name: "an escaped /v1/authz prefix", path: "/v1%2Fauthz/orders",
			peer: gatewayAddr, cred: teamA, status: 403, code: keypolicy.InvalidRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(c.path, c.peer, c.cred, c.header)
			if rec.Code != c.status || rec.Header().Get(wire.HeaderCode) != string(c.code) {
				t.Fatalf("%d %s (%s), want %d %s", rec.Code, rec.Header().Get(wire.HeaderCode), strings.TrimSpace(rec.Body.String()), c.status, c.code)
			}
		})
	}
}

// Before the feed has loaded the KeyPolicies, nothing is judged by an empty
// table: under allow-valid-key that would let any valid key onto every
// host.
func TestNothingIsDecidedBeforeThePoliciesAreLoaded(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeAllowValidKey)
	w.s.SetPolicies(nil)
	r := nginxStyle(decisionCase{host: "b.example.com", path: "/admin", method: "GET"}, w.creds[credTeamA])
	if rec := w.do(r); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("forward-auth: %d, want 503", rec.Code)
	}
	if status, _ := verifyBody(t, w.fixture, `{"key":"`+w.creds[credTeamA]+`","host":"b.example.com"}`); status != http.StatusServiceUnavailable {
		t.Fatalf("verify: %d, want 503", status)
	}
	if _, v := verifyBody(t, w.fixture, `{"key":"`+w.creds[credTeamA]+`"}`); !v.Valid {
		t.Fatalf("verify without a host needs no policy: %+v", v)
	}
}

// A refusal by policy is not a failed attempt: the key is valid, and a
// client refused on one API must not lose its budget for the others.
func TestPolicyRefusalsAreNotFailedAttempts(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny) // FailureLimit 5
	for range 20 {
		r := nginxStyle(decisionCase{host: "a.example.com", path: "/", method: "GET"}, w.creds[credTeamB])
		if rec := w.do(r); rec.Code != http.StatusForbidden {
			t.Fatalf("status %d, want 403", rec.Code)
		}
	}
	r := nginxStyle(decisionCase{host: "a.example.com", path: "/", method: "GET"}, w.creds[credUnknown])
	if rec := w.do(r); rec.Code != http.StatusUnauthorized {
		t.Fatalf("after 20 refusals by policy, an unknown key got %d, want 401 (not 429)", rec.Code)
	}
}

func TestDecisionsAreCountedPerPolicyAndCode(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny)
	count := func(policy string, code keypolicy.Code) float64 {
		return testutil.ToFloat64(policyDecisions.WithLabelValues(policy, string(code)))
	}
	okBefore, wrongBefore, noneBefore := count("team-a/api", keypolicy.OK), count("team-a/api", keypolicy.WrongNamespace), count("", keypolicy.NoPolicy)
	w.do(nginxStyle(decisionCase{host: "a.example.com", path: "/", method: "GET"}, w.creds[credTeamA]))
	w.do(nginxStyle(decisionCase{host: "a.example.com", path: "/", method: "GET"}, w.creds[credTeamB]))
	w.do(nginxStyle(decisionCase{host: "a.example.com", path: "/", method: "GET"}, w.creds[credUnknown])) // 401: no decision
	w.do(nginxStyle(decisionCase{host: "nobody.example.com", path: "/", method: "GET"}, w.creds[credTeamA]))
	if got := count("team-a/api", keypolicy.OK) - okBefore; got != 1 {
		t.Errorf("OK by team-a/api counted %v times, want 1", got)
	}
	if got := count("team-a/api", keypolicy.WrongNamespace) - wrongBefore; got != 1 {
		t.Errorf("WRONG_NAMESPACE by team-a/api counted %v times, want 1", got)
	}
	if got := count("", keypolicy.NoPolicy) - noneBefore; got != 1 {
		t.Errorf("NO_POLICY counted %v times, want 1", got)
	}
	w.s.ForgetPolicy(keypolicy.Ref{Namespace: "team-a", Name: "api"})
	if n := testutil.CollectAndCount(policyDecisions); n == 0 {
		t.Fatal("every series is gone")
	}
	for _, code := range []keypolicy.Code{keypolicy.OK, keypolicy.WrongNamespace} {
		if got := count("team-a/api", code); got != 0 {
			t.Errorf("a forgotten policy's %s series still counts %v", code, got)
		}
	}
}

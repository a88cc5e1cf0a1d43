package keyserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/keypolicy"
)

// extAuthzConn starts s's gRPC ext_authz listener on loopback, over TLS
// with a certificate of a test CA unless plaintext, and returns a client
// connection to it; both stop at the end of the test.
func extAuthzConn(t *testing.T, s *Server, plaintext bool) *grpc.ClientConn {
	t.Helper()
	opts := ExtAuthzOptions{BindAddress: "127.0.0.1:0"}
	creds := insecure.NewCredentials()
	if !plaintext {
		ca, err := NewTestCA("ext_authz test CA")
		if err != nil {
			t.Fatal(err)
		}
		crt, key, err := ca.Issue("keyward-key-server", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		opts.CertDir = t.TempDir()
		writeFile(t, filepath.Join(opts.CertDir, "tls.crt"), crt)
		writeFile(t, filepath.Join(opts.CertDir, "tls.key"), key)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.PEM)
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	e := NewExtAuthzServer(s, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the ext_authz listener: %v", err)
		}
	})
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	addr, err := e.Addr(actx)
	if err != nil {
		t.Fatalf("the ext_authz listener did not bind: %v", err)
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// envoyCheck is a CheckRequest as Envoy's ext_authz filter sends it for a
// client's request: its headers lower-cased (pseudo-headers included),
// host, path and method, the downstream peer as the source, and the
// route's context extensions.
func envoyCheck(host, method, path string, headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	h := map[string]string{":authority": host, ":method": method, ":path": path, ":scheme": "https", "user-agent": "curl/8.5.0"}
	for k, v := range headers {
		h[strings.ToLower(k)] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socketAddress("198.51.100.7", 51234)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: method, Path: path, Host: host, Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: ext,
	}}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// decisionCheck is the decision case c as Envoy would ask it, the route
// asking for c's narrowing in its context extensions.
func decisionCheck(c decisionCase, cred string) *authv3.CheckRequest {
	headers := map[string]string{}
	if cred != "" {
		headers["authorization"] = "Bearer " + cred
	}
	ext := map[string]string{}
	if len(c.scopes) > 0 {
		ext[ExtensionScopes] = strings.Join(c.scopes, " ")
	}
	if len(c.namespaces) > 0 {
		ext[ExtensionNamespaces] = strings.Join(c.namespaces, " ")
	}
	return envoyCheck(c.host, c.method, c.path, headers, ext)
}

// asHTTP is what Envoy makes of a CheckResponse, as /v1/authz's answer
// would read: the status (200 for OK), and the headers of the denied
// response, or those an OK sets on the upstream request, with the body.
func asHTTP(t *testing.T, resp *authv3.CheckResponse) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	var opts []*corev3.HeaderValueOption
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("an OK response with status %v", resp.GetStatus())
		}
		rec.Code, opts = http.StatusOK, r.OkResponse.GetHeaders()
	case *authv3.CheckResponse_DeniedResponse:
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			t.Fatal("a denied response with status OK: Envoy would let the request through")
		}
		rec.Code, opts = int(r.DeniedResponse.GetStatus().GetCode()), r.DeniedResponse.GetHeaders()
		rec.Body.WriteString(r.DeniedResponse.GetBody())
	default:
		t.Fatalf("neither OK nor denied: %v", resp)
	}
	for _, o := range opts {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s is not overwritten: a client's value would stay beside it", o.GetHeader().GetKey())
		}
		rec.Header().Set(o.GetHeader().GetKey(), o.GetHeader().GetValue())
	}
	return rec
}

// TestExtAuthzDecidesEveryCase runs the decision cases /v1/authz and verify
// are held to through gRPC Check, over TLS with go-control-plane's
// generated client: the two front ends cannot decide differently.
func TestExtAuthzDecidesEveryCase(t *testing.T) {
	worlds := decisionWorlds(t)
	clients := map[*decisionWorld]authv3.AuthorizationClient{}
	for _, w := range worlds {
		if clients[w] == nil {
			clients[w] = authv3.NewAuthorizationClient(extAuthzConn(t, w.s, false))
		}
	}
	for _, c := range decisionCases() {
		t.Run(c.name, func(t *testing.T) {
			w := worlds[c.mode]
			resp, err := clients[w].Check(context.Background(), decisionCheck(c, w.creds[c.cred]))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			checkForwardAuth(t, c, asHTTP(t, resp))
			checkExtAuthzExtras(t, c, resp, w.creds[c.cred])
		})
	}
}

// checkExtAuthzExtras checks what only gRPC answers carry: the gRPC status
// by HTTP status, the dynamic metadata of an OK (and none on a refusal),
// and no key material anywhere in the answer.
func checkExtAuthzExtras(t *testing.T, c decisionCase, resp *authv3.CheckResponse, cred string) {
	t.Helper()
	if want := grpcCode(c.status); c.status != http.StatusOK && codes.Code(resp.GetStatus().GetCode()) != want {
		t.Errorf("gRPC status %v, want %v", codes.Code(resp.GetStatus().GetCode()), want)
	}
	md := resp.GetDynamicMetadata().GetFields()
	if c.status != http.StatusOK {
		if len(md) != 0 {
			t.Errorf("a refusal carries dynamic metadata %v", md)
		}
	} else {
		ok := resp.GetOkResponse()
		for _, k := range []string{MetadataSubject, MetadataNamespace, MetadataKeyID} {
			if md[k].GetStringValue() == "" {
				t.Errorf("dynamic metadata %q is empty: %v", k, md)
			}
		}
		if got := md[MetadataPolicy].GetStringValue(); got != c.policy {
			t.Errorf("dynamic metadata policy %q, want %q", got, c.policy)
		}
		for _, h := range ok.GetHeaders() {
			if slices.Contains(ok.GetHeadersToRemove(), strings.ToLower(h.GetHeader().GetKey())) {
				t.Errorf("%s is both set and removed: Envoy may remove after it sets", h.GetHeader().GetKey())
			}
		}
	}
	if cred != "" && strings.Contains(prototext.Format(resp), cred) {
		t.Error("the answer carries the credential")
	}
}

// TestExtAuthzPlaintextHealthAndReadiness: without a cert dir (make dev)
// the listener speaks plaintext gRPC; the health service reports
// NOT_SERVING until the key server's caches have synced, then SERVING, for
// the server as a whole and for the Authorization service.
func TestExtAuthzPlaintextHealthAndReadiness(t *testing.T) {
	f := newFixture(t)
	conn := extAuthzConn(t, f.s, true)
	health := healthpb.NewHealthClient(conn)
	g := gomega.NewWithT(t)
	state := func(svc string) func() healthpb.HealthCheckResponse_ServingStatus {
		return func() healthpb.HealthCheckResponse_ServingStatus {
			r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				return healthpb.HealthCheckResponse_UNKNOWN
			}
			return r.GetStatus()
		}
	}
	for _, svc := range []string{"", ExtAuthzService} {
		g.Eventually(state(svc), 5*time.Second, 50*time.Millisecond).Should(gomega.Equal(healthpb.HealthCheckResponse_NOT_SERVING), "service %q", svc)
	}
	f.s.SetSynced(func() bool { return true })
	for _, svc := range []string{"", ExtAuthzService} {
		g.Eventually(state(svc), 5*time.Second, 50*time.Millisecond).Should(gomega.Equal(healthpb.HealthCheckResponse_SERVING), "service %q", svc)
	}
	key := f.apiKey("billing")
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(),
		envoyCheck("api.example.com", "GET", "/", map[string]string{"x-api-key": key}, nil))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check over plaintext: %v %v", resp, err)
	}
}

// TestExtAuthzReadsEveryCredentialScheme: the headers /v1/authz reads the
// key from, as Envoy sends them (lower-cased), in the headers map and in
// header_map (encode_raw_headers).
func TestExtAuthzReadsEveryCredentialScheme(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
	for name, h := range map[string][2]string{
		"Authorization: Bearer":  {"authorization", "Bearer " + key},
		"Authorization: Token":   {"authorization", "Token " + key},
		"Authorization: apk":     {"authorization", "apk " + key},
		"Authorization: ApiKey":  {"authorization", "ApiKey " + key},
		"a lower-case scheme":    {"authorization", "bearer " + key},
		"the raw key":            {"authorization", key},
		"X-API-Key":              {"x-api-key", key},
		"X-API-Key, mixed case?": {"X-Api-Key", key},
	} {
		for _, raw := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "", true: " (header_map)"}[raw], func(t *testing.T) {
				req := envoyCheck("api.example.com", "GET", "/", map[string]string{h[0]: h[1]}, nil)
				if raw {
					rawHeaders(req)
				}
				resp, err := client.Check(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				rec := asHTTP(t, resp)
				if rec.Code != http.StatusOK || rec.Header().Get(wire.HeaderSubject) != "billing-subject" ||
					rec.Header().Get(wire.HeaderScopes) != "invoices:read" || rec.Header().Get(wire.HeaderGroups) != "reporting" {
					t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
				}
			})
		}
	}
}

// rawHeaders moves req's headers to header_map, as Envoy sends them with
// encode_raw_headers: raw values, one entry per value.
func rawHeaders(req *authv3.CheckRequest, extra ...[2]string) {
	h := req.GetAttributes().GetRequest().GetHttp()
	hm := &corev3.HeaderMap{}
	for k, v := range h.GetHeaders() {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	for _, e := range extra {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: e[0], RawValue: []byte(e[1])})
	}
	h.Headers, h.HeaderMap = nil, hm
}

// TestExtAuthzContextExtensions: the route names the policy, and narrows
// by scopes and namespaces; a typo under keyward.dev/ refuses everything
// rather than narrowing nothing.
func TestExtAuthzContextExtensions(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny)
	client := authv3.NewAuthorizationClient(extAuthzConn(t, w.s, false))
	bearer := func(cred string) map[string]string {
		return map[string]string{"authorization": "Bearer " + w.creds[cred]}
	}
	for _, c := range []struct {
		name       string
		cred, host string
		ext        map[string]string
		status     int
		code       keypolicy.Code
		policy     string
	}{
		{"the route's policy decides on a host no policy names", credTeamA, "internal.example.com",
			map[string]string{ExtensionPolicy: "team-a/api"}, 200, "", "team-a/api"},
		{"the route's policy refuses another namespace's key", credTeamB, "internal.example.com",
			map[string]string{ExtensionPolicy: "team-a/api"}, 403, keypolicy.WrongNamespace, "team-a/api"},
		{"the route's policy, not the host's", credTeamA, "a.example.com",
			map[string]string{ExtensionPolicy: "team-b/keys-only"}, 200, "", "team-b/keys-only"},
		{"a policy that does not exist refuses", credTeamA, "a.example.com",
			map[string]string{ExtensionPolicy: "team-a/nothing"}, 403, keypolicy.NoPolicy, ""},
		{"a scope the key lacks", credTeamA, "a.example.com",
			map[string]string{ExtensionScopes: "orders:read orders:write"}, 403, keypolicy.InsufficientScope, "team-a/api"},
		{"scopes the key holds", credTeamB, "b.example.com",
			map[string]string{ExtensionScopes: "orders:read  orders:write"}, 200, "", "team-b/api"},
		{"a namespace list without the key's", credTeamA, "b.example.com",
			map[string]string{ExtensionNamespaces: "team-b team-c"}, 403, keypolicy.WrongNamespace, "team-b/api"},
		{"other extensions are the gateway's business", credTeamA, "a.example.com",
			map[string]string{"envoy.example/route": "x"}, 200, "", "team-a/api"},
		{"a typo refuses", credTeamA, "a.example.com",
			map[string]string{"keyward.dev/scope": "orders:write"}, 500, "", ""},
		{"a policy name without a namespace refuses", credTeamA, "a.example.com",
			map[string]string{ExtensionPolicy: "api"}, 500, "", ""},
		{"too many scopes refuse", credTeamA, "a.example.com",
			map[string]string{ExtensionScopes: strings.Repeat("s ", maxScopesAsked+1)}, 500, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := client.Check(context.Background(), envoyCheck(c.host, "GET", "/orders", bearer(c.cred), c.ext))
			if err != nil {
				t.Fatal(err)
			}
			rec := asHTTP(t, resp)
			if rec.Code != c.status || rec.Header().Get(wire.HeaderCode) != string(c.code) || rec.Header().Get(wire.HeaderPolicy) != c.policy {
				t.Fatalf("%d %s %q (%s), want %d %s %q", rec.Code, rec.Header().Get(wire.HeaderCode), rec.Header().Get(wire.HeaderPolicy),
					strings.TrimSpace(rec.Body.String()), c.status, c.code, c.policy)
			}
		})
	}
}

// TestExtAuthzTheOriginalRequestsQueryIsNotAskedFor: /v1/authz reads
// ?scope= and ?namespace= from its own query, which under Envoy's HTTP mode
// is the client's; gRPC reads narrowing from the route only, and the
// client's query is part of the path it judges, nothing more.
func TestExtAuthzTheOriginalRequestsQueryIsNotAskedFor(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny)
	client := authv3.NewAuthorizationClient(extAuthzConn(t, w.s, false))
	resp, err := client.Check(context.Background(), envoyCheck("a.example.com", "GET", "/orders?scope=nothing&namespace=team-z",
		map[string]string{"authorization": "Bearer " + w.creds[credTeamA]}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if rec := asHTTP(t, resp); rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// TestExtAuthzBounds: a CheckRequest larger than the listener takes is
// refused before it is decoded (Envoy then denies, status_on_error); more
// headers, or more header bytes, than the key server judges answer 431.
func TestExtAuthzBounds(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
	auth := map[string]string{"authorization": "Bearer " + key}

	huge := envoyCheck("api.example.com", "GET", "/", auth, nil)
	huge.Attributes.Request.Http.Headers["cookie"] = strings.Repeat("c", maxCheckRequestBytes)
	if _, err := client.Check(context.Background(), huge); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a %d KiB CheckRequest: %v, want ResourceExhausted", maxCheckRequestBytes>>10, err)
	}

	big := envoyCheck("api.example.com", "GET", "/", auth, nil)
	big.Attributes.Request.Http.Headers["cookie"] = strings.Repeat("c", maxCheckHeaderBytes)
	many := envoyCheck("api.example.com", "GET", "/", auth, nil)
	for i := range maxCheckHeaders {
		many.Attributes.Request.Http.Headers["x-h"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	for name, req := range map[string]*authv3.CheckRequest{"header bytes": big, "headers": many} {
		resp, err := client.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if rec := asHTTP(t, resp); rec.Code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("too many %s: %d, want 431", name, rec.Code)
		}
	}
	ok := envoyCheck("api.example.com", "GET", "/", auth, nil)
	ok.Attributes.Request.Http.Headers["cookie"] = strings.Repeat("c", 32<<10)
	if resp, err := client.Check(context.Background(), ok); err != nil || resp.GetOkResponse() == nil {
		t.Errorf("32 KiB of cookies (below Envoy's own 60 KiB): %v %v", err, resp.GetStatus())
	}
}

// TestExtAuthzReloadsARotatedCertificate: the listener serves the
// certificate in its cert dir as it is now (certwatcher), so a rotated
// serving certificate needs no restart.
func TestExtAuthzReloadsARotatedCertificate(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	issue := func(name string) *x509.CertPool {
		ca, err := NewTestCA(name)
		if err != nil {
			t.Fatal(err)
		}
		crt, key, err := ca.Issue("keyward-key-server", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		// The key first: certwatcher reads the pair when the certificate changes.
		writeFile(t, filepath.Join(dir, "tls.key"), key)
		writeFile(t, filepath.Join(dir, "tls.crt"), crt)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.PEM)
		return pool
	}
	first := issue("first CA")
	e := NewExtAuthzServer(f.s, ExtAuthzOptions{BindAddress: "127.0.0.1:0", CertDir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr, err := e.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	healthy := func(pool *x509.CertPool) error {
		conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_, err = healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := healthy(first); err != nil {
		t.Fatalf("with the first certificate: %v", err)
	}
	second := issue("second CA")
	gomega.NewWithT(t).Eventually(func() error { return healthy(second) }, 30*time.Second, 100*time.Millisecond).Should(gomega.Succeed())
	if err := healthy(first); err == nil {
		t.Fatal("the first certificate is still served")
	}
}

// TestExtAuthzRateLimitedKey: a key's own rate limit through Check, as
// /v1/authz answers it: the RateLimit headers to the client on a pass
// (response_headers_to_add) and on the 429, with Retry-After and the code
// RATE_LIMITED.
func TestExtAuthzRateLimitedKey(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing", limitOf(2, time.Minute))
	client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
	check := func() *authv3.CheckResponse {
		t.Helper()
		resp, err := client.Check(context.Background(), envoyCheck("api.example.com", "GET", "/", map[string]string{"authorization": "Bearer " + key}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i, want := range []string{`"key";r=1;t=30`, `"key";r=0;t=60`} {
		ok := check().GetOkResponse()
		if ok == nil {
			t.Fatalf("request %d refused", i+1)
		}
		got := map[string]string{}
		for _, o := range ok.GetResponseHeadersToAdd() {
			got[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		if got["RateLimit-Policy"] != `"key";q=2;w=60` || got["RateLimit"] != want {
			t.Errorf("request %d: headers to the client %v, want RateLimit %s", i+1, got, want)
		}
	}
	resp := check()
	rec := asHTTP(t, resp)
	h := rec.Header()
	if rec.Code != http.StatusTooManyRequests || h.Get("Retry-After") != "30" || h.Get(wire.HeaderCode) != "RATE_LIMITED" ||
		h.Get("RateLimit") != `"key";r=0;t=30` || h.Get("RateLimit-Policy") != `"key";q=2;w=60` ||
		!strings.HasPrefix(rec.Body.String(), "too many requests: ") || codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Errorf("the third request in a minute: %d %v %q", rec.Code, h, rec.Body)
	}
	f.clock.Step(30 * time.Second)
	if check().GetOkResponse() == nil {
		t.Fatal("refused after Retry-After")
	}
}

// TestExtAuthzKeyAndPolicyLimitsBothApply: attack 15.7 through Check. A key
// whose own limit is 1000 a minute under a KeyPolicy of 2 a minute per key
// gets 429 on the 3rd request, with both limits in the headers to the
// client and the policy's Retry-After.
func TestExtAuthzKeyAndPolicyLimitsBothApply(t *testing.T) {
	f := newFixture(t)
	f.s.SetPolicies(keypolicy.NewTable([]*keypolicy.Policy{policyWithLimits("invoices", "api.example.com",
		&kw.RateLimit{Requests: 2, Period: metav1.Duration{Duration: time.Minute}})}))
	key := f.apiKey("greedy", limitOf(1000, time.Minute))
	client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
	check := func() *authv3.CheckResponse {
		t.Helper()
		resp, err := client.Check(context.Background(), envoyCheck("api.example.com", "GET", "/", map[string]string{"authorization": "Bearer " + key}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	const policy = `"key";q=1000;w=60, "policy";q=2;w=60`
	for i, want := range []string{`"key";r=999;t=1, "policy";r=1;t=30`, `"key";r=998;t=1, "policy";r=0;t=60`} {
		ok := check().GetOkResponse()
		if ok == nil {
			t.Fatalf("request %d refused", i+1)
		}
		got := map[string]string{}
		for _, o := range ok.GetResponseHeadersToAdd() {
			got[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		if got["RateLimit-Policy"] != policy || got["RateLimit"] != want {
			t.Errorf("request %d: headers to the client %v, want RateLimit %s", i+1, got, want)
		}
	}
	resp := check()
	rec := asHTTP(t, resp)
	h := rec.Header()
	if rec.Code != http.StatusTooManyRequests || h.Get("Retry-After") != "30" || h.Get(wire.HeaderCode) != "RATE_LIMITED" ||
		h.Get("RateLimit") != `"key";r=997;t=1, "policy";r=0;t=30` || h.Get("RateLimit-Policy") != policy ||
		!strings.Contains(rec.Body.String(), "KeyPolicy billing/invoices") {
		t.Errorf("the third request in a minute: %d %v %q", rec.Code, h, rec.Body)
	}
}

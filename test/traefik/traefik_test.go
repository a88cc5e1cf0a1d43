// Package traefik_test runs the Traefik ForwardAuth configuration of
// docs/gateways.md (the file provider block), as written there, in a real
// Traefik in front of a real key server, and checks what a client gets
// through it.
//
// It needs a Traefik binary: TRAEFIK_BIN, or the one hack/traefik.sh builds
// and caches. Building it takes about 10 minutes, so `make test` (and CI)
// never does: without a binary this test skips, in CI too. `make
// test-gateways` builds it and runs this test with nginx's and Caddy's.
// Traefik runs as the test's user, with every file it reads in the test's
// temporary directory and its version check and usage report off.
package traefik_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/test/gatewaytest"
	"github.com/keyward/keyward/webhook/keyserver"
)

const (
	// docPath is the document whose file-provider block this test runs.
	docPath = "../../docs/gateways.md"
	// docMarker is the first line of that block.
	docMarker = "# Keyward forward-auth for Traefik (file provider)."
	// toolsMod pins the Traefik that hack/traefik.sh builds.
	toolsMod = "../../hack/tools/traefik/go.mod"

	// What the documented block names, replaced by the test's own, and how
	// often each occurs there. The key server's address stays as written:
	// Traefik reaches it through a CONNECT proxy (see startKeyServerProxy),
	// so the block's name is the one its certificate is checked against.
	docCA  = "ca: /etc/traefik/keyward-ca.crt"
	docApp = "url: http://billing.billing.svc:8080"
	// docHost is the host the block routes; requests carry it.
	docHost = "billing.example.com"
	// docPolicy is the KeyPolicy the key server holds for docHost (in
	// startPolicyKeyServer), of namespace docPolicyNamespace.
	docPolicy          = docPolicyNamespace + "/api"
	docPolicyNamespace = "billing"

	failureBurst   = 8
	requestTimeout = 5 * time.Second
	startTimeout   = 30 * time.Second
)

// TestTraefikForwardAuth checks the documented block's decisions in front
// of a key server as installed (--default-policy=deny) with a KeyPolicy for
// the documented host and Traefik in --trusted-proxies: refusals with the
// key server's answer, the identity and policy upstream, ReadOnly keys, the
// scope-protected path, the public one, and the key server's 429.
func TestTraefikForwardAuth(t *testing.T) {
	bin := lookTraefik(t)
	dir := t.TempDir()
	ks := startPolicyKeyServer(t, dir, true)
	up := gatewaytest.StartRecorder(t)
	base := startTraefik(t, bin, dir, gatewaytest.DocumentedBlock(t, docPath, "yaml", docMarker), ks, up.Addr)
	c := &http.Client{Timeout: requestTimeout}

	rw := ks.Add(t, gatewaytest.Key{
		Namespace: "team-a", Name: "reporter", Subject: "reporter",
		Groups: []string{"reporting"}, Scopes: []string{"invoices:read"},
	})
	ro := ks.Add(t, gatewaytest.Key{
		Namespace: "team-a", Name: "dashboard", Subject: "dashboard",
		Scopes: []string{"invoices:read"}, Access: kw.AccessReadOnly,
	})
	writer := ks.Add(t, gatewaytest.Key{
		Namespace: "team-b", Name: "invoicer", Subject: "invoicer",
		Scopes: []string{"invoices:read", "invoices:write"},
	})
	outsider := ks.Add(t, gatewaytest.Key{Namespace: "sandbox", Name: "client", Subject: "client"})

	t.Run("no key: the key server's 401 with WWW-Authenticate, upstream not called", func(t *testing.T) {
		before := up.Hits()
		r := do(t, c, http.MethodGet, base+"/orders", nil)
		r.want(t, http.StatusUnauthorized)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("WWW-Authenticate = %q, want the key server's Bearer challenge", r.header.Get("WWW-Authenticate"))
		}
		if up.Hits() != before {
			t.Error("the upstream was called without a key")
		}
	})

	t.Run("a valid key: 200, the upstream sees the identity", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"Authorization": "Bearer " + rw.Plaintext},
			{"X-API-Key": rw.Plaintext},
		} {
			do(t, c, http.MethodGet, base+"/orders", h).want(t, http.StatusOK)
			if problems := gatewaytest.OnlyHeaders(up.Last(), rw.HeadersBy(docPolicy)); len(problems) > 0 {
				t.Errorf("the upstream saw:\n%s", strings.Join(problems, "\n"))
			}
		}
	})

	t.Run("a ReadOnly key with POST, claiming X-Forwarded-Method GET: 403", func(t *testing.T) {
		before := up.Hits()
		do(t, c, http.MethodPost, base+"/orders", map[string]string{"X-API-Key": ro.Plaintext, "X-Forwarded-Method": "GET"}).
			want(t, http.StatusForbidden)
		do(t, c, http.MethodDelete, base+"/orders", map[string]string{"X-API-Key": ro.Plaintext}).want(t, http.StatusForbidden)
		if up.Hits() != before {
			t.Error("the upstream was called for a ReadOnly key's POST or DELETE")
		}
		do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": ro.Plaintext}).want(t, http.StatusOK)
		do(t, c, http.MethodPost, base+"/orders", map[string]string{"X-API-Key": rw.Plaintext}).want(t, http.StatusOK)
	})

	t.Run("the path requiring invoices:write: 403 without the scope, 200 with it", func(t *testing.T) {
		do(t, c, http.MethodGet, base+"/invoices/42", map[string]string{"X-API-Key": rw.Plaintext}).want(t, http.StatusForbidden)
		do(t, c, http.MethodGet, base+"/invoices/42", map[string]string{"X-API-Key": writer.Plaintext}).want(t, http.StatusOK)
		if problems := gatewaytest.OnlyHeaders(up.Last(), writer.HeadersBy(docPolicy)); len(problems) > 0 {
			t.Errorf("the upstream saw:\n%s", strings.Join(problems, "\n"))
		}
	})

	t.Run("the public path: 200 without a key", func(t *testing.T) {
		do(t, c, http.MethodGet, base+"/healthz", nil).want(t, http.StatusOK)
	})

	t.Run("a key of a namespace the policy does not accept: the key server's 403 WRONG_NAMESPACE", func(t *testing.T) {
		before := up.Hits()
		r := do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": outsider.Plaintext})
		r.want(t, http.StatusForbidden)
		if got := r.header.Get(wire.HeaderCode); got != string(keypolicy.WrongNamespace) {
			t.Errorf("%s = %q, want %s (body %q)", wire.HeaderCode, got, keypolicy.WrongNamespace, r.body)
		}
		if up.Hits() != before {
			t.Error("the upstream was called")
		}
	})

	// Last: it uses up the failure limit of Traefik's address.
	t.Run("too many failures: the key server's 429 with Retry-After", func(t *testing.T) {
		unknown, err := keymaterial.Generate("kw") // well-formed, never indexed
		if err != nil {
			t.Fatal(err)
		}
		var r response
		for i := 0; i <= failureBurst; i++ {
			r = do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": unknown.String()})
		}
		r.want(t, http.StatusTooManyRequests)
		if r.header.Get("Retry-After") == "" {
			t.Error("a 429 must carry Retry-After")
		}
		// A valid key is answered before any limit.
		do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": rw.Plaintext}).want(t, http.StatusOK)
	})
}

// TestTraefikOutsideTrustedProxies: Traefik's check request is addressed to
// the key server, so its Host is the key server's name; the original host
// is only in X-Forwarded-Host, which the key server believes only from
// --trusted-proxies. Without Traefik listed, no request is judged by the
// documented host's KeyPolicy: under deny, a valid key gets NO_POLICY.
func TestTraefikOutsideTrustedProxies(t *testing.T) {
	bin := lookTraefik(t)
	dir := t.TempDir()
	ks := startPolicyKeyServer(t, dir, false)
	up := gatewaytest.StartRecorder(t)
	base := startTraefik(t, bin, dir, gatewaytest.DocumentedBlock(t, docPath, "yaml", docMarker), ks, up.Addr)
	c := &http.Client{Timeout: requestTimeout}
	k := ks.Add(t, gatewaytest.Key{Namespace: docPolicyNamespace, Name: "reporter", Subject: "reporter"})

	r := do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": k.Plaintext})
	r.want(t, http.StatusForbidden)
	if got := r.header.Get(wire.HeaderCode); got != string(keypolicy.NoPolicy) {
		t.Errorf("%s = %q, want %s (body %q)", wire.HeaderCode, got, keypolicy.NoPolicy, r.body)
	}
	if up.Hits() != 0 {
		t.Error("the upstream was called")
	}
}

// startPolicyKeyServer starts a key server as installed
// (--default-policy=deny) holding docPolicy, a KeyPolicy for docHost that
// accepts the keys of team-a and team-b; trusted lists loopback, where
// Traefik runs, in --trusted-proxies.
func startPolicyKeyServer(t *testing.T, dir string, trusted bool) *gatewaytest.KeyServer {
	t.Helper()
	ks := gatewaytest.StartKeyServer(t, dir, failureBurst, func(o *keyserver.Options) {
		o.DefaultPolicy = keypolicy.ModeDeny
		if trusted {
			var err error
			if o.TrustedProxies, err = keyserver.ParseTrustedProxies("127.0.0.0/8"); err != nil {
				t.Fatal(err)
			}
		}
	})
	ks.Server.SetPolicies(keypolicy.Build([]kw.KeyPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: docPolicyNamespace, Name: "api", Generation: 1,
			CreationTimestamp: metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))},
		Spec: kw.KeyPolicySpec{
			Hosts: []kw.Hostname{docHost},
			Keys:  &kw.KeyPolicyKeys{Namespaces: []string{"team-a", "team-b"}},
		},
	}}))
	return ks
}

// TestAttack7ForgedIdentityAtTheGateway sends a forged identity through the
// documented block (issue 12, attack 7): X-Keyward-* headers in other
// cases, repeated, unknown to the key server, and aliased with "_", "." or
// "~". The upstream must see only what the key server set.
func TestAttack7ForgedIdentityAtTheGateway(t *testing.T) {
	bin := lookTraefik(t)
	dir := t.TempDir()
	ks := gatewaytest.StartKeyServer(t, dir, failureBurst)
	up := gatewaytest.StartRecorder(t)
	base := startTraefik(t, bin, dir, gatewaytest.DocumentedBlock(t, docPath, "yaml", docMarker), ks, up.Addr)
	gatewaytest.CheckForgedIdentity(t, gatewaytest.Gateway{
		Base: base, Host: docHost, Protected: "/orders", Public: "/healthz",
	}, up, ks)
}

// TestAttack11APIKeyAliasAtTheGateway sends a valid key in Authorization
// and another credential under a name that PHP, CGI and WSGI upstreams read
// as X-API-Key (issue 12, attack 11). The key server refuses such a request
// with 400 if it sees the alias; through the documented block it must, so
// the alias never reaches the upstream unchecked.
func TestAttack11APIKeyAliasAtTheGateway(t *testing.T) {
	bin := lookTraefik(t)
	dir := t.TempDir()
	ks := gatewaytest.StartKeyServer(t, dir, failureBurst)
	up := gatewaytest.StartRecorder(t)
	base := startTraefik(t, bin, dir, gatewaytest.DocumentedBlock(t, docPath, "yaml", docMarker), ks, up.Addr)
	c := &http.Client{Timeout: requestTimeout}
	k := ks.Add(t, gatewaytest.Key{Namespace: "team-a", Name: "reporter", Subject: "reporter"})

	for _, alias := range []string{"X_API_Key", "X.API.Key", "X-API_Key"} {
		t.Run(alias, func(t *testing.T) {
			before := up.Hits()
			do(t, c, http.MethodGet, base+"/orders", map[string]string{
				"Authorization": "Bearer " + k.Plaintext, alias: "kw_unchecked",
			}).want(t, http.StatusBadRequest)
			if up.Hits() != before {
				t.Errorf("the upstream received %s beside the checked key", alias)
			}
		})
	}
}

// lookTraefik is TRAEFIK_BIN, or the binary hack/traefik.sh caches for the
// pinned version; the test skips without one, in CI too: CI does not build
// Traefik (make test-gateways does).
func lookTraefik(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TRAEFIK_BIN"); bin != "" {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("TRAEFIK_BIN=%s: %v", bin, err)
		}
		return bin
	}
	cached := cachedBinary(t)
	if _, err := exec.LookPath(cached); err != nil {
		t.Skipf("no Traefik: set TRAEFIK_BIN, or run `make test-gateways` (it builds %s once, about 10 minutes)", cached)
	}
	return cached
}

// cachedBinary is where hack/traefik.sh puts the version hack/tools/traefik
// pins.
func cachedBinary(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile(toolsMod)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/traefik/traefik/v3 (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatalf("%s requires no github.com/traefik/traefik/v3", toolsMod)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skipf("no Traefik: no home directory for the cache (%v); set TRAEFIK_BIN", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "keyward-tools", "traefik-"+string(m[1]), "traefik")
}

// startTraefik runs the documented block, with the test's CA and upstream,
// in a Traefik of its own whose calls to the key server's documented name
// reach ks, and returns its base URL (requests need Host: docHost).
func startTraefik(t *testing.T, bin, dir, block string, ks *gatewaytest.KeyServer, appAddr string) string {
	t.Helper()
	block = gatewaytest.ReplaceN(t, block, docCA, "ca: "+ks.CAFile, -1)
	block = gatewaytest.ReplaceN(t, block, docApp, "url: http://"+appAddr, -1)
	if !strings.Contains(block, "https://"+gatewaytest.KeyServerName+":8443/") {
		t.Fatalf("the documented Traefik block does not call https://%s:8443/", gatewaytest.KeyServerName)
	}
	proxy := startKeyServerProxy(t, gatewaytest.KeyServerName+":8443", ks.Addr)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before Traefik binds it
		port := gatewaytest.FreePort(t)
		base, err := runTraefik(t, bin, dir, block, port, proxy)
		if err == nil {
			return base
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatal(lastErr)
	return ""
}

func runTraefik(t *testing.T, bin, dir, block string, port int, proxy *connectProxy) (string, error) {
	t.Helper()
	home := filepath.Join(dir, fmt.Sprintf("traefik-%d", port))
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	dynamic := filepath.Join(home, "dynamic.yml")
	gatewaytest.WriteFile(t, dynamic, []byte(block))
	// One entry point, which the block's routers (naming none) use; no
	// dashboard, no version check, no usage report.
	static := fmt.Sprintf(`global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:%d"
providers:
  file:
    filename: %q
    watch: false
log:
  level: INFO
  noColor: true
`, port, dynamic)
	staticFile := filepath.Join(home, "traefik.yml")
	gatewaytest.WriteFile(t, staticFile, []byte(static))

	cmd := exec.Command(bin, "--configFile="+staticFile)
	cmd.Dir = home
	cmd.Env = append(withoutProxies(os.Environ()), "HOME="+home, "HTTPS_PROXY="+proxy.url)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Traefik listens before the file provider's routers are in place (it
	// answers 404 until then): ready is the key server's 401 for a request
	// without a key, which costs no failed attempt and shows that Traefik
	// reaches the key server by its documented name and trusts its CA.
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := &http.Client{Timeout: time.Second}
	routed := func() error {
		req, err := http.NewRequest(http.MethodGet, base+"/orders", nil)
		if err != nil {
			return err
		}
		req.Host = docHost
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("last answer %s", resp.Status)
		}
		return nil
	}
	if err := gatewaytest.StartProcess(t, "traefik", cmd, startTimeout, routed, func() string {
		return fmt.Sprintf("dynamic configuration:\n%s\ntraefik output:\n%s", block, out.String())
	}); err != nil {
		return "", err
	}
	return base, nil
}

// withoutProxies is env without proxy settings, so that only the test's
// HTTPS_PROXY applies to Traefik.
func withoutProxies(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// connectProxy is an HTTP CONNECT proxy that opens tunnels to one name
// only, at the key server's real address: it stands in for the cluster's
// DNS. Traefik's ForwardAuth client honours HTTPS_PROXY (and never proxies
// loopback addresses, so the upstream is reached directly), which lets the
// documented address and its TLS name stay as written.
type connectProxy struct {
	url string
}

func startKeyServerProxy(t *testing.T, name, target string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{url: "http://" + ln.Addr().String()}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	srv := &http.Server{ReadHeaderTimeout: requestTimeout, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != name {
			t.Errorf("the proxy was asked for %s %s; only CONNECT %s is expected", r.Method, r.Host, name)
			http.Error(w, "not this proxy's name", http.StatusForbidden)
			return
		}
		backend, err := net.DialTimeout("tcp", target, requestTimeout)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		client, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			_ = backend.Close()
			return
		}
		track(client)
		track(backend)
		if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			_ = client.Close()
			_ = backend.Close()
			return
		}
		go func() {
			// buf holds what the client sent after the CONNECT line.
			_, _ = io.Copy(backend, buf.Reader)
			_ = backend.Close()
		}()
		_, _ = io.Copy(client, backend)
		_ = client.Close()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return p
}

// syncBuffer is Traefik's output, written by the process's copier
// goroutines and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) want(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %q", r.status, status, r.body)
	}
}

// do sends one request through Traefik, for the documented host, bounded
// by the client's timeout. Header names are sent as written.
func do(t *testing.T, c *http.Client, method, url string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = docHost
	for k, v := range header {
		req.Header[k] = []string{v}
	}
	resp, err := c.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s %s: no answer within %v", method, url, requestTimeout)
		}
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// Package caddy_test runs the Caddy forward_auth configuration of
// docs/gateways.md, as written there, in a real Caddy in front of a real key
// server, and checks what a client gets through it.
//
// It needs a caddy binary on PATH (Debian's package; .ci/install-caddy.sh
// installs it). Without one it skips, except in CI (CI=true), where it
// fails. Caddy runs as the test's user, with its admin endpoint off and
// every file it writes in the test's temporary directory.
package caddy_test

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
	"strings"
	"testing"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/test/gatewaytest"
)

const (
	// docPath is the document whose Caddyfile block this test runs.
	docPath = "../../docs/gateways.md"
	// docMarker is the first line of that block.
	docMarker = "# Keyward forward-auth for Caddy."

	// What the documented block names, replaced by the test's own, and how
	// often each occurs there.
	docSite      = "http://:8080 {"
	docKeyServer = "https://keyward-key-server.keyward-system.svc:8443"
	docApp       = "reverse_proxy app.default.svc:8080"
	docCA        = "/etc/caddy/keyward-ca.crt"
	// keyServerUses is how many forward_auth blocks the document has.
	keyServerUses = 2
	appUses       = 3

	failureBurst   = 8
	requestTimeout = 5 * time.Second
	startTimeout   = 15 * time.Second
)

// TestCaddyForwardAuth checks the documented block's decisions: refusals
// with the key server's answer, the identity upstream, ReadOnly keys, the
// scope-protected path and the public one.
func TestCaddyForwardAuth(t *testing.T) {
	bin := lookCaddy(t)
	dir := t.TempDir()
	ks := gatewaytest.StartKeyServer(t, dir, failureBurst)
	up := gatewaytest.StartRecorder(t)
	base := startCaddy(t, bin, dir, gatewaytest.DocumentedBlock(t, docPath, "caddyfile", docMarker), ks.Addr, up.Addr, ks.CAFile)
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

	t.Run("no key: 401 with the key server's WWW-Authenticate, upstream not called", func(t *testing.T) {
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
		do(t, c, http.MethodGet, base+"/orders", map[string]string{"Authorization": "Bearer " + rw.Plaintext}).want(t, http.StatusOK)
		if problems := gatewaytest.OnlyHeaders(up.Last(), rw.Headers()); len(problems) > 0 {
			t.Errorf("the upstream saw:\n%s", strings.Join(problems, "\n"))
		}
	})

	t.Run("a ReadOnly key with POST, claiming X-Forwarded-Method GET: 403", func(t *testing.T) {
		before := up.Hits()
		do(t, c, http.MethodPost, base+"/orders", map[string]string{"X-API-Key": ro.Plaintext, "X-Forwarded-Method": "GET"}).
			want(t, http.StatusForbidden)
		if up.Hits() != before {
			t.Error("the upstream was called for a ReadOnly key's POST")
		}
		do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": ro.Plaintext}).want(t, http.StatusOK)
	})

	t.Run("the path requiring invoices:write: 403 without the scope, 200 with it", func(t *testing.T) {
		do(t, c, http.MethodGet, base+"/invoices/42", map[string]string{"X-API-Key": rw.Plaintext}).want(t, http.StatusForbidden)
		do(t, c, http.MethodGet, base+"/invoices/42", map[string]string{"X-API-Key": writer.Plaintext}).want(t, http.StatusOK)
		if problems := gatewaytest.OnlyHeaders(up.Last(), writer.Headers()); len(problems) > 0 {
			t.Errorf("the upstream saw:\n%s", strings.Join(problems, "\n"))
		}
	})

	t.Run("the public path: 200 without a key", func(t *testing.T) {
		do(t, c, http.MethodGet, base+"/healthz", nil).want(t, http.StatusOK)
	})

	// Last: it uses up the failure limit of Caddy's address.
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
	})
}

// TestAttack7ForgedIdentityAtTheGateway sends a forged identity through the
// documented block (issue 12, attack 7): X-Keyward-* headers in other
// cases, repeated, unknown to the key server, and aliased with "_", "." or
// "~". The upstream must see only what the key server set.
func TestAttack7ForgedIdentityAtTheGateway(t *testing.T) {
	bin := lookCaddy(t)
	dir := t.TempDir()
	ks := gatewaytest.StartKeyServer(t, dir, failureBurst)
	up := gatewaytest.StartRecorder(t)
	base := startCaddy(t, bin, dir, gatewaytest.DocumentedBlock(t, docPath, "caddyfile", docMarker), ks.Addr, up.Addr, ks.CAFile)
	gatewaytest.CheckForgedIdentity(t, gatewaytest.Gateway{Base: base, Protected: "/orders", Public: "/healthz"}, up, ks)
}

func lookCaddy(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("caddy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("caddy is not on PATH; CI must run .ci/install-caddy.sh before the tests")
		}
		t.Skip("caddy is not on PATH: run .ci/install-caddy.sh (as root) to install it")
	}
	return bin
}

// startCaddy runs the documented block, pointed at the test's key server,
// upstream and CA, in a Caddy of its own, and returns its base URL.
func startCaddy(t *testing.T, bin, dir, block, keyServerAddr, appAddr, caFile string) string {
	t.Helper()
	block = gatewaytest.ReplaceN(t, block, docKeyServer, "https://"+keyServerAddr, keyServerUses)
	block = gatewaytest.ReplaceN(t, block, docCA, caFile, keyServerUses)
	block = gatewaytest.ReplaceN(t, block, docApp, "reverse_proxy "+appAddr, appUses)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before Caddy binds it
		port := gatewaytest.FreePort(t)
		// Any host, as documented, on loopback only.
		conf := gatewaytest.ReplaceN(t, block, docSite, fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1", port), 1)
		base, err := runCaddy(t, bin, dir, conf, port)
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

func runCaddy(t *testing.T, bin, dir, block string, port int) (string, error) {
	t.Helper()
	home := filepath.Join(dir, fmt.Sprintf("caddy-%d", port))
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	// No admin endpoint (it would listen on :2019, shared by every Caddy on
	// the machine) and nothing written outside home (the autosaved
	// configuration goes under XDG_CONFIG_HOME).
	conf := fmt.Sprintf(`{
	admin off
	storage file_system %s
}

%s`, filepath.Join(home, "data"), block)
	confFile := filepath.Join(home, "Caddyfile")
	gatewaytest.WriteFile(t, confFile, []byte(conf))

	cmd := exec.Command(bin, "run", "--config", confFile, "--adapter", "caddyfile")
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := gatewaytest.StartProcess(t, "caddy", cmd, startTimeout, gatewaytest.Listening(addr), func() string {
		return fmt.Sprintf("Caddyfile:\n%s\ncaddy output:\n%s", conf, out.String())
	}); err != nil {
		return "", err
	}
	return "http://" + addr, nil
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

// do sends one request through Caddy, bounded by the client's timeout.
func do(t *testing.T, c *http.Client, method, url string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
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

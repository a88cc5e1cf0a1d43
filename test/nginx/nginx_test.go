// Package nginx_test runs the nginx auth_request configuration of
// docs/gateways.md, as written there, in a real nginx in front of a real key
// server, and checks what a client gets through it.
//
// It needs an nginx binary with the auth_request module, on PATH or in
// /usr/sbin, and the headers-more module (.ci/install-nginx.sh installs
// both). Without them it skips, except in CI (CI=true), where it fails. nginx runs as the test's user,
// with every file it writes in the test's temporary directory.
package nginx_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/test/gatewaytest"
)

const (
	// docPath is the document whose nginx block this test runs.
	docPath = "../../docs/gateways.md"
	// docMarker is the first line of that block.
	docMarker = "# Keyward forward-auth for nginx."

	// The addresses the documented block uses, replaced by the test's own.
	docKeyServer = "server keyward-key-server.keyward-system.svc:8443;"
	docApp       = "server app.default.svc:8080;"
	docListen    = "listen 80;"
	docCA        = "/etc/nginx/keyward-ca.crt"
	// keyServerName is the key server's in-cluster DNS name, which the
	// block verifies the certificate against.
	keyServerName = "keyward-key-server.keyward-system.svc"

	// failureBurst is the key server's failure limit in this test; failed
	// attempts never refill during it, so the count is exact.
	failureBurst = 8

	requestTimeout = 5 * time.Second
	startTimeout   = 15 * time.Second
)

func TestNginxAuthRequest(t *testing.T) {
	nginxBin, err := lookNginx()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not on PATH (nor /usr/sbin/nginx); CI must run .ci/install-nginx.sh before the tests")
		}
		t.Skip("nginx is not on PATH (nor /usr/sbin/nginx): run .ci/install-nginx.sh (as root) to install it")
	}

	dir := t.TempDir()
	ks := startKeyServer(t, dir)
	rw := ks.apiKey(t, "billing-reporter", kw.AccessReadWrite, "invoices:read")
	ro := ks.apiKey(t, "dashboard", kw.AccessReadOnly, "invoices:read")
	unknown := mustGenerate(t) // well-formed, never indexed

	app := startApp(t)
	block := gatewaytest.DocumentedBlock(t, docPath, "nginx", docMarker)
	base := startNginx(t, nginxBin, dir, block, ks.Addr, app.addr, ks.CAFile)
	c := &http.Client{Timeout: requestTimeout}

	// failures counts the failed attempts the key server has seen from
	// nginx's address, for the rate-limit check at the end.
	failures := 0

	t.Run("no key: 401 with WWW-Authenticate, upstream not called", func(t *testing.T) {
		before := app.hits.Load()
		r := do(t, c, http.MethodGet, base+"/orders", nil)
		failures++
		r.want(t, http.StatusUnauthorized)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("WWW-Authenticate = %q, want the key server's Bearer challenge", r.header.Get("WWW-Authenticate"))
		}
		if !strings.Contains(r.body, `"unauthorized"`) {
			t.Errorf("body = %q, want the error page's JSON", r.body)
		}
		if app.hits.Load() != before {
			t.Error("the upstream was called without a key")
		}
	})

	t.Run("Authorization: apk: 200, upstream sees the identity", func(t *testing.T) {
		r := do(t, c, http.MethodGet, base+"/orders?page=2", map[string]string{"Authorization": "apk " + rw})
		r.want(t, http.StatusOK)
		got := r.echo(t)
		want := echo{Subject: "billing-reporter-subject", Groups: "reporting,finance", Scopes: "invoices:read", Method: "GET", URI: "/orders?page=2"}
		want.KeyID = got.KeyID
		if got != want || got.KeyID == "" {
			t.Errorf("upstream saw %+v, want %+v with a key id", got, want)
		}
	})

	t.Run("X-API-Key: 200", func(t *testing.T) {
		r := do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": rw})
		r.want(t, http.StatusOK)
		if s := r.echo(t).Subject; s != "billing-reporter-subject" {
			t.Errorf("upstream saw subject %q", s)
		}
	})

	t.Run("Authorization: Bearer, Token, ApiKey and the raw key: 200", func(t *testing.T) {
		for _, v := range []string{"Bearer " + rw, "Token " + rw, "ApiKey " + rw, rw} {
			r := do(t, c, http.MethodGet, base+"/orders", map[string]string{"Authorization": v})
			r.want(t, http.StatusOK)
		}
	})

	t.Run("a client cannot forge the identity headers", func(t *testing.T) {
		r := do(t, c, http.MethodGet, base+"/orders", map[string]string{
			"X-API-Key": ro, "X-Keyward-Subject": "admin", "X-Keyward-Scopes": "invoices:write",
		})
		r.want(t, http.StatusOK)
		if got := r.echo(t); got.Subject != "dashboard-subject" || got.Scopes != "invoices:read" {
			t.Errorf("upstream saw %+v, want the key server's identity", got)
		}
	})

	t.Run("a wrong key: 401", func(t *testing.T) {
		before := app.hits.Load()
		r := do(t, c, http.MethodGet, base+"/orders", map[string]string{"Authorization": "apk " + unknown})
		failures++
		r.want(t, http.StatusUnauthorized)
		if app.hits.Load() != before {
			t.Error("the upstream was called with a wrong key")
		}
	})

	t.Run("a ReadOnly key with POST: 403, upstream not called", func(t *testing.T) {
		before := app.hits.Load()
		r := do(t, c, http.MethodPost, base+"/orders", map[string]string{"X-API-Key": ro})
		r.want(t, http.StatusForbidden)
		if app.hits.Load() != before {
			t.Error("the upstream was called for a ReadOnly key's POST")
		}
	})

	t.Run("a ReadOnly key with POST claiming X-Forwarded-Method GET: 403", func(t *testing.T) {
		r := do(t, c, http.MethodPost, base+"/orders", map[string]string{
			"X-API-Key": ro, "X-Forwarded-Method": "GET", "X-Original-Method": "GET",
		})
		r.want(t, http.StatusForbidden)
	})

	t.Run("a ReadOnly key with GET: 200", func(t *testing.T) {
		r := do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": ro})
		r.want(t, http.StatusOK)
	})

	t.Run("a ReadWrite key with POST: 200, the body reaches the upstream", func(t *testing.T) {
		r := do(t, c, http.MethodPost, base+"/orders", map[string]string{"X-API-Key": rw}, `{"n":1}`)
		r.want(t, http.StatusOK)
		if got := r.echo(t); got.Method != "POST" || got.Body != `{"n":1}` {
			t.Errorf("upstream saw %+v", got)
		}
	})

	t.Run("a location requiring invoices:write: 403 for a key without it", func(t *testing.T) {
		before := app.hits.Load()
		r := do(t, c, http.MethodGet, base+"/invoices/42", map[string]string{"Authorization": "apk " + rw})
		r.want(t, http.StatusForbidden)
		if app.hits.Load() != before {
			t.Error("the upstream was called without the required scope")
		}
	})

	t.Run("a location requiring invoices:write: 200 for a key with it", func(t *testing.T) {
		writer := ks.apiKey(t, "invoicer", kw.AccessReadWrite, "invoices:read", "invoices:write")
		r := do(t, c, http.MethodGet, base+"/invoices/42", map[string]string{"Authorization": "apk " + writer})
		r.want(t, http.StatusOK)
		if got := r.echo(t); got.Subject != "invoicer-subject" || got.Scopes != "invoices:read invoices:write" {
			t.Errorf("upstream saw %+v", got)
		}
	})

	t.Run("a public location: 200 without a key", func(t *testing.T) {
		r := do(t, c, http.MethodGet, base+"/healthz", nil)
		r.want(t, http.StatusOK)
		if got := r.echo(t); got.Subject != "" {
			t.Errorf("upstream saw subject %q on a public location", got.Subject)
		}
	})

	t.Run("the internal auth location is not reachable from outside", func(t *testing.T) {
		r := do(t, c, http.MethodGet, base+"/_keyward/authz/", map[string]string{"X-API-Key": rw})
		r.want(t, http.StatusNotFound)
	})

	t.Run("attack 11: two credentials in one request are refused, the upstream is not called", func(t *testing.T) {
		for name, h := range map[string]http.Header{
			"two Authorization headers":               {"Authorization": {"apk " + rw, "apk " + unknown}},
			"two X-API-Key headers":                   {"X-Api-Key": {rw, unknown}},
			"Authorization and a different X-API-Key": {"Authorization": {"apk " + rw}, "X-Api-Key": {unknown}},
		} {
			before := app.hits.Load()
			r := doHeader(t, c, base+"/orders", h)
			// nginx itself refuses two Authorization headers; for the others
			// the key server answers 400, which the documented block passes on.
			if r.status != http.StatusBadRequest || app.hits.Load() != before {
				t.Errorf("%s: status %d, upstream called %d times; want 400 and no call", name, r.status, app.hits.Load()-before)
			}
		}
	})

	// Last: it uses up the failure budget of (nginx's address, the unknown
	// key's id).
	t.Run("attack 4: a guesser behind nginx gets 429 with Retry-After, other clients behind it do not", func(t *testing.T) {
		// Only presented keys count (keyless visitors do not), so the
		// burst is spent here whatever ran before.
		var r response
		for i := 0; i <= failureBurst; i++ {
			r = do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": unknown})
		}
		r.want(t, http.StatusTooManyRequests)
		if r.header.Get("Retry-After") == "" {
			t.Error("a 429 must carry Retry-After")
		}
		// The key server sees nginx's address for every client, but counts
		// failures per key id and never refuses a key that validates.
		r = do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": rw})
		r.want(t, http.StatusOK)
		r = do(t, c, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": mustGenerate(t)})
		r.want(t, http.StatusUnauthorized)
	})
}

// lookNginx finds nginx on PATH, or where Debian installs it (/usr/sbin is
// not on every user's PATH).
func lookNginx() (string, error) {
	p, err := exec.LookPath("nginx")
	if err == nil {
		return p, nil
	}
	if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", err
}

// keyServer is gatewaytest's key server, with this test's keys.
type keyServer struct{ *gatewaytest.KeyServer }

// startKeyServer tests keys, not policies: any valid key passes where no
// KeyPolicy names the host (two_teams_test.go runs deny).
func startKeyServer(t *testing.T, dir string) *keyServer {
	t.Helper()
	return &keyServer{gatewaytest.StartKeyServer(t, dir, failureBurst)}
}

// apiKey indexes a new API key in namespace team-a and returns its plaintext.
func (k *keyServer) apiKey(t *testing.T, name string, access kw.AccessMode, scopes ...string) string {
	t.Helper()
	return k.Add(t, gatewaytest.Key{Namespace: "team-a", Name: name, Subject: name + "-subject",
		Groups: []string{"reporting", "finance"}, Scopes: scopes, Access: access}).Plaintext
}

func mustGenerate(t *testing.T) string {
	t.Helper()
	k, err := keymaterial.Generate("kw")
	if err != nil {
		t.Fatal(err)
	}
	return k.String()
}

// echo is what the upstream saw, as it reports it.
type echo struct {
	Subject string `json:"subject"`
	Groups  string `json:"groups"`
	Scopes  string `json:"scopes"`
	KeyID   string `json:"keyID"`
	Method  string `json:"method"`
	URI     string `json:"uri"`
	Body    string `json:"body"`
}

type upstream struct {
	addr string
	hits atomic.Int64
}

// startApp starts the upstream service: it echoes the identity headers and
// the request it received.
func startApp(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Subject: r.Header.Get("X-Keyward-Subject"), Groups: r.Header.Get("X-Keyward-Groups"),
			Scopes: r.Header.Get("X-Keyward-Scopes"), KeyID: r.Header.Get("X-Keyward-Key-Id"),
			Method: r.Method, URI: r.RequestURI, Body: string(body),
		})
	}))
	t.Cleanup(srv.Close)
	u.addr = srv.Listener.Addr().String()
	return u
}

// startNginx runs the documented block, pointed at the test's key server,
// upstream and CA, in an nginx of its own, and returns its base URL.
func startNginx(t *testing.T, bin, dir, block, keyServerAddr, appAddr, caFile string) string {
	t.Helper()
	block = gatewaytest.ReplaceN(t, block, docKeyServer, "server "+keyServerAddr+";", 1)
	block = gatewaytest.ReplaceN(t, block, docApp, "server "+appAddr+";", 1)
	block = gatewaytest.ReplaceN(t, block, docCA, caFile, 1)
	modules := headersMore(t, bin)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before nginx binds it
		port := gatewaytest.FreePort(t)
		conf := gatewaytest.ReplaceN(t, block, docListen, fmt.Sprintf("listen 127.0.0.1:%d;", port), 1)
		base, err := runNginx(t, bin, dir, modules, conf, port)
		if err == nil {
			return base
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	t.Fatal(lastErr)
	return ""
}

// headersMore is the main-context line that loads the headers-more module
// the documented block needs (Debian: libnginx-mod-http-headers-more-filter,
// under nginx's --modules-path), or "" when nginx has it built in.
func headersMore(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -V: %v\n%s", bin, err, out)
	}
	if strings.Contains(string(out), "headers-more") { // compiled in, as in OpenResty
		return ""
	}
	dir := "/usr/lib/nginx/modules"
	for _, arg := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(arg, "--modules-path="); ok {
			dir = v
		}
	}
	so := filepath.Join(dir, "ngx_http_headers_more_filter_module.so")
	if _, err := os.Stat(so); err != nil {
		msg := "the nginx headers-more module is missing (" + so + "): run .ci/install-nginx.sh (as root) to install it"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return "load_module " + so + ";"
}

func runNginx(t *testing.T, bin, dir, modules, block string, port int) (string, error) {
	t.Helper()
	prefix := filepath.Join(dir, fmt.Sprintf("nginx-%d", port))
	for _, d := range []string{"logs", "temp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	errorLog := filepath.Join(prefix, "logs", "error.log")
	temp := filepath.Join(prefix, "temp")
	conf := fmt.Sprintf(`%[5]s
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/logs/nginx.pid;
error_log %[2]s info;
events { worker_connections 128; }
http {
    access_log %[1]s/logs/access.log;
    client_body_temp_path %[3]s/client_body;
    proxy_temp_path %[3]s/proxy;
    fastcgi_temp_path %[3]s/fastcgi;
    uwsgi_temp_path %[3]s/uwsgi;
    scgi_temp_path %[3]s/scgi;
    default_type text/plain;

%[4]s
}
`, prefix, errorLog, temp, block, modules)
	confFile := filepath.Join(prefix, "nginx.conf")
	gatewaytest.WriteFile(t, confFile, []byte(conf))

	// -e: the error log from the start, before the configuration is read
	// (the compiled-in one may not be writable).
	cmd := exec.Command(bin, "-p", prefix, "-c", confFile, "-e", errorLog)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := gatewaytest.StartProcess(t, "nginx", cmd, startTimeout, gatewaytest.Listening(addr), func() string {
		log, _ := os.ReadFile(errorLog)
		return fmt.Sprintf("nginx configuration:\n%s\nnginx output:\n%s\nnginx error log:\n%s", conf, out.String(), log)
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

func (r response) echo(t *testing.T) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("not the upstream's answer: %q", r.body)
	}
	return e
}

// do sends one request through nginx, bounded by the client's timeout.
func do(t *testing.T, c *http.Client, method, url string, header map[string]string, body ...string) response {
	t.Helper()
	var rd io.Reader
	if len(body) > 0 {
		rd = strings.NewReader(body[0])
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return send(t, c, req)
}

// doHeader sends a GET with header as given, repeated fields included.
func doHeader(t *testing.T, c *http.Client, url string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	return send(t, c, req)
}

func send(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	method, url := req.Method, req.URL.String()
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

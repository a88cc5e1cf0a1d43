// Package gatewaytest holds what the real-gateway tests (test/nginx,
// test/caddy, test/traefik) share: a key server over TLS on loopback, an upstream that
// records the headers it receives, and the forged-identity checks every
// documented gateway configuration must pass (issue 12, attack 7).
package gatewaytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"github.com/keyward/keyward/api/wire"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/webhook/keyserver"
)

// KeyServerName is the key server's in-cluster DNS name, which the
// documented configurations verify its certificate against.
const KeyServerName = "keyward-key-server.keyward-system.svc"

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 15 * time.Second
)

// KeyServer is a key server on loopback, over TLS, loaded with keys directly.
type KeyServer struct {
	Server *keyserver.Server
	// Addr is host:port; CAFile is the certificate a gateway must trust;
	// CertDir holds the key server's tls.crt and tls.key.
	Addr, CAFile, CertDir string
}

// StartKeyServer starts a key server whose certificate is written under dir.
// failureLimit bounds failed attempts per client address (they never refill
// during a test, so counts are exact). It runs with
// --default-policy=allow-valid-key (tests of keys, not of policies) unless
// mut says otherwise.
func StartKeyServer(t *testing.T, dir string, failureLimit int, mut ...func(*keyserver.Options)) *KeyServer {
	t.Helper()
	certDir := filepath.Join(dir, "key-server-tls")
	caFile := writeServingCert(t, certDir)
	opts := keyserver.Options{
		BindAddress: "127.0.0.1:0", CertDir: certDir, Issuer: "https://" + KeyServerName,
		FailureLimit: failureLimit, FailureRefill: 24 * time.Hour,
		DefaultPolicy: keypolicy.ModeAllowValidKey,
	}
	for _, m := range mut {
		m(&opts)
	}
	srv := keyserver.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("key server: %v", err)
			}
		case <-time.After(stopTimeout):
			t.Error("the key server did not stop")
		}
	})
	actx, acancel := context.WithTimeout(ctx, startTimeout)
	defer acancel()
	addr, err := srv.Addr(actx)
	if err != nil {
		select {
		case err := <-done:
			t.Fatalf("key server did not start: %v", err)
		default:
		}
		t.Fatalf("key server did not bind: %v", err)
	}
	return &KeyServer{Server: srv, Addr: addr.String(), CAFile: caFile, CertDir: certDir}
}

// StartExtAuthz starts the key server's gRPC ext_authz listener on
// loopback, over TLS with the key server's certificate (for KeyServerName),
// and returns its host:port; it stops when the test ends.
func (s *KeyServer) StartExtAuthz(t *testing.T) string {
	t.Helper()
	e := keyserver.NewExtAuthzServer(s.Server, keyserver.ExtAuthzOptions{BindAddress: "127.0.0.1:0", CertDir: s.CertDir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ext_authz listener: %v", err)
			}
		case <-time.After(stopTimeout):
			t.Error("the ext_authz listener did not stop")
		}
	})
	actx, acancel := context.WithTimeout(ctx, startTimeout)
	defer acancel()
	addr, err := e.Addr(actx)
	if err != nil {
		t.Fatalf("the ext_authz listener did not bind: %v", err)
	}
	return addr.String()
}

// Key is an API key the key server knows, and the identity it answers for it.
type Key struct {
	Namespace, Name, Subject string
	Groups, Scopes           []string
	Access                   kw.AccessMode
	// RateLimit and AllowedCIDRs are the key's spec.rateLimit and
	// spec.allowedCIDRs as its record holds them (unset: none).
	RateLimit    *hashsecret.RateLimit
	AllowedCIDRs []string
	// Plaintext is what a client presents; ID is the public key id.
	Plaintext, ID string
}

// Add indexes k (Namespace, Name, Subject, Groups, Scopes, Access,
// RateLimit, AllowedCIDRs) under a new secret and returns it with Plaintext and ID set.
func (s *KeyServer) Add(t *testing.T, k Key) Key {
	t.Helper()
	m, err := keymaterial.Generate("kw")
	if err != nil {
		t.Fatal(err)
	}
	if k.Access == "" {
		k.Access = kw.AccessReadWrite
	}
	rec := &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: k.Namespace, Name: k.Name, Subject: k.Subject,
		Groups: k.Groups, Scopes: k.Scopes, Access: string(k.Access),
		Current:   &hashsecret.Version{ID: m.ID, Hash: m.SecretHash(), NotBefore: time.Now().Add(-time.Hour)},
		RateLimit: k.RateLimit, AllowedCIDRs: k.AllowedCIDRs,
	}
	if err := s.Server.Index().Upsert(hashsecret.Name(hashsecret.KindAPIKey, k.Namespace, k.Name), rec); err != nil {
		t.Fatal(err)
	}
	k.Plaintext, k.ID = m.String(), m.ID
	return k
}

// Headers is what the key server's 200 for k carries where no KeyPolicy
// decided, as the upstream must see it: the six X-Keyward-* headers, an
// empty value standing for "absent or empty" (the groups of a key without
// any, the policy where none decided).
func (k Key) Headers() map[string]string { return k.HeadersBy("") }

// HeadersBy is Headers where policy ("<namespace>/<name>") decided.
func (k Key) HeadersBy(policy string) map[string]string {
	return map[string]string{
		wire.HeaderSubject:   k.Subject,
		wire.HeaderGroups:    strings.Join(k.Groups, ","),
		wire.HeaderScopes:    strings.Join(k.Scopes, " "),
		wire.HeaderKeyID:     k.ID,
		wire.HeaderNamespace: k.Namespace,
		wire.HeaderPolicy:    policy,
	}
}

// writeServingCert writes a self-signed tls.crt/tls.key for KeyServerName
// into dir and returns the certificate's path for a gateway to trust.
func writeServingCert(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: KeyServerName},
		DNSNames:              []string{KeyServerName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	crt := filepath.Join(dir, "tls.crt")
	WriteFile(t, crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	WriteFile(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return crt
}

// WriteFile writes data to path, readable by the test's user only.
func WriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Recorder is the upstream service: it answers 200 and keeps the headers of
// the last request it received.
type Recorder struct {
	Addr string
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

// StartRecorder starts a Recorder on loopback.
func StartRecorder(t *testing.T) *Recorder {
	t.Helper()
	rec := &Recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<10))
		rec.mu.Lock()
		rec.last = r.Header.Clone()
		rec.mu.Unlock()
		rec.hits.Add(1)
		_, _ = io.WriteString(w, "upstream\n")
	}))
	t.Cleanup(srv.Close)
	rec.Addr = srv.Listener.Addr().String()
	return rec
}

// Hits counts the requests the upstream received.
func (r *Recorder) Hits() int64 { return r.hits.Load() }

// Last is a copy of the headers of the last request the upstream received.
func (r *Recorder) Last() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.Clone()
}

// IsKeywardHeader reports whether name is an X-Keyward-* header or an alias
// of one: many upstreams (CGI, PHP, WSGI, Rack) upper-case a header name and
// turn every character but letters and digits into "_", so X_Keyward_Subject
// and X.Keyward.Subject read as X-Keyward-Subject there.
func IsKeywardHeader(name string) bool {
	return strings.HasPrefix(foldName(name), "x-keyward-")
}

// foldName is name as such an upstream reads it, lower-cased and with "-"
// for every character that is not a letter or digit.
func foldName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		default:
			return '-'
		}
	}, name)
}

// KeywardHeaders is every X-Keyward-* header of h and its aliases, by the
// name the upstream received.
func KeywardHeaders(h http.Header) http.Header {
	out := http.Header{}
	for name, vals := range h {
		if IsKeywardHeader(name) {
			out[name] = vals
		}
	}
	return out
}

// Forged is what an attacker adds to a request: the key server's six
// headers with another identity (and its X-Keyward-Code), in other cases and repeated, headers of
// that prefix the key server never sets, and aliases an upstream may fold
// into X-Keyward-* names (Go canonicalises them to X.keyward.subject,
// X-Keyward_scopes and the like). The keys are written as they stand (Go's client
// does not canonicalise a header map's keys).
func Forged() http.Header {
	return http.Header{
		"X-Keyward-Namespace": {"billing"},
		"x-keyward-namespace": {"billing", "kube-system"},
		"X-KEYWARD-SUBJECT":   {"admin"},
		"X-Keyward-Subject":   {"admin", "root"},
		"X-Keyward-Groups":    {"admins"},
		"X-Keyward-Scopes":    {"invoices:write"},
		"X-Keyward-Key-Id":    {"forged"},
		"X-Keyward-Policy":    {"billing/api"},
		"x-keyward-code":      {"OK"},
		"X-Keyward-Whatever":  {"anything"},
		"x-keyward-access":    {"ReadWrite"},
		"X_Keyward_Namespace": {"billing"},
		"X.Keyward.Subject":   {"admin"},
		"x~keyward~groups":    {"admins"},
		"x-keyward_scopes":    {"invoices:write"},
	}
}

// Gateway is a gateway running a documented configuration, as the forged
// identity checks reach it.
type Gateway struct {
	// Base is the gateway's URL, "http://127.0.0.1:port".
	Base string
	// Protected is a path that needs a valid key; Public one that needs
	// none (both forwarded to the Recorder).
	Protected, Public string
	// Host, if set, is the Host header of every request to Base, for a
	// configuration that routes by host name (Base keeps the address).
	Host string
}

// CheckForgedIdentity runs attack 7 of issue 12 against gw: whatever
// X-Keyward-* headers (and aliases) a client sends, the upstream sees only
// those the key server set for the key, and none on a public path; a request
// without a key never reaches it.
func CheckForgedIdentity(t *testing.T, gw Gateway, up *Recorder, ks *KeyServer) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	withGroups := ks.Add(t, Key{
		Namespace: "team-a", Name: "reporter", Subject: "reporter",
		Groups: []string{"reporting", "finance"}, Scopes: []string{"invoices:read", "orders:read"},
	})
	noGroups := ks.Add(t, Key{Namespace: "team-a", Name: "bare", Subject: "bare"})

	t.Run("the forged headers reach an upstream that nothing strips", func(t *testing.T) {
		// Without this, a client that silently dropped the forged headers
		// would make every check below pass.
		send(t, c, "http://"+up.Addr+gw.Protected, "", nil).want(t, http.StatusOK)
		got := KeywardHeaders(up.Last())
		for name := range Forged() {
			if len(got[http.CanonicalHeaderKey(name)]) == 0 {
				t.Errorf("%s did not reach the upstream directly; got %v", name, got)
			}
		}
	})

	t.Run("no key, forged identity: 401, the upstream is not called", func(t *testing.T) {
		before := up.Hits()
		send(t, c, gw.Base+gw.Protected, gw.Host, nil).want(t, http.StatusUnauthorized)
		if up.Hits() != before {
			t.Error("the upstream was called without a key")
		}
	})

	for name, k := range map[string]Key{"a key with groups": withGroups, "a key without groups": noGroups} {
		t.Run(name+", forged identity: the upstream sees only the key server's headers", func(t *testing.T) {
			before := up.Hits()
			send(t, c, gw.Base+gw.Protected, gw.Host, http.Header{"X-Api-Key": {k.Plaintext}}).want(t, http.StatusOK)
			if up.Hits() != before+1 {
				t.Fatal("the upstream was not called")
			}
			if problems := OnlyHeaders(up.Last(), k.Headers()); len(problems) > 0 {
				t.Errorf("the upstream saw forged or missing identity headers:\n%s", strings.Join(problems, "\n"))
			}
		})
	}

	t.Run("public path, forged identity: no X-Keyward-* header reaches the upstream", func(t *testing.T) {
		before := up.Hits()
		send(t, c, gw.Base+gw.Public, gw.Host, nil).want(t, http.StatusOK)
		if up.Hits() != before+1 {
			t.Fatal("the upstream was not called")
		}
		if problems := OnlyHeaders(up.Last(), nil); len(problems) > 0 {
			t.Errorf("the upstream saw forged identity headers on a public path:\n%s", strings.Join(problems, "\n"))
		}
	})
}

// OnlyHeaders compares the X-Keyward-* headers (and aliases) in got with
// want, by canonical name: each name of want must come once with its value
// (an empty value: absent or once empty), and nothing else may be there.
// It returns one line per difference, sorted.
func OnlyHeaders(got http.Header, want map[string]string) []string {
	var problems []string
	seen := map[string]bool{}
	for name, vals := range KeywardHeaders(got) {
		w, ok := want[name]
		seen[name] = true
		switch {
		case !ok:
			problems = append(problems, "unexpected "+name+": "+strings.Join(vals, " | "))
		case len(vals) != 1 || vals[0] != w:
			problems = append(problems, name+": "+strings.Join(vals, " | ")+", want only "+w)
		}
	}
	for name, w := range want {
		if !seen[name] && w != "" {
			problems = append(problems, "missing "+name+": "+w)
		}
	}
	sort.Strings(problems)
	return problems
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

// send sends a GET to url with extra headers and Forged() as written, and
// host as the Host header unless it is empty.
func send(t *testing.T, c *http.Client, url, host string, extra http.Header) response {
	t.Helper()
	return sendAs(t, c, http.MethodGet, url, host, extra)
}

// sendAs sends a request with method to url, for host (the URL's when
// empty), with extra headers and Forged() as written.
func sendAs(t *testing.T, c *http.Client, method, url, host string, extra http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for name, vals := range Forged() {
		req.Header[name] = vals
	}
	for name, vals := range extra {
		req.Header[name] = vals
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

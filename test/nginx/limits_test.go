package nginx_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/test/gatewaytest"
	"github.com/keyward/keyward/webhook/keyserver"
)

// Loopback addresses stand for the machines of this test: nginx listens on
// 127.0.0.1 and reaches the key server from there (the only address in
// --trusted-proxies); clients dial from addresses of their own.
const (
	nginxAddr    = "127.0.0.1"
	officeClient = "127.0.0.2" // inside the key's allowedCIDRs
	otherClient  = "127.0.0.3" // outside them
)

// clientFrom is an HTTP client whose connections come from local address
// addr; rootCAs, when set, is trusted for TLS.
func clientFrom(t *testing.T, addr string, rootCAs *x509.CertPool) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: requestTimeout}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		return d.DialContext(ctx, network, a)
	}}
	if rootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: rootCAs, ServerName: keyServerName, MinVersion: tls.VersionTLS12}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: requestTimeout, Transport: tr}
}

// TestNginxTrustedProxyAllowListAndRateLimit runs the documented block with
// nginx in --trusted-proxies (issue 15, items 1 and 3): the key server
// judges a key's allowedCIDRs by the client nginx names in
// X-Forwarded-For, ignores what a client writes there itself and what an
// untrusted peer sends, and nginx passes the key's rate limit on to the
// client.
func TestNginxTrustedProxyAllowListAndRateLimit(t *testing.T) {
	nginxBin, err := lookNginx()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not on PATH (nor /usr/sbin/nginx); CI must run .ci/install-nginx.sh before the tests")
		}
		t.Skip("nginx is not on PATH (nor /usr/sbin/nginx): run .ci/install-nginx.sh (as root) to install it")
	}
	dir := t.TempDir()
	ks := &keyServer{gatewaytest.StartKeyServer(t, dir, failureBurst, func(o *keyserver.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(nginxAddr + "/32")}
	})}
	office := ks.Add(t, gatewaytest.Key{Namespace: "team-a", Name: "office", Subject: "office",
		AllowedCIDRs: []string{officeClient + "/32"}}).Plaintext
	// A key allowing nginx's own address: the proxy is not the client.
	proxyOnly := ks.Add(t, gatewaytest.Key{Namespace: "team-a", Name: "proxy-only", Subject: "proxy-only",
		AllowedCIDRs: []string{nginxAddr}}).Plaintext
	limited := ks.Add(t, gatewaytest.Key{Namespace: "team-a", Name: "limited", Subject: "limited",
		RateLimit: &hashsecret.RateLimit{Requests: 2, Period: time.Hour}}).Plaintext

	app := startApp(t)
	base := startNginx(t, nginxBin, dir, gatewaytest.DocumentedBlock(t, docPath, "nginx", docMarker), ks.Addr, app.addr, ks.CAFile)
	fromOffice, fromOther := clientFrom(t, officeClient, nil), clientFrom(t, otherClient, nil)

	t.Run("a client inside the key's allowedCIDRs: 200", func(t *testing.T) {
		r := do(t, fromOffice, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": office})
		r.want(t, http.StatusOK)
		if got := r.echo(t).Subject; got != "office" {
			t.Errorf("upstream saw subject %q", got)
		}
	})

	t.Run("a client outside them: 403 CIDR_NOT_ALLOWED, upstream not called", func(t *testing.T) {
		before := app.hits.Load()
		r := do(t, fromOther, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": office})
		r.want(t, http.StatusForbidden)
		if code := r.header.Get("X-Keyward-Code"); code != "CIDR_NOT_ALLOWED" || !strings.Contains(r.body, "CIDR_NOT_ALLOWED") {
			t.Errorf("code %q, body %q", code, r.body)
		}
		if app.hits.Load() != before {
			t.Error("the upstream was called")
		}
	})

	t.Run("issue 15 attack 3: a client naming an allowed address in X-Forwarded-For through nginx: 403", func(t *testing.T) {
		// nginx appends the address it got the request from; the key
		// server reads the right-most entry that is not nginx's.
		r := do(t, fromOther, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": office, "X-Forwarded-For": officeClient})
		r.want(t, http.StatusForbidden)
	})

	t.Run("the proxy's own address is not the client's: 403", func(t *testing.T) {
		r := do(t, fromOther, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": proxyOnly})
		r.want(t, http.StatusForbidden)
	})

	t.Run("issue 15 attack 3: a forged X-Forwarded-For sent directly from an untrusted peer is ignored", func(t *testing.T) {
		ca, err := os.ReadFile(ks.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		direct := clientFrom(t, otherClient, pool)
		r := do(t, direct, http.MethodGet, "https://"+ks.Addr+"/v1/authz", map[string]string{
			"X-API-Key": office, "X-Forwarded-For": officeClient})
		r.want(t, http.StatusForbidden)
		if code := r.header.Get("X-Keyward-Code"); code != "CIDR_NOT_ALLOWED" {
			t.Errorf("code %q", code)
		}
		// The same request from the office itself passes: the refusal is
		// the address's, not the header's.
		r = do(t, clientFrom(t, officeClient, pool), http.MethodGet, "https://"+ks.Addr+"/v1/authz", map[string]string{
			"X-API-Key": office, "X-Forwarded-For": otherClient})
		r.want(t, http.StatusOK)
	})

	t.Run("a rate-limited key: RateLimit headers reach the client, then 429 with Retry-After", func(t *testing.T) {
		for i, want := range []string{`"key";r=1;t=1800`, `"key";r=0;t=3600`} {
			r := do(t, fromOther, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": limited})
			r.want(t, http.StatusOK)
			if got := r.header.Get("RateLimit"); got != want {
				t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
			}
			if got := r.header.Get("RateLimit-Policy"); got != `"key";q=2;w=3600` {
				t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
			}
		}
		before := app.hits.Load()
		r := do(t, fromOther, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": limited})
		r.want(t, http.StatusTooManyRequests)
		if r.header.Get("Retry-After") != "1800" || r.header.Get("RateLimit") != `"key";r=0;t=1800` ||
			r.header.Get("X-Keyward-Code") != "RATE_LIMITED" {
			t.Errorf("429 headers: %v", r.header)
		}
		if app.hits.Load() != before {
			t.Error("the upstream was called over the limit")
		}
		// Another key is not limited by this one's budget.
		do(t, fromOffice, http.MethodGet, base+"/orders", map[string]string{"X-API-Key": office}).want(t, http.StatusOK)
	})
}

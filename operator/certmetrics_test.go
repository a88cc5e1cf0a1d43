package operator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func writeCert(t *testing.T, dir string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	// A chain file may start with anything PEM; the leaf is the first certificate.
	out := append(pem.EncodeToMemory(&pem.Block{Type: "COMMENT", Bytes: []byte("x")}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestServingCertificateExpiryIsReadFromTheServedFileAtEachScrape(t *testing.T) {
	c := &servingCerts{files: map[string]string{}}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	webhookDir, keyServerDir := t.TempDir(), t.TempDir()
	c.watch(certServerWebhook, webhookDir)
	c.watch(certServerKeyServer, keyServerDir)
	c.watch("tls-off", "")

	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("%d series before any certificate exists, want none", n)
	}
	first := time.Unix(1_900_000_000, 0)
	writeCert(t, webhookDir, first)
	want := `# HELP keyward_serving_certificate_expiration_timestamp_seconds ` + servingCertExpiryHelp + `
# TYPE keyward_serving_certificate_expiration_timestamp_seconds gauge
keyward_serving_certificate_expiration_timestamp_seconds{server="webhook"} 1.9e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// A renewal is seen at the next scrape, without a restart.
	writeCert(t, webhookDir, first.Add(24*time.Hour))
	writeCert(t, keyServerDir, first)
	want = strings.Replace(want, "1.9e+09\n", "1.9000864e+09\n", 1) +
		`keyward_serving_certificate_expiration_timestamp_seconds{server="key-server"} 1.9e+09` + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// A file that is not a certificate: no series rather than a made-up one.
	if err := os.WriteFile(filepath.Join(keyServerDir, "tls.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 1 {
		t.Fatalf("%d series with one unreadable certificate, want 1", n)
	}
}

package operator

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Servers whose certificate expiry is exported (the "server" label).
const (
	certServerWebhook   = "webhook"
	certServerKeyServer = "key-server"
)

const servingCertExpiryHelp = "When the serving certificate (tls.crt) in a TLS server's cert dir expires, Unix seconds; read at each scrape, so it is the certificate the server reloads, whoever issued it (--cert-provisioning=self or cert-manager). Absent while the file is missing or unreadable."

var servingCertExpiryDesc = prometheus.NewDesc("keyward_serving_certificate_expiration_timestamp_seconds",
	servingCertExpiryHelp, []string{"server"}, nil)

// servingCerts exports the expiry of the certificate files the TLS servers
// serve. A file, not the Secret: the file is what the kubelet projected and
// the server reloads, so a renewal that never reached the pod still alerts.
type servingCerts struct {
	mu    sync.Mutex
	files map[string]string // server -> path of tls.crt
}

// certExpiry is registered once per process; each manager names its files.
var certExpiry = &servingCerts{files: map[string]string{}}

func init() {
	metrics.Registry.MustRegister(certExpiry)
}

// watch exports the expiry of dir/tls.crt as server's; an empty dir (TLS
// off, or controller-runtime's default dir) exports nothing.
func (c *servingCerts) watch(server, dir string) {
	if dir == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files[server] = filepath.Join(dir, "tls.crt")
}

func (c *servingCerts) Describe(ch chan<- *prometheus.Desc) { ch <- servingCertExpiryDesc }

func (c *servingCerts) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	files := make(map[string]string, len(c.files))
	for k, v := range c.files {
		files[k] = v
	}
	c.mu.Unlock()
	for server, file := range files {
		notAfter, err := leafNotAfter(file)
		if err != nil {
			continue // not provisioned yet: no series rather than a made-up value
		}
		ch <- prometheus.MustNewConstMetric(servingCertExpiryDesc, prometheus.GaugeValue, float64(notAfter.Unix()), server)
	}
}

// maxCertFileBytes bounds the read: a serving chain is a few KiB.
const maxCertFileBytes = 1 << 20

// leafNotAfter is the NotAfter of the first certificate in a PEM file.
func leafNotAfter(file string) (time.Time, error) {
	f, err := os.Open(file)
	if err != nil {
		return time.Time{}, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFileBytes))
	if err != nil {
		return time.Time{}, err
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return time.Time{}, errors.New("no certificate")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return time.Time{}, err
		}
		return cert.NotAfter, nil
	}
}

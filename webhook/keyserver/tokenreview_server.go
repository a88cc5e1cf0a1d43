package keyserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// TokenReviewPath is where kube-apiserver's webhook kubeconfig points.
const TokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"

// TokenReviewOptions configure the TokenReview listener.
type TokenReviewOptions struct {
	// BindAddress is host:port to listen on.
	BindAddress string
	// CertDir holds the serving tls.crt and tls.key (the key server's).
	CertDir string
	// ClientCAFile is the PEM bundle of the CAs whose client certificates
	// are accepted. Any certificate it signed is accepted: use a CA that
	// signs kube-apiserver's webhook client certificate and nothing else.
	ClientCAFile string
	// ClusterGroups is the operator's allow-list of cluster-wide groups.
	ClusterGroups ClusterGroups
	// CertReady, when set, is closed once CertDir holds a certificate.
	CertReady <-chan struct{}
}

// TokenReviewServer answers kube-apiserver's webhook token authenticator on
// a listener of its own that requires a client certificate: on the public
// port, anyone could test guessed keys without ever counting as a failure
// (the failures cannot be counted, since kube-apiserver forwards every
// unknown bearer token). It answers from the key server's index. It is a
// manager.Runnable.
type TokenReviewServer struct {
	opts    TokenReviewOptions
	keys    *Server
	handler http.Handler
	addr    chan net.Addr
}

// NewTokenReviewServer builds the listener's server; TLS and a client CA
// are required.
func NewTokenReviewServer(keys *Server, opts TokenReviewOptions) (*TokenReviewServer, error) {
	if opts.CertDir == "" || opts.ClientCAFile == "" {
		return nil, errors.New("the TokenReview listener needs a serving certificate (--key-server-cert-dir) and the CA of kube-apiserver's client certificate (--token-review-client-ca)")
	}
	t := &TokenReviewServer{opts: opts, keys: keys, addr: make(chan net.Addr, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+TokenReviewPath, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now() // latency is a measurement, not a decision: wall clock
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		o := t.review(w, r)
		validations.WithLabelValues(frontendTokenReview, o.result).Inc()
		latency.WithLabelValues(frontendTokenReview).Observe(time.Since(start).Seconds())
	})
	t.handler = mux
	return t, nil
}

// Handler exposes the route, for tests.
func (t *TokenReviewServer) Handler() http.Handler { return t.handler }

// Addr waits for Start to bind and returns the bound address.
func (t *TokenReviewServer) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case a := <-t.addr:
		t.addr <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// NeedLeaderElection is false: every replica serves from its own cache.
func (t *TokenReviewServer) NeedLeaderElection() bool { return false }

// Start listens and serves until ctx is done.
func (t *TokenReviewServer) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("token-review")
	if t.opts.CertReady != nil {
		select {
		case <-t.opts.CertReady:
		case <-ctx.Done():
			return nil
		}
	}
	cw, err := certwatcher.New(filepath.Join(t.opts.CertDir, "tls.crt"), filepath.Join(t.opts.CertDir, "tls.key"))
	if err != nil {
		return err
	}
	go func() { _ = cw.Start(ctx) }()
	cas := &clientCAs{path: t.opts.ClientCAFile, log: log}
	base := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert}
	ln, err := net.Listen("tcp", t.opts.BindAddress)
	if err != nil {
		return err
	}
	ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = cas.pool()
		return c, nil
	}})
	t.addr <- ln.Addr()
	log.Info("serving TokenReview", "address", ln.Addr().String(), "clientCA", t.opts.ClientCAFile)
	return serve(ctx, ln, t.handler)
}

// clientCAs reads the client CA bundle on every handshake and parses it
// again when its content changed, so a rotated CA (or a ConfigMap mounted
// after the pod started) takes effect without a restart; a few KiB read per
// handshake cost little next to the handshake, and kube-apiserver keeps its
// connections open. A missing or empty file trusts nobody: every handshake
// is refused, which is logged once per change.
type clientCAs struct {
	path string
	log  logr.Logger

	mu  sync.Mutex
	pem []byte
	cur *x509.CertPool
}

func (c *clientCAs) pool() *x509.CertPool {
	data, err := os.ReadFile(c.path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && bytes.Equal(data, c.pem) {
		return c.cur
	}
	pool := x509.NewCertPool()
	if err == nil && !pool.AppendCertsFromPEM(data) {
		err = errors.New("no PEM certificate in the file")
	}
	if err != nil {
		c.log.Error(err, "cannot read the TokenReview client CA: every caller is refused until it is fixed", "path", c.path)
	} else {
		c.log.Info("loaded the TokenReview client CA", "path", c.path)
	}
	c.pem, c.cur = data, pool
	return pool
}

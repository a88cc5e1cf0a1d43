// Package keyserver is the HTTP server that validates keys for gateways,
// services and the Kubernetes API server, and issues tokens.
package keyserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Bounds on what a client may send; validation requests are small.
const (
	maxHeaderBytes    = 16 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 90 * time.Second
	shutdownTimeout   = 10 * time.Second
)

// Options configure the key server.
type Options struct {
	// BindAddress is host:port to listen on.
	BindAddress string
	// CertDir holds tls.crt and tls.key; empty means plain HTTP.
	CertDir string
	// Ready reports whether the server can answer (its caches have synced).
	Ready func() bool
}

// Server is a manager.Runnable serving the key server's endpoints.
type Server struct {
	opts    Options
	handler http.Handler
	// Addr is the address actually bound, known once Start has listened.
	addr chan net.Addr
}

// New builds the server and its routes.
func New(opts Options) *Server {
	s := &Server{opts: opts, addr: make(chan net.Addr, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.handler = mux
	return s
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil && !s.opts.Ready() {
		http.Error(w, "caches not synced", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// Handler exposes the routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Addr waits for Start to bind and returns the bound address.
func (s *Server) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case a := <-s.addr:
		s.addr <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// NeedLeaderElection is false: every replica serves from its own cache.
func (s *Server) NeedLeaderElection() bool { return false }

// Start listens and serves until ctx is done.
func (s *Server) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("key-server")
	srv := &http.Server{
		Handler:           s.handler,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ln, err := net.Listen("tcp", s.opts.BindAddress)
	if err != nil {
		return err
	}
	if s.opts.CertDir != "" {
		// certwatcher reloads the pair when cert-manager or our own
		// rotation rewrites it, without a restart.
		cw, err := certwatcher.New(filepath.Join(s.opts.CertDir, "tls.crt"), filepath.Join(s.opts.CertDir, "tls.key"))
		if err != nil {
			_ = ln.Close()
			return err
		}
		go func() { _ = cw.Start(ctx) }()
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate})
	}
	s.addr <- ln.Addr()
	log.Info("serving", "address", ln.Addr().String(), "tls", s.opts.CertDir != "")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

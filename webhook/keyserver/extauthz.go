package keyserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// ExtAuthzService is the gRPC service Envoy's ext_authz filter calls.
const ExtAuthzService = "envoy.service.auth.v3.Authorization"

// Bounds of the gRPC listener. Envoy sends every request header of the
// client in a CheckRequest (its own limit is 60 KiB of headers, 100 of
// them, by default), so the bounds sit above Envoy's defaults and a request
// Envoy accepted is judged, not failed; what is larger is refused before
// it is decoded (MaxRecvMsgSize) or answered 431 (checkHeaders).
const (
	// maxCheckRequestBytes bounds one CheckRequest on the wire: headers,
	// and the attributes Envoy adds (peers, TLS session, metadata). A body
	// (with_request_body) is not read; do not configure Envoy to send one.
	maxCheckRequestBytes = 128 << 10
	// maxCheckHeaderBytes and maxCheckHeaders bound the original request's
	// headers, names and values, pseudo-headers included.
	maxCheckHeaderBytes = 64 << 10
	maxCheckHeaders     = 256
	// maxGRPCStreams bounds concurrent Checks per connection; Envoy opens
	// more connections (or queues) past it.
	maxGRPCStreams = 1024
	// maxGRPCMetadataBytes bounds the gRPC call's own metadata (not the
	// original request's headers, which travel in the message).
	maxGRPCMetadataBytes = 16 << 10
	// grpcHandshakeTimeout bounds the TLS handshake and HTTP/2 preface of a
	// new connection, as readHeaderTimeout does on the HTTP side.
	grpcHandshakeTimeout = readHeaderTimeout
	// healthPoll is how often the health service reads the caches'
	// readiness for watchers; Check answers the current state.
	healthPoll = time.Second
)

// ExtAuthzOptions configure the gRPC ext_authz listener.
type ExtAuthzOptions struct {
	// BindAddress is host:port to listen on.
	BindAddress string
	// CertDir holds tls.crt and tls.key (the key server's); empty serves
	// plaintext gRPC (make dev).
	CertDir string
	// CertReady, when set, is closed once CertDir holds a certificate.
	CertReady <-chan struct{}
}

// ExtAuthzServer answers Envoy's gRPC ext_authz
// (envoy.service.auth.v3.Authorization/Check) on a listener of its own,
// with the standard gRPC health service and server reflection. It makes the
// decision /v1/authz makes, from the key server's index and policies. It is
// a manager.Runnable.
type ExtAuthzServer struct {
	opts   ExtAuthzOptions
	keys   *Server
	health *health.Server
	addr   chan net.Addr
}

// NewExtAuthzServer builds the gRPC listener of the key server keys.
func NewExtAuthzServer(keys *Server, opts ExtAuthzOptions) *ExtAuthzServer {
	return &ExtAuthzServer{opts: opts, keys: keys, health: health.NewServer(), addr: make(chan net.Addr, 1)}
}

// Addr waits for Start to bind and returns the bound address.
func (e *ExtAuthzServer) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case a := <-e.addr:
		e.addr <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// NeedLeaderElection is false: every replica serves from its own cache.
func (e *ExtAuthzServer) NeedLeaderElection() bool { return false }

// GRPCServerOptions are the bounds every gRPC server of the key server's
// runs with (hack/bench gives its floor the same).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxCheckRequestBytes),
		grpc.MaxConcurrentStreams(maxGRPCStreams),
		grpc.MaxHeaderListSize(maxGRPCMetadataBytes),
		grpc.ConnectionTimeout(grpcHandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idleTimeout}),
		// Envoy's keepalive pings (when configured) are at least this far
		// apart; a client pinging more often is disconnected.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// Start listens and serves until ctx is done.
func (e *ExtAuthzServer) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("ext-authz-grpc")
	if e.opts.CertReady != nil {
		select {
		case <-e.opts.CertReady:
		case <-ctx.Done():
			return nil
		}
	}
	creds := insecure.NewCredentials()
	if e.opts.CertDir != "" {
		// certwatcher reloads the pair when it is rotated, without a restart.
		cw, err := certwatcher.New(filepath.Join(e.opts.CertDir, "tls.crt"), filepath.Join(e.opts.CertDir, "tls.key"))
		if err != nil {
			return err
		}
		go func() { _ = cw.Start(ctx) }()
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate})
	}
	ln, err := net.Listen("tcp", e.opts.BindAddress)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(append(GRPCServerOptions(), grpc.Creds(creds))...)
	authv3.RegisterAuthorizationServer(srv, &extAuthz{s: e.keys})
	healthpb.RegisterHealthServer(srv, e.health)
	reflection.Register(srv)

	e.addr <- ln.Addr()
	log.Info("serving Envoy ext_authz (gRPC)", "address", ln.Addr().String(), "tls", e.opts.CertDir != "")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	e.reportHealth()
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			e.reportHealth()
		case <-ctx.Done():
			// Watchers (Envoy's health checks) learn first, then calls in
			// flight finish, within the HTTP side's bound.
			e.health.Shutdown()
			stopped := make(chan struct{})
			go func() { srv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(shutdownTimeout):
				srv.Stop()
			}
			if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil
		}
	}
}

// reportHealth sets the health service's status, overall and for the
// Authorization service, from the key server's readiness: NOT_SERVING
// until its caches have synced, when every Check would be refused anyway.
func (e *ExtAuthzServer) reportHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if e.keys.Ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	e.health.SetServingStatus("", st)
	e.health.SetServingStatus(ExtAuthzService, st)
}

// extAuthz is the Authorization service.
type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
}

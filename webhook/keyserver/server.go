// Package keyserver is the HTTP server that validates keys for gateways
// (forward-auth; Envoy's gRPC ext_authz on a listener of its own), services
// (a JSON verify API) and the Kubernetes API server (TokenReview, on a
// listener of its own), and exchanges access key pairs for signed tokens.
// It answers from an in-memory index fed by informers: no API server call
// on the request path.
//
// By job: server.go routes and serves; wire.go holds what goes over the wire
// (request and response bodies, forward-auth headers); authz.go, verify.go,
// tokens.go, rotate.go and tokenreview.go are the front ends' handlers, and
// jwks.go publishes the token keys; check.go is forward-auth's decision,
// which /v1/authz and Envoy's gRPC ext_authz (extauthz.go, its listener;
// extauthz_request.go and extauthz_check.go, its wire format) both ask, and
// answer.go the headers of its answers, which both write; credentials.go
// reads and identifies a presented credential; origin.go reads the original
// request a gateway asks about, and policies.go has it decided by the
// KeyPolicies (internal/keypolicy); failurelimit.go, clientaddr.go and
// keylimits.go are the rate limits; metrics.go counts. Two packages beside
// it do the Kubernetes side: feed keeps the index, signing keys and
// KeyPolicies current from informers, statuswriter makes the key server's
// only writes (self-rotation requests, lastUsedAt).
package keyserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keylimit"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/ratelimit"
	"github.com/keyward/keyward/internal/signingkeys"
	"github.com/keyward/keyward/webhook/keyserver/statuswriter"
)

// Bounds on what a client may send; validation requests are small.
const (
	maxHeaderBytes    = 16 << 10
	maxBodyBytes      = 16 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 90 * time.Second
	shutdownTimeout   = 10 * time.Second
)

// DefaultAudience is the aud of tokens whose pair names no audiences.
const DefaultAudience = "keyward"

// Options configure the key server.
type Options struct {
	// BindAddress is host:port to listen on.
	BindAddress string
	// CertDir holds tls.crt and tls.key; empty means plain HTTP.
	CertDir string
	// Issuer is the iss of issued tokens and the base of the discovery
	// document's URLs.
	Issuer string
	// MaxTokenLifetime caps every token, whatever a pair allows.
	MaxTokenLifetime time.Duration
	// EnableDCETokenGET serves GET /v1/token?ak=&sk=&cycle= (off by
	// default: secrets in URLs end up in access logs).
	EnableDCETokenGET bool
	// FailureLimit is how many failed attempts a client address may make in
	// a burst; one more is allowed every FailureRefill.
	FailureLimit  int
	FailureRefill time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Host are believed: the client address of a request from
	// one of them is the right-most entry that is not itself a trusted
	// proxy, and the original request's host is its X-Forwarded-Host.
	// Empty: the peer is the client, whatever it forwards.
	TrustedProxies []netip.Prefix
	// DefaultPolicy is what forward-auth does for a host no KeyPolicy names
	// (--default-policy). The zero value refuses, as keypolicy.ModeDeny:
	// forgetting to set it must not open every API to every valid key.
	DefaultPolicy keypolicy.Mode
	// CertReady, when set, is closed once CertDir holds a certificate; the
	// server waits for it before listening.
	CertReady <-chan struct{}
	// Rotator rotates an APIKey for the self-rotate endpoint; nil disables it.
	Rotator Rotator
	// ConfirmRotationWait bounds the wait for the index to know a
	// self-rotated key before it is handed out (default 2s).
	ConfirmRotationWait time.Duration
	// SelfRotationBurst self-rotations of one APIKey are allowed at once,
	// then one per SelfRotationRefill; TokenBurst tokens for one
	// AccessKeyPair, then one per TokenRefill (zero: keylimits.go's
	// defaults).
	SelfRotationBurst  int
	SelfRotationRefill time.Duration
	TokenBurst         int
	TokenRefill        time.Duration
	// RateLimits counts requests against keys' spec.rateLimit and
	// KeyPolicies' per-key defaults; nil: a ratelimit.Local per server
	// (each replica counts on its own).
	RateLimits ratelimit.Store
	// DecisionLog configures the decision log (decisionlog.go); the zero
	// value logs nothing.
	DecisionLog DecisionLogOptions
	// TracerProvider, when set, traces every decision (tracing.go); nil
	// traces nothing and costs nothing.
	TracerProvider trace.TracerProvider
	Clock          clock.PassiveClock
}

// Server serves the key server's endpoints. It is a manager.Runnable.
type Server struct {
	opts    Options
	index   *keyindex.Index
	keys    atomic.Pointer[signingkeys.Loaded]
	synced  atomic.Pointer[func() bool]
	limiter *failureLimiter
	// addrLimiter is every address's own, larger budget across key ids.
	addrLimiter *failureLimiter
	// rotations and mints: per-key limits (keylimits.go).
	rotations, mints *keylimit.Limiter
	// rates counts keys' own rate limits (limits.go).
	rates    ratelimit.Store
	lastUsed *statuswriter.LastUsed
	// policies decide requests (nil: not loaded yet); namespaceLabels
	// serves their namespaceSelectors.
	policies        atomic.Pointer[keypolicy.Table]
	namespaceLabels atomic.Pointer[keypolicy.NamespaceLabels]
	handler         http.Handler
	addr            chan net.Addr
	// decisions is the decision log, nil when it is off; tracer is nil when
	// tracing is off.
	decisions *decisionLog
	tracer    trace.Tracer
}

// New builds the server and its routes. Feed it with feed.Add, and write
// its LastUsed back with a statuswriter.UsageWriter.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.FailureLimit == 0 {
		opts.FailureLimit = 20
	}
	if opts.FailureRefill == 0 {
		opts.FailureRefill = 3 * time.Second
	}
	if opts.ConfirmRotationWait == 0 {
		opts.ConfirmRotationWait = 2 * time.Second
	}
	if opts.Issuer == "" {
		opts.Issuer = "https://keyward.invalid"
	}
	s := &Server{
		opts:    opts,
		index:   keyindex.New(),
		limiter: newFailureLimiter(opts.FailureLimit, opts.FailureRefill, opts.Clock),
		addrLimiter: newFailureLimiter(opts.FailureLimit*addressBudgetFactor,
			opts.FailureRefill/addressBudgetFactor, opts.Clock),
		rotations: keylimit.New(opts.SelfRotationBurst, opts.SelfRotationRefill,
			DefaultSelfRotationBurst, DefaultSelfRotationRefill, opts.Clock),
		mints:    keylimit.New(opts.TokenBurst, opts.TokenRefill, DefaultTokenBurst, DefaultTokenRefill, opts.Clock),
		lastUsed: statuswriter.NewLastUsed(),
		rates:    opts.RateLimits,
		addr:     make(chan net.Addr, 1),
	}
	if s.rates == nil {
		s.rates = ratelimit.NewLocal(opts.Clock)
	}
	s.decisions = newDecisionLog(opts.DecisionLog, opts.Clock)
	if opts.TracerProvider != nil {
		s.tracer = opts.TracerProvider.Tracer(tracerName)
	}
	// No policies until someone sets them: a server without a feed (tests,
	// embeddings) decides by the default mode alone. The feed unsets them
	// until its informer has synced.
	s.policies.Store(keypolicy.NewTable(nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("POST /v1/verify", s.limited(frontendVerify, s.verify))
	mux.Handle("POST /v1/tokens", s.limited(frontendTokens, s.tokens))
	if opts.EnableDCETokenGET {
		mux.Handle("GET /v1/token", s.limited(frontendTokens, s.dceToken))
	}
	mux.Handle("POST /v1/keys/current/rotate", s.limited(frontendRotate, s.rotate))
	// TokenReview is served only on its own listener (TokenReviewServer).
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	authz := s.limited(frontendAuthz, s.authz)
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Forward-auth answers for any path below /v1/authz as it comes:
		// ServeMux would redirect "//" or ".." paths (Envoy appends the
		// client's path), and a gateway needs a decision, not a redirect.
		if p := r.URL.Path; p == "/v1/authz" || strings.HasPrefix(p, "/v1/authz/") {
			authz.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return s
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.Ready() {
		http.Error(w, "caches not synced", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// Ready reports whether the caches behind the index have synced.
func (s *Server) Ready() bool {
	f := s.synced.Load()
	return f != nil && (*f)()
}

// Handler exposes the routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Index is the server's key index: the feed keeps it current (tests load
// it directly).
func (s *Server) Index() *keyindex.Index { return s.index }

// LoadSigningKeys makes set, as of the server's clock, the keys tokens are
// signed and checked with; a nil set leaves none. A set that cannot be
// loaded changes nothing.
func (s *Server) LoadSigningKeys(set *signingkeys.KeySet) error {
	if set == nil {
		s.keys.Store(nil)
		return nil
	}
	loaded, err := signingkeys.Load(set, s.opts.Clock.Now())
	if err != nil {
		return err
	}
	s.keys.Store(loaded)
	return nil
}

// SetSynced tells the server how to know that what feeds it has synced
// (Ready, /readyz).
func (s *Server) SetSynced(synced func() bool) { s.synced.Store(&synced) }

// LastUsed is when each key last validated here, for a
// statuswriter.UsageWriter to write back.
func (s *Server) LastUsed() *statuswriter.LastUsed { return s.lastUsed }

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
	if s.opts.CertReady != nil {
		select {
		case <-s.opts.CertReady:
		case <-ctx.Done():
			return nil
		}
	}
	ln, err := net.Listen("tcp", s.opts.BindAddress)
	if err != nil {
		return err
	}
	if s.opts.CertDir != "" {
		// certwatcher reloads the pair when it is rotated, without a restart.
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
	if s.decisions != nil {
		go s.decisions.summarizeEvery(ctx.Done(), decisionLogSummaryEvery)
	}
	return serve(ctx, ln, s.handler)
}

// serve serves h on ln, with the key server's bounds, until ctx is done.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
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

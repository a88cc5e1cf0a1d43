// Package operator is the composition root: it assembles the Keyward manager
// from the controllers, the admission webhooks and the key server, with its
// flags, serving certificates, CA injection and the controllers' RBAC
// markers. main.go, the dev control plane (hack/dev), hack/bench, hack/soak
// and the tests of the whole assembly build it here, so they cannot drift.
//
// It sits at the top of the tree, above what it composes: nothing under
// controllers/, webhook/ or internal/ imports it (test/layout checks).
package operator

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/keyward/keyward/controllers"
	"github.com/keyward/keyward/controllers/accesskeypair"
	"github.com/keyward/keyward/controllers/apikey"
	"github.com/keyward/keyward/controllers/signingkey"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/ratelimit"
	"github.com/keyward/keyward/webhook/admission"
	"github.com/keyward/keyward/webhook/keyserver"
	"github.com/keyward/keyward/webhook/keyserver/feed"
	"github.com/keyward/keyward/webhook/keyserver/statuswriter"
)

// Options are the manager's command-line flags.
type Options struct {
	EnableControllers       bool
	EnableKeyServer         bool
	EnableAdmissionWebhooks bool

	KeyServerBindAddress string
	KeyServerCertDir     string
	OperatorNamespace    string
	// KeysNamespace holds the hash Secrets; empty means OperatorNamespace.
	KeysNamespace string

	// TokenReview listener: empty address disables it.
	TokenReviewBindAddress   string
	TokenReviewClientCA      string
	TokenReviewClusterGroups []string

	// ExtAuthzGRPCBindAddress is Envoy's gRPC ext_authz listener's address
	// (--ext-authz-grpc-bind-address); "0" or empty disables it.
	ExtAuthzGRPCBindAddress string

	MetricsBindAddress     string
	HealthProbeBindAddress string
	LeaderElect            bool
	LeaderElectionID       string
	WebhookPort            int
	WebhookCertDir         string
	// WebhookHost is the admission webhooks' listen host (all by default);
	// set by make dev, not a flag.
	WebhookHost string

	ExpiringSoonWindow time.Duration
	MaxPairsPerSubject int
	SigningKeyPeriod   time.Duration
	MaxTokenLifetime   time.Duration
	TokenIssuer        string
	EnableDCETokenGET  bool
	FailureBurst       int
	FailureRefill      time.Duration
	// MaxAPIKeysPerNamespace caps APIKeys per namespace
	// (--max-apikeys-per-namespace); 0: no cap.
	MaxAPIKeysPerNamespace int

	// TrustedProxies: peers whose X-Forwarded-For names the client the key
	// server counts failed attempts against (--trusted-proxies).
	TrustedProxies []netip.Prefix
	// RateLimitStore is where keys' rate limits are counted
	// (--rate-limit-store): "" in each key server replica on its own, or a
	// redis:// or rediss:// URL, exact across replicas.
	// RateLimitStoreFailure is what the key server does while that Redis
	// fails (--rate-limit-store-failure): open (the zero value) or closed.
	RateLimitStore        string
	RateLimitStoreFailure ratelimit.FailureMode
	// DefaultPolicy is what the key server does for a host no KeyPolicy
	// names (--default-policy); the zero value refuses (deny).
	DefaultPolicy keypolicy.Mode
	// Per-key limits on self-rotation and token minting (attack 10).
	SelfRotationBurst  int
	SelfRotationRefill time.Duration
	TokenBurst         int
	TokenRefill        time.Duration
	// AnnotationRotationBurst/Refill limit rotations by annotation per key.
	AnnotationRotationBurst  int
	AnnotationRotationRefill time.Duration
	CertProvisioning         string

	// The key server's decision log: refused requests always, accepted ones
	// with LogAcceptedDecisions (--log-accepted-decisions), at most
	// DecisionLogRate lines a second after a burst of DecisionLogBurst
	// (--decision-log-rate, --decision-log-burst); a rate of 0 (Options
	// built in code) turns it off.
	LogAcceptedDecisions bool
	DecisionLogRate      float64
	DecisionLogBurst     int

	// SkipControllerNameValidation lets tests run several managers in one
	// process; not a flag.
	SkipControllerNameValidation bool
}

// DefaultExtAuthzGRPCBindAddress is where the gRPC ext_authz listener
// listens unless told otherwise (the port Envoy's examples use).
const DefaultExtAuthzGRPCBindAddress = ":50051"

// DefaultOperatorNamespace is used when neither --operator-namespace nor
// POD_NAMESPACE says where the operator runs.
const DefaultOperatorNamespace = "keyward-system"

// BindFlags registers the manager's flags on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.EnableControllers, "enable-controllers", true, "Run the APIKey, AccessKeyPair and signing-key controllers (leader-elected).")
	fs.BoolVar(&o.EnableKeyServer, "enable-key-server", true, "Run the key server (validation, tokens, JWKS, and TokenReview with --token-review-bind-address) on every replica.")
	fs.BoolVar(&o.EnableAdmissionWebhooks, "enable-admission-webhooks", true, "Serve the validating admission webhooks for the Keyward CRDs.")
	fs.StringVar(&o.KeyServerBindAddress, "key-server-bind-address", ":8443", "Address the key server listens on.")
	fs.StringVar(&o.KeyServerCertDir, "key-server-cert-dir", "", "Directory with tls.crt and tls.key for the key server; empty serves plain HTTP.")
	fs.StringVar(&o.TokenReviewBindAddress, "token-review-bind-address", "", "Address of kube-apiserver's TokenReview webhook listener (TLS with the key server's certificate, client certificate required); empty disables it. TokenReview is never served on --key-server-bind-address.")
	fs.StringVar(&o.ExtAuthzGRPCBindAddress, "ext-authz-grpc-bind-address", DefaultExtAuthzGRPCBindAddress, "Address of the key server's gRPC listener for Envoy's ext_authz (envoy.service.auth.v3.Authorization/Check: Envoy Gateway, Istio, Contour, the Gateway API's ExternalAuth), with the gRPC health service and server reflection; TLS with --key-server-cert-dir's certificate, plaintext without one. 0 disables it.")
	fs.StringVar(&o.TokenReviewClientCA, "token-review-client-ca", "", "PEM file of the CA bundle whose client certificates the TokenReview listener accepts: any certificate it signed is accepted, so use a CA that signs kube-apiserver's webhook client certificate only. Read again when it changes.")
	fs.Func("token-review-cluster-groups", "Comma-separated <namespace>/<group> entries: a key of that namespace carrying that group also receives the cluster-wide group keyward:<group> (every group is keyward:<namespace>:<group> otherwise). Repeatable.", func(v string) error {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				o.TokenReviewClusterGroups = append(o.TokenReviewClusterGroups, e)
			}
		}
		return nil
	})
	fs.StringVar(&o.OperatorNamespace, "operator-namespace", envOr("POD_NAMESPACE", DefaultOperatorNamespace), "Namespace of the operator's own objects (signing keys, serving certificates, leader lease).")
	fs.StringVar(&o.KeysNamespace, "keys-namespace", "", "Namespace of the hash Secrets (one per key; only the operator writes there); empty means --operator-namespace. A namespace of their own keeps them out of the certificate rotator's unfiltered cache of the operator namespace.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader among replicas before running the controllers (the key server runs on every replica).")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", "keyward-controllers.keys.keyward.dev", "Name of the leader-election Lease.")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", "", "Directory with tls.crt and tls.key for the admission webhooks; empty uses controller-runtime's default.")
	fs.IntVar(&o.MaxAPIKeysPerNamespace, "max-apikeys-per-namespace", 0, "How many APIKeys a namespace may hold; 0 (the default) means no cap. Enforced at admission and re-checked by the controller.")
	fs.IntVar(&o.MaxPairsPerSubject, "max-pairs-per-subject", accesskeypair.DefaultMaxPerSubject, "How many AccessKeyPairs one subject may hold in a namespace.")
	fs.DurationVar(&o.SigningKeyPeriod, "signing-key-rotation-period", signingkey.DefaultPeriod, "How often the key server's ES256 signing key is replaced.")
	fs.DurationVar(&o.MaxTokenLifetime, "max-token-lifetime", signingkey.DefaultMaxTokenLifetime, "The longest lifetime of an issued token, whatever an AccessKeyPair allows; retired signing keys stay published this long.")
	fs.StringVar(&o.TokenIssuer, "token-issuer", "", "The iss of issued tokens and base URL of the discovery document; defaults to the key server's in-cluster Service URL.")
	fs.BoolVar(&o.EnableDCETokenGET, "enable-dce-token-get", false, "Serve DCE's GET /v1/token?ak=&sk=&cycle=. Off by default: a secret key in a URL ends up in access logs.")
	fs.IntVar(&o.FailureBurst, "failed-attempts-burst", 20, "Failed validations a client address may make in a burst before the key server answers 429.")
	fs.DurationVar(&o.FailureRefill, "failed-attempts-refill", 3*time.Second, "After the burst, one more failed attempt is allowed per this interval.")
	fs.Func("trusted-proxies", "Comma-separated CIDRs or addresses of the gateways and proxies in front of the key server (repeatable). A request from one of them is counted, for --failed-attempts-*, against the right-most X-Forwarded-For entry that is not one of them; from any other peer X-Forwarded-For is ignored. Empty (the default): the TCP peer is the client.", func(v string) error {
		p, err := keyserver.ParseTrustedProxies(v)
		o.TrustedProxies = append(o.TrustedProxies, p...)
		return err
	})
	fs.StringVar(&o.RateLimitStore, "rate-limit-store", "", "Where keys' rate limits (spec.rateLimit, KeyPolicy defaults) are counted: empty or \"local\" (the default) counts in each key server replica on its own, so a key may get up to its limit times the replicas; redis://[user:password@]host:port/db or rediss://… counts in that Redis, exact across replicas.")
	fs.Var(&o.RateLimitStoreFailure, "rate-limit-store-failure", "What the key server does for a rate-limited key while the --rate-limit-store Redis does not answer: \"open\" (the default: the request passes uncounted) or \"closed\" (429). Either way a Warning event on the key server's Pod and keyward_rate_limit_store_up say so.")
	o.DefaultPolicy = keypolicy.ModeDeny
	fs.Func("default-policy", "What the key server answers for a request whose host no KeyPolicy names: \"deny\" (the default: 403 NO_POLICY) or \"allow-valid-key\" (any valid key of any namespace passes, narrowed only by ?scope= and ?namespace=; what `make dev` runs).", func(v string) error {
		m, err := keypolicy.ParseMode(v)
		if err != nil {
			return err
		}
		o.DefaultPolicy = m
		return nil
	})
	fs.IntVar(&o.SelfRotationBurst, "self-rotation-burst", keyserver.DefaultSelfRotationBurst, "Self-rotations (POST /v1/keys/current/rotate) one APIKey may make in a burst before the key server answers 429; each costs the controllers a reconcile.")
	fs.DurationVar(&o.SelfRotationRefill, "self-rotation-refill", keyserver.DefaultSelfRotationRefill, "After the burst, one more self-rotation of an APIKey is allowed per this interval.")
	fs.IntVar(&o.TokenBurst, "token-burst", keyserver.DefaultTokenBurst, "Tokens (POST /v1/tokens, GET /v1/token) one AccessKeyPair may mint in a burst before the key server answers 429.")
	fs.DurationVar(&o.TokenRefill, "token-refill", keyserver.DefaultTokenRefill, "After the burst, one more token per AccessKeyPair is allowed per this interval (100ms: 10 a second).")
	fs.IntVar(&o.AnnotationRotationBurst, "annotation-rotation-burst", apikey.DefaultRequestedRotationBurst, "Rotations one APIKey may be asked for with the keys.keyward.dev/rotate annotation at once; more are deferred (not dropped) until the budget refills.")
	fs.DurationVar(&o.AnnotationRotationRefill, "annotation-rotation-refill", apikey.DefaultRequestedRotationRefill, "After the burst, one more rotation by annotation per APIKey per this interval.")
	fs.StringVar(&o.CertProvisioning, "cert-provisioning", CertsExternal, "Who provides serving certificates for the admission webhooks and key server: \"self\" (the operator creates, renews and injects them) or \"external\" (cert-manager or mounted files; or plain HTTP for the key server).")
	fs.BoolVar(&o.LogAcceptedDecisions, "log-accepted-decisions", false, "Write a decision log line (logger \"decision\") for every request the key server accepts too, not only for refused ones. Subject to --decision-log-rate.")
	fs.Float64Var(&o.DecisionLogRate, "decision-log-rate", keyserver.DefaultDecisionLogRate, "Decision log lines the key server writes per second, after a burst of --decision-log-burst; more are dropped and counted (keyward_key_server_decision_log_dropped_total, and a summary line every 10s). 0 turns the decision log off.")
	fs.IntVar(&o.DecisionLogBurst, "decision-log-burst", keyserver.DefaultDecisionLogBurst, "Decision log lines the key server may write at once before --decision-log-rate applies.")
	fs.DurationVar(&o.ExpiringSoonWindow, "expiring-soon-window", apikey.DefaultExpiringSoonWindow, "How long before a key expires it is reported as ExpiringSoon (Ready reason and event).")
}

func (o Options) keysNamespace() string {
	if o.KeysNamespace != "" {
		return o.KeysNamespace
	}
	return o.OperatorNamespace
}

// addTokenReview adds the TokenReview listener when it is enabled.
func addTokenReview(mgr ctrl.Manager, ks *keyserver.Server, o Options, certReady <-chan struct{}) error {
	tro, err := o.tokenReview(certReady)
	if err != nil || tro == nil {
		return err
	}
	trs, err := keyserver.NewTokenReviewServer(ks, *tro)
	if err != nil {
		return err
	}
	return mgr.Add(trs)
}

// tokenReview is the TokenReview listener's configuration, nil when it is
// disabled; flags that cannot work together are refused here, before
// anything starts.
func (o Options) tokenReview(certReady <-chan struct{}) (*keyserver.TokenReviewOptions, error) {
	if o.TokenReviewBindAddress == "" {
		if o.TokenReviewClientCA != "" || len(o.TokenReviewClusterGroups) > 0 {
			return nil, errors.New("--token-review-client-ca and --token-review-cluster-groups need --token-review-bind-address")
		}
		return nil, nil
	}
	if !o.EnableKeyServer {
		return nil, errors.New("--token-review-bind-address needs the key server (--enable-key-server)")
	}
	if o.KeyServerCertDir == "" || o.TokenReviewClientCA == "" {
		return nil, errors.New("--token-review-bind-address needs --key-server-cert-dir (TLS) and --token-review-client-ca (kube-apiserver's client certificate is what authorizes a TokenReview)")
	}
	groups, err := keyserver.ParseClusterGroups(o.TokenReviewClusterGroups)
	if err != nil {
		return nil, fmt.Errorf("--token-review-cluster-groups: %w", err)
	}
	return &keyserver.TokenReviewOptions{
		BindAddress: o.TokenReviewBindAddress, CertDir: o.KeyServerCertDir, ClientCAFile: o.TokenReviewClientCA,
		ClusterGroups: groups, CertReady: certReady,
	}, nil
}

// extAuthzEnabled: the gRPC ext_authz listener runs with the key server,
// unless its address is "0" (or empty, as Options built in code leave it).
func (o Options) extAuthzEnabled() bool {
	return o.EnableKeyServer && o.ExtAuthzGRPCBindAddress != "" && o.ExtAuthzGRPCBindAddress != "0"
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// NewManager builds a manager running the parts the options enable.
func NewManager(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if !o.EnableControllers && !o.EnableKeyServer && !o.EnableAdmissionWebhooks {
		return nil, errors.New("nothing to run: enable at least one of --enable-controllers, --enable-key-server, --enable-admission-webhooks")
	}
	if _, err := o.tokenReview(nil); err != nil {
		return nil, err
	}
	if !validRateLimitStore(o.RateLimitStore) {
		return nil, errRateLimitStoreURL
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  kube.Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:  o.HealthProbeBindAddress,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        o.LeaderElectionID,
		LeaderElectionNamespace: o.OperatorNamespace,
		// Release the lease on shutdown so a rolling update hands over at once.
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 webhook.NewServer(webhook.Options{Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir}),
		Cache:                         kube.CacheOptions(o.OperatorNamespace, o.keysNamespace()),
		Controller:                    config.Controller{SkipNameValidation: ptr.To(o.SkipControllerNameValidation)},
	})
	if err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	tp, err := setupTracing(mgr)
	if err != nil {
		return nil, err
	}

	if o.EnableControllers {
		if err := controllers.Setup(mgr, controllers.Options{
			ExpiringSoonWindow: o.ExpiringSoonWindow, MaxPairsPerSubject: o.MaxPairsPerSubject,
			OperatorNamespace: o.OperatorNamespace, KeysNamespace: o.keysNamespace(),
			SigningKeyPeriod: o.SigningKeyPeriod, MaxTokenLifetime: o.MaxTokenLifetime,
			AnnotationRotationBurst: o.AnnotationRotationBurst, AnnotationRotationRefill: o.AnnotationRotationRefill,
			MaxAPIKeysPerNamespace: o.MaxAPIKeysPerNamespace,
		}); err != nil {
			return nil, err
		}
	}
	webhookReady, keyServerReady, err := certRotators(mgr, cfg, o)
	if err != nil {
		return nil, err
	}
	if o.EnableAdmissionWebhooks {
		certExpiry.watch(certServerWebhook, o.WebhookCertDir)
	}
	if o.EnableKeyServer {
		certExpiry.watch(certServerKeyServer, o.KeyServerCertDir)
	}
	if o.EnableAdmissionWebhooks {
		setup := func() error {
			if err := admission.SetupPairLimit(mgr, o.MaxPairsPerSubject); err != nil {
				return err
			}
			if err := admission.SetupAPIKeyReferences(mgr); err != nil {
				return err
			}
			if err := admission.SetupAPIKeyLimit(mgr, o.MaxAPIKeysPerNamespace); err != nil {
				return err
			}
			return admission.SetupAPIKeyAccess(mgr)
		}
		if webhookReady == nil {
			err = setup()
		} else {
			// The webhook server reads its certificate when it starts.
			err = mgr.Add(afterReady{ready: webhookReady, setup: setup})
		}
		if err != nil {
			return nil, err
		}
	}
	if o.EnableKeyServer {
		if err := addKeyServer(mgr, cfg, o, keyServerReady, tp); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// addKeyServer adds the key server, its caches and its lastUsedAt writer.
func addKeyServer(mgr ctrl.Manager, cfg *rest.Config, o Options, certReady <-chan struct{}, tp trace.TracerProvider) error {
	issuer := o.TokenIssuer
	if issuer == "" {
		issuer = "https://keyward-key-server." + o.OperatorNamespace + ".svc:8443"
	}
	// The key server caches no APIKeys: self-rotation and lastUsedAt read
	// and write them live.
	live, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return err
	}
	store, closer, err := rateLimitStore(o, mgr.GetEventRecorder("keyward-key-server"), podOf(os.Getenv), mgr.GetLogger().WithName("key-server"))
	if err != nil {
		return err
	}
	if closer != nil {
		if err := mgr.Add(closeOnStop{closer}); err != nil {
			return err
		}
	}
	ks := keyserver.New(keyserver.Options{
		BindAddress: o.KeyServerBindAddress, CertDir: o.KeyServerCertDir,
		Issuer: issuer, MaxTokenLifetime: o.MaxTokenLifetime, EnableDCETokenGET: o.EnableDCETokenGET,
		FailureLimit: o.FailureBurst, FailureRefill: o.FailureRefill, TrustedProxies: o.TrustedProxies, CertReady: certReady,
		DefaultPolicy:     o.DefaultPolicy,
		SelfRotationBurst: o.SelfRotationBurst, SelfRotationRefill: o.SelfRotationRefill,
		TokenBurst: o.TokenBurst, TokenRefill: o.TokenRefill,
		Rotator:    &statuswriter.StatusRotator{Client: live, Clock: clock.RealClock{}},
		RateLimits: store,
		DecisionLog: keyserver.DecisionLogOptions{
			Logger: mgr.GetLogger().WithName("decision"), Accepted: o.LogAcceptedDecisions,
			Rate: o.DecisionLogRate, Burst: o.DecisionLogBurst,
		},
		TracerProvider: tp,
	})
	if err := feed.Add(mgr, ks, o.OperatorNamespace, o.keysNamespace()); err != nil {
		return err
	}
	if err := mgr.Add(ks); err != nil {
		return err
	}
	if err := mgr.Add(&statuswriter.UsageWriter{LastUsed: ks.LastUsed(), Client: live}); err != nil {
		return err
	}
	if err := addTokenReview(mgr, ks, o, certReady); err != nil {
		return err
	}
	if o.extAuthzEnabled() {
		if err := mgr.Add(keyserver.NewExtAuthzServer(ks, keyserver.ExtAuthzOptions{
			BindAddress: o.ExtAuthzGRPCBindAddress, CertDir: o.KeyServerCertDir, CertReady: certReady,
		})); err != nil {
			return err
		}
	}
	return mgr.AddReadyzCheck("key-server-caches", func(*http.Request) error {
		if !ks.Ready() {
			return errors.New("the key server's caches have not synced")
		}
		return nil
	})
}

package keyserver

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Front ends, the "frontend" label of the metrics.
const (
	frontendAuthz       = "authz"
	frontendVerify      = "verify"
	frontendTokens      = "tokens"
	frontendTokenReview = "tokenreview"
	frontendRotate      = "rotate"
	frontendExtAuthz    = "extauthz"
)

// Labels are bounded sets (front end, result code): never a key, an id or
// an address.
var (
	validations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_key_server_requests_total",
		Help: "Key server requests by front end and result (VALID, NOT_FOUND, EXPIRED, RATE_LIMITED, …).",
	}, []string{"frontend", "result"})
	// policyDecisions: one per decision on a valid key (forward-auth and
	// verify with a policy or host). The policy label is "namespace/name"
	// of a policy that exists (ForgetPolicy drops a deleted one's), or ""
	// when none decided: never a value a client chose.
	policyDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_key_server_policy_decisions_total",
		Help: "Decisions on valid keys by KeyPolicy (namespace/name, empty for none) and code (OK, NO_POLICY, WRONG_NAMESPACE, …).",
	}, []string{"policy", "code"})
	latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyward_key_server_request_duration_seconds",
		Help:    "Time to answer a key server request, by front end.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"frontend"})
)

func init() {
	metrics.Registry.MustRegister(validations, policyDecisions, latency)
}

// outcome is what a handler reports to the wrapper: its result code for the
// metrics. Handlers count failed attempts themselves (limitFailure), since
// only they know the credential's key id and may still answer 429.
type outcome struct {
	result string
}

// Results of refusals that are not a key's validation code.
const (
	resultRateLimited = "RATE_LIMITED"
	// resultTwoCredentials: the request carried more than one credential.
	resultTwoCredentials = "TWO_CREDENTIALS"
	// resultNotReady: the KeyPolicies are not loaded yet.
	resultNotReady = "NOT_READY"
	// resultBadRequest: a request that could not be read (too many scopes,
	// headers too large, a gateway's bad configuration).
	resultBadRequest = "BAD_REQUEST"
)

// limited wraps a handler with the body bound and the metrics.
func (s *Server) limited(frontend string, h func(http.ResponseWriter, *http.Request) outcome) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now() // latency is a measurement, not a decision: wall clock
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		o := h(w, r)
		validations.WithLabelValues(frontend, o.result).Inc()
		latency.WithLabelValues(frontend).Observe(time.Since(start).Seconds())
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

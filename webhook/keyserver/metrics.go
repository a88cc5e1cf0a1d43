package keyserver

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keyward/keyward/internal/keypolicy"
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
	metrics.Registry.MustRegister(validations, policyDecisions, latency, decisionLogDropped)
}

// The hot path resolves each labelled child once: WithLabelValues hashes
// the labels and takes the vector's lock on every call, where a child's Inc
// and Observe are single atomic operations. The caches below are read
// without a lock (sync.Map), and are bounded as the labels are: results and
// codes are constants, policies are those that exist (ForgetPolicy drops a
// deleted one's entries along with its series).

// resultCounters are one front end's validation counters, by result.
type resultCounters struct {
	frontend string
	byResult sync.Map // result string → prometheus.Counter
}

func (c *resultCounters) inc(result string) {
	if v, ok := c.byResult.Load(result); ok {
		v.(prometheus.Counter).Inc()
		return
	}
	counter := validations.WithLabelValues(c.frontend, result)
	c.byResult.Store(result, counter)
	counter.Inc()
}

// decisionKey is a policyDecisions series.
type decisionKey struct {
	policy keypolicy.Ref
	code   keypolicy.Code
}

var (
	// decisionCounters: decisionKey → prometheus.Counter.
	decisionCounters sync.Map
	// policyLabels: keypolicy.Ref → its label, "namespace/name", built once
	// rather than per request (the decision counter and the
	// X-Keyward-Policy header both want it).
	policyLabels sync.Map
)

// countDecision counts d in policyDecisions.
func countDecision(d keypolicy.Decision) {
	k := decisionKey{policy: d.Policy, code: d.Code}
	if v, ok := decisionCounters.Load(k); ok {
		v.(prometheus.Counter).Inc()
		return
	}
	counter := policyDecisions.WithLabelValues(policyLabel(d.Policy), string(d.Code))
	decisionCounters.Store(k, counter)
	counter.Inc()
}

// policyLabel is the metrics label of a policy: "namespace/name", or ""
// when none decided (the default mode, or no policy found).
func policyLabel(ref keypolicy.Ref) string {
	if ref.IsZero() {
		return ""
	}
	if v, ok := policyLabels.Load(ref); ok {
		return v.(string)
	}
	label := ref.String()
	policyLabels.Store(ref, label)
	return label
}

// forgetPolicyMetrics drops a deleted policy's decision series and cached
// entries. A request still deciding by the old table may count one more
// decision afterwards, recreating its series, as WithLabelValues alone did.
func forgetPolicyMetrics(ref keypolicy.Ref) {
	decisionCounters.Range(func(k, _ any) bool {
		if k.(decisionKey).policy == ref {
			decisionCounters.Delete(k)
		}
		return true
	})
	policyLabels.Delete(ref)
	policyDecisions.DeletePartialMatch(map[string]string{"policy": ref.String()})
}

// outcome is what a handler reports to the wrapper: its result code for the
// metrics. Handlers count failed attempts themselves (limitFailure), since
// only they know the credential's key id and may still answer 429.
type outcome struct {
	result string
	// accepted: the request was let through (forward-auth's 200, verify's
	// valid, a token issued); for the decision log and spans.
	accepted bool
	// key is the key whose credential validated (zero when none did), and
	// policy the KeyPolicy that decided, when one did.
	key    identity
	policy keypolicy.Ref
	// client is the address the decision was about, when the handler read
	// it; zero: the wrapper reads the request's.
	client netip.Addr
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
	counts := &resultCounters{frontend: frontend}
	observe := latency.WithLabelValues(frontend)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now() // latency is a measurement, not a decision: wall clock
		// net/http gives a request without a body http.NoBody (forward-auth
		// checks are GETs): nothing to bound, and no reader to allocate.
		if r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		var span trace.Span
		if s.tracer != nil {
			r, span = s.startSpan(r, frontend)
		}
		o := h(w, r)
		counts.inc(o.result)
		observe.Observe(time.Since(start).Seconds())
		if span != nil {
			endSpan(span, frontend, &o)
		}
		s.recordDecision(frontend, &o, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

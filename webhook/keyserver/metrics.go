package keyserver

import (
	"encoding/json"
	"net/http"
	"strconv"
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
)

// Labels are bounded sets (front end, result code): never a key, an id or
// an address.
var (
	validations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_key_server_requests_total",
		Help: "Key server requests by front end and result (VALID, NOT_FOUND, EXPIRED, RATE_LIMITED, …).",
	}, []string{"frontend", "result"})
	latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyward_key_server_request_duration_seconds",
		Help:    "Time to answer a key server request, by front end.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"frontend"})
)

func init() {
	metrics.Registry.MustRegister(validations, latency)
}

// outcome is what a handler reports to the wrapper: its result code for the
// metrics, and whether it counts as a failed attempt for the limiter.
type outcome struct {
	result string
	failed bool
}

const resultRateLimited = "RATE_LIMITED"

// limited wraps a handler with the per-address failure limit, the body
// bound and the metrics.
func (s *Server) limited(frontend string, h func(http.ResponseWriter, *http.Request) outcome) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now() // latency is a measurement, not a decision: wall clock
		addr := clientAddr(r)
		if wait, blocked := s.limiter.blocked(addr); blocked {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
			writeJSON(w, http.StatusTooManyRequests, errorBody{Error: "rate_limited", Message: "too many failed attempts from this address; retry later"})
			validations.WithLabelValues(frontend, resultRateLimited).Inc()
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		o := h(w, r)
		if o.failed {
			s.limiter.fail(addr)
		}
		validations.WithLabelValues(frontend, o.result).Inc()
		latency.WithLabelValues(frontend).Observe(time.Since(start).Seconds())
	})
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

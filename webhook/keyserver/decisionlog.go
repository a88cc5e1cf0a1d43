package keyserver

import (
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/keyward/keyward/internal/keyindex"
)

// The decision log: one structured line per refused request and, when
// asked, per accepted one, written by the front ends' wrappers (limited,
// Check) from the outcome a handler returns. A line names the key only by
// its public identity, and only when its credential validated: a credential
// that did not validate names nothing the server can trust, and anything
// taken from it (a key id a client chose) would let clients write to the log.
// Lines are rate-limited, so a flood of refusals cannot fill a disk; what is
// dropped is counted and summed up in one line now and then.

// Defaults of the decision log's rate limit (--decision-log-rate, -burst).
const (
	DefaultDecisionLogRate  = 50
	DefaultDecisionLogBurst = 100
	// decisionLogSummaryEvery: how often the count of dropped lines is
	// logged, when there is one.
	decisionLogSummaryEvery = 10 * time.Second
)

// DecisionLogOptions configure the decision log.
type DecisionLogOptions struct {
	// Logger writes the lines (the manager's, named "decision"); a logger
	// without a sink disables the decision log.
	Logger logr.Logger
	// Accepted logs accepted requests too (--log-accepted-decisions);
	// refused ones are always logged.
	Accepted bool
	// Rate lines a second are written, after a burst of Burst; zero or
	// less disables the decision log.
	Rate  float64
	Burst int
}

var decisionLogDropped = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "keyward_key_server_decision_log_dropped_total",
	Help: "Decision log lines not written because of the decision log's rate limit (--decision-log-rate).",
})

// identity is a validated key's public identity, as the decision log and
// spans name it: never the credential.
type identity struct {
	namespace, name, subject, keyID string
}

// identityFrom is res's public identity; the zero identity unless res
// validated (or validated with too few scopes, as verify answers it).
func identityFrom(res keyindex.Result) identity {
	if res.Code != keyindex.Valid && res.Code != keyindex.InsufficientScope {
		return identity{}
	}
	return identity{namespace: res.Namespace, name: res.Name, subject: res.Subject, keyID: res.KeyID}
}

// decisionLog writes the decision log.
type decisionLog struct {
	log      logr.Logger
	accepted bool
	limit    *rate.Limiter
	clock    clock.PassiveClock
	// dropped counts lines dropped since the last summary.
	dropped atomic.Uint64
}

// newDecisionLog is nil when o disables the decision log.
func newDecisionLog(o DecisionLogOptions, c clock.PassiveClock) *decisionLog {
	if o.Logger.GetSink() == nil || o.Rate <= 0 {
		return nil
	}
	burst := o.Burst
	if burst < 1 {
		burst = 1
	}
	return &decisionLog{log: o.Logger, accepted: o.Accepted, limit: rate.NewLimiter(rate.Limit(o.Rate), burst), clock: c}
}

// record logs one decision of frontend; client is the address it was about.
// An accepted request with accepted lines off costs a comparison.
func (d *decisionLog) record(frontend string, o *outcome, client netip.Addr) {
	if o.accepted && !d.accepted {
		return
	}
	now := d.clock.Now()
	if !d.limit.AllowN(now, 1) {
		d.dropped.Add(1)
		decisionLogDropped.Inc()
		return
	}
	msg := "refused"
	if o.accepted {
		msg = "accepted"
	}
	kv := []any{
		"time", now.UTC().Format(time.RFC3339Nano),
		"frontend", frontend,
		"code", o.result,
		"client", clientLabel(client),
	}
	if id := o.key; id != (identity{}) {
		kv = append(kv, "namespace", id.namespace, "name", id.name, "subject", id.subject, "keyID", id.keyID)
	}
	if !o.policy.IsZero() {
		kv = append(kv, "policy", policyLabel(o.policy))
	}
	d.log.Info(msg, kv...)
}

// summarize logs how many lines were dropped since the last summary, if any.
func (d *decisionLog) summarize() {
	if n := d.dropped.Swap(0); n > 0 {
		d.log.Info("decision log lines dropped", "time", d.clock.Now().UTC().Format(time.RFC3339Nano),
			"dropped", n, "reason", "rate limit (--decision-log-rate)")
	}
}

// summarizeEvery calls summarize every interval until done is closed.
func (d *decisionLog) summarizeEvery(done <-chan struct{}, interval time.Duration) {
	c, ok := d.clock.(clock.WithTicker)
	if !ok {
		c = clock.RealClock{}
	}
	t := c.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			d.summarize()
			return
		case <-t.C():
			d.summarize()
		}
	}
}

func clientLabel(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// recordDecision logs o, a decision of frontend on r (nil for gRPC), when
// the decision log is on; the client is o's, or else r's client address.
func (s *Server) recordDecision(frontend string, o *outcome, r *http.Request) {
	d := s.decisions
	if d == nil || (o.accepted && !d.accepted) {
		return
	}
	client := o.client
	if !client.IsValid() && r != nil {
		client = clientAddr(r, s.opts.TrustedProxies)
	}
	d.record(frontend, o, client)
}

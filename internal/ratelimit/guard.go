package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// FailureMode is what a Guard answers when its store cannot decide
// (--rate-limit-store-failure).
type FailureMode string

const (
	// FailOpen allows the request, uncounted: a Redis outage lifts the
	// limits rather than refusing every limited key. The default.
	FailOpen FailureMode = "open"
	// FailClosed refuses the request (429): a Redis outage refuses every
	// limited key rather than letting any past its limit.
	FailClosed FailureMode = "closed"
)

// ParseFailureMode parses --rate-limit-store-failure: "open" or "closed".
func ParseFailureMode(s string) (FailureMode, error) {
	switch m := FailureMode(s); m {
	case FailOpen, FailClosed:
		return m, nil
	}
	return "", fmt.Errorf("rate-limit store failure mode %q: want open or closed", s)
}

// String is the mode's flag value; the zero FailureMode is FailOpen.
func (m FailureMode) String() string {
	if m == "" {
		return string(FailOpen)
	}
	return string(m)
}

// Set parses a flag value into m (pflag.Value); m is unchanged on error.
func (m *FailureMode) Set(s string) error {
	p, err := ParseFailureMode(s)
	if err != nil {
		return err
	}
	*m = p
	return nil
}

// Type names the flag's value type (pflag.Value).
func (*FailureMode) Type() string { return "open|closed" }

const (
	// DefaultProbeInterval: while the store is unavailable, one request
	// per interval tries it; the others are answered by the failure mode
	// at once, without waiting for a store that is down.
	DefaultProbeInterval = time.Second
	// DefaultClosedRetryAfter is the Retry-After of a request refused
	// because the store failed (FailClosed).
	DefaultClosedRetryAfter = time.Second
	// DefaultFailuresToDown: a store that fails this many requests in a row
	// is unavailable. A single slow round trip on a busy node only answers
	// its own request by the failure mode: with fail-closed, taking the
	// store down for it would refuse every limited key for a probe
	// interval.
	DefaultFailuresToDown = 3
)

// Metrics of the store in use. No label names a key or a bucket.
var (
	storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyward_rate_limit_store_errors_total",
		Help: "Rate-limit store calls that failed (Redis unreachable or slower than its timeout); the request was answered by --rate-limit-store-failure.",
	})
	storeUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keyward_rate_limit_store_up",
		Help: "1 while the rate-limit store answers, 0 from a few failed requests in a row until it answers again.",
	})
	unchecked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyward_rate_limit_unchecked_total",
		Help: "Requests of limited keys answered without the rate-limit store (it was failing), by decision (allowed: fail open, refused: fail closed).",
	}, []string{"decision"})
)

func init() {
	storeUp.Set(1)
	metrics.Registry.MustRegister(storeErrors, storeUp, unchecked)
}

func decision(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "refused"
}

// GuardOptions configure NewGuard. Zero values take the defaults.
type GuardOptions struct {
	Mode FailureMode
	// Clock paces the probes (clock.RealClock when nil).
	Clock clock.PassiveClock
	// OnTransition is called once when the store becomes unavailable (with
	// the error that showed it) and once when it is available again (nil),
	// not per request. Calls are in order, one at a time, on the request
	// that saw the change: it must not block (a Warning event through an
	// EventRecorder does not).
	OnTransition func(available bool, err error)
	// ProbeInterval: DefaultProbeInterval.
	ProbeInterval time.Duration
	// FailuresToDown: DefaultFailuresToDown.
	FailuresToDown int
	// ClosedRetryAfter: DefaultClosedRetryAfter.
	ClosedRetryAfter time.Duration
}

// Guard is a Store that never fails: when its store does, it answers by the
// failure mode (Result.Unchecked) and counts the error in
// keyward_rate_limit_store_errors_total; after FailuresToDown failures in a
// row it reports the store unavailable (keyward_rate_limit_store_up 0,
// OnTransition). While unavailable it does not wait on the store for every
// request: one request per probe interval tries it, and the first that it
// answers makes it available again.
type Guard struct {
	store      Store
	mode       FailureMode
	clock      clock.PassiveClock
	epoch      time.Time
	interval   time.Duration
	retryAfter time.Duration
	notify     func(bool, error)

	threshold int64

	down      atomic.Bool
	failures  atomic.Int64 // in a row, while up
	nextProbe atomic.Int64 // time.Duration since epoch
	mu        sync.Mutex   // orders transitions and their notifications
}

// NewGuard guards store.
func NewGuard(store Store, o GuardOptions) *Guard {
	g := &Guard{store: store, mode: o.Mode, clock: o.Clock, interval: o.ProbeInterval, retryAfter: o.ClosedRetryAfter, notify: o.OnTransition}
	if g.mode == "" {
		g.mode = FailOpen
	}
	if g.clock == nil {
		g.clock = clock.RealClock{}
	}
	if g.interval <= 0 {
		g.interval = DefaultProbeInterval
	}
	if g.threshold = int64(o.FailuresToDown); g.threshold <= 0 {
		g.threshold = DefaultFailuresToDown
	}
	if g.retryAfter <= 0 {
		g.retryAfter = DefaultClosedRetryAfter
	}
	if g.notify == nil {
		g.notify = func(bool, error) {}
	}
	g.epoch = g.clock.Now()
	storeUp.Set(1)
	return g
}

// Allow implements Store; its error is always nil.
func (g *Guard) Allow(ctx context.Context, bucket string, l Limit) (Result, error) {
	if g.down.Load() && !g.probe() {
		return g.fallback(true), nil
	}
	r, err := g.store.Allow(ctx, bucket, l)
	switch {
	case err == nil:
		if g.down.Load() {
			g.transition(false, nil)
		}
		if g.failures.Load() != 0 { // no write, so no shared cache line, per request
			g.failures.Store(0)
		}
		return r, nil
	case ctx.Err() != nil:
		// The caller gave up (a client that hung up): says nothing about
		// the store, whose own timeout did not fire.
		return g.fallback(false), nil
	default:
		storeErrors.Inc()
		if g.down.Load() || g.failures.Add(1) >= g.threshold {
			g.transition(true, err)
		}
		return g.fallback(true), nil
	}
}

// Available reports whether the store is taken to be up: false from
// FailuresToDown failures in a row until it answers a probe.
func (g *Guard) Available() bool { return !g.down.Load() }

// probe reports whether this request, while the store is down, is the one
// of its probe interval that tries the store.
func (g *Guard) probe() bool {
	now := int64(g.clock.Since(g.epoch))
	next := g.nextProbe.Load()
	return now >= next && g.nextProbe.CompareAndSwap(next, now+int64(g.interval))
}

// transition records the store as down (with the error) or up, notifying
// on a change.
func (g *Guard) transition(down bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if down {
		g.nextProbe.Store(int64(g.clock.Since(g.epoch) + g.interval))
	}
	if g.down.Load() == down {
		return
	}
	g.down.Store(down)
	g.failures.Store(0)
	if down {
		storeUp.Set(0)
	} else {
		storeUp.Set(1)
	}
	g.notify(!down, err)
}

// fallback is the failure mode's answer; counted says whether it is one of
// keyward_rate_limit_unchecked_total.
func (g *Guard) fallback(counted bool) Result {
	r := Result{Unchecked: true, Allowed: g.mode == FailOpen}
	if !r.Allowed {
		r.RetryAfter = g.retryAfter
	}
	if counted {
		unchecked.WithLabelValues(decision(r.Allowed)).Inc()
	}
	return r
}

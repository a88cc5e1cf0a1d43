package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/ratelimit"
	"github.com/keyward/keyward/webhook/keyserver"
)

// Figure 7: the hot path (issue 15, item 6). GET /v1/authz answered 200
// with an API key, against the bare handler given the same request, in
// interleaved slices of one closed-loop run per round, for each scenario:
// no limits configured, a per-key rate limit counted locally, and one
// counted in Redis. The key server is a real one (keyserver.New, served by
// its own Start on loopback, with its timeouts), its index loaded directly:
// no API server, so the figure runs in seconds and nothing else in the
// process competes with it.
const (
	hotKeys = 1_000
	// hotSlice is how long one side holds the load before it switches to
	// the other: short against the machine's drift (other jobs' bursts),
	// long against the drain at each switch (the requests in flight, a
	// millisecond or two).
	hotSlice = 50 * time.Millisecond
	// Targets of issue 15: within 10% of the bare handler with no limits,
	// 15% with a local rate limit. Redis is reported (a network round trip
	// per request has no floor here).
	targetHotNone  = 0.9
	targetHotLocal = 0.85
)

// hotScenario is one configuration of the key server measured by figure 7.
type hotScenario struct {
	name, title string
	target      float64 // 0: reported, no target
	// setup configures the key server and the keys' records before the
	// server starts; stop (may be nil) runs after the scenario. An error
	// wrapping errScenarioUnavailable reports the scenario as not measured
	// (redis-server not installed, say) instead of failing the run.
	setup func(ctx context.Context, o *keyserver.Options, recs []*hashsecret.Record) (stop func(), err error)
	// limited: the answers carry the RateLimit headers (the limit was
	// counted), which the bench checks.
	limited bool
}

var errScenarioUnavailable = errors.New("not available here")

// hotLimit is the rate limit of the limited scenarios: far above what the
// bench sends each key (every answer must be a 200: the figure is the cost
// of counting, not of refusing), at the schema's maximum.
var hotLimit = hashsecret.RateLimit{Requests: 1_000_000, Period: time.Second}

func limitEvery(recs []*hashsecret.Record) {
	for _, r := range recs {
		l := hotLimit
		r.RateLimit = &l
	}
}

var hotScenarios = []hotScenario{
	{name: "none", title: "no limits configured", target: targetHotNone,
		setup: func(context.Context, *keyserver.Options, []*hashsecret.Record) (func(), error) { return nil, nil }},
	{name: "local", title: "a per-key rate limit, local store (never reached)", target: targetHotLocal, limited: true,
		setup: func(_ context.Context, _ *keyserver.Options, recs []*hashsecret.Record) (func(), error) {
			limitEvery(recs) // the key server's default store is the local one
			return nil, nil
		}},
	{name: "redis", title: "a per-key rate limit, Redis store (never reached)", limited: true,
		setup: func(ctx context.Context, o *keyserver.Options, recs []*hashsecret.Record) (func(), error) {
			addr, stop, err := startRedis(ctx)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errScenarioUnavailable, err)
			}
			store, err := ratelimit.NewRedis("redis://" + addr + "/0")
			if err != nil {
				stop()
				return nil, err
			}
			// As the operator builds it for --rate-limit-store=redis://…
			// (--rate-limit-store-failure=open).
			o.RateLimits = ratelimit.NewGuard(store, ratelimit.GuardOptions{})
			limitEvery(recs)
			return func() { _ = store.Close(); stop() }, nil
		}},
}

// Sides of a round: the load switches between them.
const (
	sideBare    = iota // the bare handler
	sideHeaders        // the bare handler writing /v1/authz's answer headers
	sideAuthz          // the key server
	nSides
)

type hotRound struct {
	Rate [nSides]float64       // closed-loop 200s per second, each over the time it held the load
	CPU  [nSides]time.Duration // process CPU per request, each over its own slices
}

func (r hotRound) ratio() float64 { return r.Rate[sideAuthz] / r.Rate[sideBare] }

// cpuRatio is the bare handler's CPU per request over the key server's:
// the capacity ratio of a CPU-bound process, less exposed than rates to
// how much CPU other jobs leave (though under a heavy load, CPU per request
// grows too).
func (r hotRound) cpuRatio() float64 { return float64(r.CPU[sideBare]) / float64(r.CPU[sideAuthz]) }

// headersRatio is what the answer's headers alone cost: the bare handler
// writing them, over the bare handler.
func (r hotRound) headersRatio() float64 { return r.Rate[sideHeaders] / r.Rate[sideBare] }

type hotScenarioResult struct {
	Scenario hotScenario
	Missing  string // why it was not measured
	Rounds   []hotRound
	Profile  *profileSummary // a closed-loop run of /v1/authz alone, profiled
}

// ratio is the median of the rounds' ratios, and their lowest and highest.
func (h *hotScenarioResult) ratio() (med, lo, hi float64) {
	return h.medianOf(hotRound.ratio)
}

// cpuRatio is the same for the CPU per request.
func (h *hotScenarioResult) cpuRatio() (med, lo, hi float64) {
	return h.medianOf(hotRound.cpuRatio)
}

// headersRatio is the same for the bare handler writing the headers.
func (h *hotScenarioResult) headersRatio() (med, lo, hi float64) {
	return h.medianOf(hotRound.headersRatio)
}

func (h *hotScenarioResult) medianOf(f func(hotRound) float64) (med, lo, hi float64) {
	rs := make([]float64, 0, len(h.Rounds))
	for _, r := range h.Rounds {
		rs = append(rs, f(r))
	}
	slices.Sort(rs)
	if len(rs) == 0 {
		return 0, 0, 0
	}
	return medianOf(rs), rs[0], rs[len(rs)-1]
}

// cpu is the median over the rounds of a side's CPU per request.
func (h *hotScenarioResult) cpu(side int) time.Duration {
	var d []time.Duration
	for _, r := range h.Rounds {
		d = append(d, r.CPU[side])
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// hotpathResult is figure 7.
type hotpathResult struct {
	Scenarios []*hotScenarioResult
	// Redis is the Redis round trip (nil when redis-server could not be
	// started: RedisErr says why).
	Redis    *redisRTT
	RedisErr string
	Conc     int
	RunDur   time.Duration
	Slice    time.Duration
	Keys     int
}

func benchHotPath(ctx context.Context, lg *loadGen, rounds int) (*hotpathResult, error) {
	progress("figure 7: GET /v1/authz (API key) vs the bare handler, same requests, interleaved %s slices of closed-loop runs", hotSlice)
	res := &hotpathResult{Conc: 8 * runtime.GOMAXPROCS(0), RunDur: lg.m.probeDur, Slice: hotSlice, Keys: hotKeys}
	bareURL, err := bareServer(ctx)
	if err != nil {
		return nil, err
	}
	for _, sc := range hotScenarios {
		sr := &hotScenarioResult{Scenario: sc}
		res.Scenarios = append(res.Scenarios, sr)
		err := benchHotScenario(ctx, lg, sr, bareURL, rounds, res.Conc)
		if errors.Is(err, errScenarioUnavailable) {
			sr.Missing = err.Error()
			progress("  %s: not measured: %s", sc.title, sr.Missing)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("figure 7, %s: %w", sc.title, err)
		}
	}
	progress("  the Redis round trip: PING over loopback to a redis-server started for it")
	if res.Redis, err = measureRedisRTT(ctx, res.Conc, lg.m.probeDur); err != nil {
		res.RedisErr = err.Error()
		progress("  not measured: %v", err)
	} else {
		rt := res.Redis
		progress("  Redis %s PING: one connection p50 %s p99 %s; %d connections %.0f/s, p50 %s p99 %s", rt.Version,
			fmtDur(rt.SerialP50), fmtDur(rt.SerialP99), rt.Conc, rt.ConcRate, fmtDur(rt.ConcP50), fmtDur(rt.ConcP99))
		progress("  the Redis store's Allow: one at a time p50 %s p99 %s; %d at once %.0f/s, p50 %s p99 %s, %s CPU per call",
			fmtDur(rt.AllowP50), fmtDur(rt.AllowP99), rt.Conc, rt.AllowConcRate, fmtDur(rt.AllowConcP50), fmtDur(rt.AllowConcP99), fmtDur(rt.AllowCPU))
	}
	return res, nil
}

func benchHotScenario(ctx context.Context, lg *loadGen, sr *hotScenarioResult, bareURL string, rounds, conc int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs, keys, err := fleet(hotKeys, time.Now())
	if err != nil {
		return err
	}
	opts := keyserver.Options{BindAddress: "127.0.0.1:0", DefaultPolicy: keypolicy.ModeAllowValidKey}
	stop, err := sr.Scenario.setup(ctx, &opts, recs)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return err
	}
	s := keyserver.New(opts)
	for _, r := range recs {
		if err := s.Index().Upsert(hashsecret.Name(r.Kind, r.Namespace, r.Name), r); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Start(ctx) }()
	addr, err := s.Addr(ctx)
	if err != nil {
		return err
	}
	base := "http://" + addr.String()
	// The same requests to both: figure 1a's shape (the key alone, as
	// Authorization: Bearer), cycling over the keys.
	var authz, bare []vegeta.Target
	for _, k := range keys {
		t := vegeta.Target{Method: http.MethodGet, URL: base + "/v1/authz", Header: http.Header{"Authorization": {"Bearer " + k}}}
		authz = append(authz, t)
		bare = append(bare, sameRequestAt(bareURL, base, []vegeta.Target{t})...)
	}
	// What is measured is what it claims to be: a 200 naming the key's subject.
	answer, err := checkHot(lg.client, authz[0], recs[0].Subject, sr.Scenario.limited)
	if err != nil {
		return err
	}
	// A third side: the bare handler writing the key server's answer
	// headers (X-Keyward-*, the same bytes), to tell what the answer costs
	// net/http and the client from what the key server's work costs.
	headersURL, err := headersServer(ctx, answer)
	if err != nil {
		return err
	}
	headers := make([]vegeta.Target, 0, len(authz))
	for _, t := range authz {
		headers = append(headers, sameRequestAt(headersURL, base, []vegeta.Target{t})...)
	}
	progress("  %s: warm-up", sr.Scenario.title)
	sets := [nSides][]vegeta.Target{sideBare: bare, sideHeaders: headers, sideAuthz: authz}
	for _, ts := range sets {
		if _, _, _, err := lg.probe(endpoint{name: "hot-warmup", targets: ts}, lg.m.probeDur/2, ""); err != nil {
			return err
		}
		pause()
	}
	for r := range rounds {
		rd, err := switchedSides(lg.client, sets, lg.m.probeDur, conc, r%nSides)
		if err != nil {
			return err
		}
		sr.Rounds = append(sr.Rounds, rd)
		progress("  %s, round %d: /v1/authz %.0f/s, bare %.0f/s: %.3f (CPU per request %s vs %s); bare with the headers %.3f (%s)", sr.Scenario.title, r+1,
			rd.Rate[sideAuthz], rd.Rate[sideBare], rd.ratio(), fmtDur(rd.CPU[sideAuthz]), fmtDur(rd.CPU[sideBare]), rd.headersRatio(), fmtDur(rd.CPU[sideHeaders]))
		pause()
	}
	prof := filepath.Join(lg.profDir, "hotpath-"+sr.Scenario.name+".pprof")
	if _, _, sr.Profile, err = lg.probe(endpoint{name: "hotpath-" + sr.Scenario.name, title: "GET /v1/authz", targets: authz}, lg.m.probeDur, prof); err != nil {
		return err
	}
	if _, err := checkHot(lg.client, authz[len(authz)-1], recs[len(recs)-1].Subject, sr.Scenario.limited); err != nil {
		return err
	}
	med, lo, hi := sr.ratio()
	hmed, hlo, hhi := sr.headersRatio()
	cmed, clo, chi := sr.cpuRatio()
	progress("  %s: median of %d rounds' ratios %.3f (%.3f–%.3f); by CPU per request %.3f (%.3f–%.3f); the bare handler writing the headers %.3f (%.3f–%.3f)",
		sr.Scenario.title, rounds, med, lo, hi, cmed, clo, chi, hmed, hlo, hhi)
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// checkHot sends t once and wants a 200 naming subject, with the
// RateLimit headers when limited (and without them otherwise); it returns
// the answer's X-Keyward-* and RateLimit headers.
func checkHot(c *http.Client, t vegeta.Target, subject string, limited bool) (http.Header, error) {
	req, err := t.Request()
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(wire.HeaderSubject) != subject {
		return nil, fmt.Errorf("/v1/authz answered %d, subject %q; want 200, %q", resp.StatusCode, resp.Header.Get(wire.HeaderSubject), subject)
	}
	if counted := resp.Header.Get("RateLimit") != ""; counted != limited {
		return nil, fmt.Errorf("/v1/authz answered RateLimit %q, RateLimit-Policy %q; want them: %v",
			resp.Header.Get("RateLimit"), resp.Header.Get("RateLimit-Policy"), limited)
	}
	out := http.Header{}
	for k, v := range resp.Header {
		if strings.HasPrefix(k, "X-Keyward-") || strings.HasPrefix(k, "Ratelimit") {
			out[k] = v
		}
	}
	return out, nil
}

// headersServer is bareServer answering with h's headers.
func headersServer(ctx context.Context, h http.Header) (string, error) {
	return startBare(ctx, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		wh := w.Header()
		for k, v := range h {
			wh[k] = v
		}
		w.WriteHeader(http.StatusOK)
	}))
}

// switchedSides runs conc concurrent requests for d (closed loop) while the
// load switches every hotSlice from side to side (sets[i] are side i's
// requests), starting with first. At each switch the requests in flight
// are let finish before the next side's start (a gate the workers hold
// while a request is out), so each request and the time it took belong to
// one side: each side's rate is its 200s over the time it held the load,
// its CPU per request the process's CPU during its slices over its 200s.
func switchedSides(c *http.Client, sets [nSides][]vegeta.Target, d time.Duration, conc, first int) (hotRound, error) {
	var n [nSides]atomic.Int64
	var other atomic.Int64
	var gate sync.RWMutex // read-held by each request in flight; held to switch
	side := first         // written only under the write lock
	var stop atomic.Bool
	var wg sync.WaitGroup
	gate.Lock() // the workers wait for the first slice
	for w := range conc {
		wg.Go(func() {
			for i := w; ; i += conc {
				gate.RLock()
				if stop.Load() {
					gate.RUnlock()
					return
				}
				sd := side
				ts := sets[sd]
				ok := false
				req, err := ts[i%len(ts)].Request()
				if err == nil {
					var resp *http.Response
					if resp, err = c.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
						ok = resp.StatusCode == http.StatusOK
					}
				}
				gate.RUnlock()
				if ok {
					n[sd].Add(1)
				} else {
					other.Add(1)
				}
			}
		})
	}
	var held, cpu [nSides]time.Duration
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		t, c0 := time.Now(), processCPU()
		gate.Unlock()
		time.Sleep(hotSlice)
		gate.Lock() // waits for the requests in flight
		held[side] += time.Since(t)
		cpu[side] += processCPU() - c0
		side = (side + 1) % nSides
	}
	stop.Store(true)
	gate.Unlock()
	wg.Wait()
	if o := other.Load(); o > 0 {
		return hotRound{}, fmt.Errorf("%d requests failed or were not answered 200", o)
	}
	var rd hotRound
	for i := range nSides {
		if n[i].Load() == 0 {
			return hotRound{}, errors.New("a side answered nothing")
		}
		rd.Rate[i] = float64(n[i].Load()) / held[i].Seconds()
		rd.CPU[i] = cpu[i] / time.Duration(n[i].Load())
	}
	return rd, nil
}

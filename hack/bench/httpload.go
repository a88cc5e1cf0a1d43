package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Load generation: open loop (vegeta paces requests at a fixed rate whatever
// the answers' latency, adding workers when all are busy), one HTTP/1.1
// keep-alive client shared by every step and endpoint, loopback only.
const (
	requestTimeout = 2 * time.Second
	// maxWorkers bounds in-flight requests; past it the pacer falls behind,
	// which the step reports as an unsustained rate.
	maxWorkers = 1000
	// lowRate is where the reference latency of an endpoint is taken.
	lowRate = 200
	// A rate is sustained when at least this share answers 200 …
	minSuccess = 0.999
	// … p99 stays within this multiple of the low-rate p99 …
	p99Factor = 10
	// … and requests go out, and answers come back, at the asked rate.
	minSentShare, minOKShare = 0.97, 0.95
	// Steps: up by stepUp from startShare× a closed-loop probe until one fails
	// (down by stepDown if the first fails), then bisect.
	stepUp, stepDown = 1.25, 1.25
	// startShare of the closed-loop probe is the first open-loop rate: the
	// open-loop generator costs more CPU per request than the probe.
	startShare = 0.4
	maxSteps   = 8
	// lowRuns low-rate runs give the reference p99 (their median).
	lowRuns = 3
	// window: a step's p99 for the sustained test is the median of its
	// p99s per window of this length. A stall of the whole machine (another
	// job's burst) spoils one window; an overload grows the queue and spoils
	// them all.
	window = 500 * time.Millisecond
)

type loadGen struct {
	m       mode
	profDir string
	client  *http.Client
}

func newLoadGen(m mode, profDir string) *loadGen {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	return &loadGen{m: m, profDir: profDir, client: &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConns:        0, // no global limit
			MaxIdleConnsPerHost: 10_000,
			IdleConnTimeout:     30 * time.Second,
			ForceAttemptHTTP2:   false,
		},
	}}
}

// endpoint is one request shape under test.
type endpoint struct {
	name    string // file-name safe
	title   string
	targets []vegeta.Target
	// call, when set, makes the endpoint's i-th request itself (a gRPC
	// call, not vegeta's HTTP) and reports whether it was answered as
	// wanted; targets are then unused.
	call func(i int) bool
}

// step is one fixed-rate run.
type step struct {
	Rate     float64       // asked, requests/s
	Sent     float64       // achieved send rate
	OK       float64       // 200 answers per second over the step and its tail
	Success  float64       // share of 200 answers
	P50, P99 time.Duration // over every request, failures included
	P99w     time.Duration // median of the p99s of each window (see window)
	CPU      float64       // this process's CPU use, share of GOMAXPROCS
	N        int
	Pass     bool
	Why      string // why it did not pass
	Attempt  int    // 1, 2, … at the same rate
}

// capacity is an endpoint's max sustained rate and its latency at half of it.
type capacity struct {
	Endpoint  endpoint
	Low       step
	Threshold time.Duration // p99 bound of a sustained step
	Probe     float64       // closed-loop throughput that seeded the steps
	CPUPerReq time.Duration // process CPU time per request during the probe
	Steps     []step
	Max       float64
	Half      step
	Profile   *profileSummary
	lowP99s   []time.Duration // every low-rate run's p99
}

func (lg *loadGen) attack(ep endpoint, rate float64, dur time.Duration) step {
	if ep.call != nil {
		return lg.attackCalls(ep, rate, dur)
	}
	atk := vegeta.NewAttacker(
		vegeta.Client(lg.client),
		vegeta.Workers(uint64(4*runtime.GOMAXPROCS(0))),
		vegeta.MaxWorkers(maxWorkers),
		vegeta.MaxBody(0), // read and discard bodies
		vegeta.Redirects(vegeta.NoFollow),
	)
	freq := max(1, int(math.Round(rate)))
	samples := make([]sample, 0, int(float64(freq)*dur.Seconds())+16)
	cpu0, wall0 := processCPU(), time.Now()
	for res := range atk.Attack(vegeta.NewStaticTargeter(ep.targets...), vegeta.Rate{Freq: freq, Per: time.Second}, dur, ep.name) {
		samples = append(samples, sample{at: res.Timestamp, lat: res.Latency, ok: res.Code == http.StatusOK && res.Error == ""})
	}
	return summarize(freq, samples, cpu0, wall0)
}

// sample is one request of a fixed-rate run: when it was sent, how long
// its answer took, and whether it was the answer wanted (a 200).
type sample struct {
	at  time.Time
	lat time.Duration
	ok  bool
}

// summarize is the step of a fixed-rate run at freq per second, from its
// samples and the process's CPU time and wall clock at its start.
func summarize(freq int, samples []sample, cpu0 time.Duration, wall0 time.Time) step {
	var first, last, end time.Time
	ok := 0
	for _, x := range samples {
		if first.IsZero() || x.at.Before(first) {
			first = x.at
		}
		if x.at.After(last) {
			last = x.at
		}
		if e := x.at.Add(x.lat); e.After(end) {
			end = e
		}
		if x.ok {
			ok++
		}
	}
	s := step{Rate: float64(freq), N: len(samples)}
	s.CPU = (processCPU() - cpu0).Seconds() / time.Since(wall0).Seconds() / float64(runtime.GOMAXPROCS(0))
	if len(samples) < 2 {
		s.Why = "no answers"
		return s
	}
	s.Sent = float64(len(samples)-1) / last.Sub(first).Seconds()
	s.OK = float64(ok) / end.Sub(first).Seconds()
	s.Success = float64(ok) / float64(len(samples))
	// p99 per window of requests sent, and their median.
	var windowP99 []time.Duration
	var win []time.Duration
	flush := func() {
		if len(win) >= 20 {
			slices.Sort(win)
			windowP99 = append(windowP99, quantile(win, 0.99))
		}
		win = win[:0]
	}
	winEnd := first.Add(window)
	lat := make([]time.Duration, len(samples))
	for i, x := range samples {
		lat[i] = x.lat
		if !x.at.Before(winEnd) {
			flush()
			for !x.at.Before(winEnd) {
				winEnd = winEnd.Add(window)
			}
		}
		win = append(win, x.lat)
	}
	flush()
	slices.Sort(lat)
	s.P50, s.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
	s.P99w = s.P99
	if len(windowP99) > 0 {
		slices.Sort(windowP99)
		s.P99w = windowP99[len(windowP99)/2]
	}
	return s
}

// attackCalls is attack for an endpoint that makes its own calls (gRPC):
// open loop as vegeta is, each request sent at its time on the rate's
// schedule whatever the answers' latency, at most maxWorkers in flight
// (past that the schedule falls behind, which the step reports as an
// unsustained rate).
func (lg *loadGen) attackCalls(ep endpoint, rate float64, dur time.Duration) step {
	freq := max(1, int(math.Round(rate)))
	n := int(float64(freq) * dur.Seconds())
	interval := time.Second / time.Duration(freq)
	samples := make([]sample, n)
	inFlight := make(chan struct{}, maxWorkers)
	var wg sync.WaitGroup
	cpu0, wall0 := processCPU(), time.Now()
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		inFlight <- struct{}{}
		wg.Go(func() {
			at := time.Now()
			ok := ep.call(i)
			samples[i] = sample{at: at, lat: time.Since(at), ok: ok}
			<-inFlight
		})
	}
	wg.Wait()
	return summarize(freq, samples, cpu0, wall0)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (c *capacity) judge(s *step) {
	switch {
	case s.Success < minSuccess:
		s.Why = fmt.Sprintf("success %.2f%%", 100*s.Success)
	case s.P99w > c.Threshold:
		s.Why = fmt.Sprintf("windowed p99 %s > %s", fmtDur(s.P99w), fmtDur(c.Threshold))
	case s.Sent < minSentShare*s.Rate:
		s.Why = fmt.Sprintf("sent only %.0f/s", s.Sent)
	case s.OK < minOKShare*s.Rate:
		s.Why = fmt.Sprintf("answered only %.0f/s", s.OK)
	default:
		s.Pass = true
	}
}

// probe is a closed-loop estimate of throughput: 8 concurrent requests per
// CPU for d. It seeds the open-loop steps, and runs under a CPU profile
// (saturated, so the profile has samples to spare) with the process's CPU
// time read around it.
func (lg *loadGen) probe(ep endpoint, d time.Duration, profPath string) (rate float64, cpuPerReq time.Duration, prof *profileSummary, err error) {
	var n atomic.Int64
	var f *os.File
	if profPath != "" {
		if f, err = os.Create(profPath); err != nil {
			return 0, 0, nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return 0, 0, nil, err
		}
	}
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range 8 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i++ {
				if ep.call != nil {
					if ep.call(i) {
						n.Add(1)
					}
					continue
				}
				req, err := ep.targets[i%len(ep.targets)].Request()
				if err != nil {
					return
				}
				resp, err := lg.client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if n.Load() > 0 {
		cpuPerReq = cpu / time.Duration(n.Load())
	}
	if f != nil {
		pprof.StopCPUProfile()
		_ = f.Close()
		var perr error
		if prof, perr = summarizeProfile(profPath); perr != nil {
			progress("  %s: reading the profile: %v", ep.title, perr)
		}
	}
	return float64(n.Load()) / elapsed.Seconds(), cpuPerReq, prof, nil
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pause lets the previous step's stragglers finish and collects its
// garbage, so that a step does not pay for the one before.
func pause() { runtime.GC(); time.Sleep(pauseDur) }

var pauseDur = 300 * time.Millisecond

// search finds one endpoint's max sustained rate, one attempt at a time,
// so that two searches can be interleaved (see maxRates).
type search struct {
	lg    *loadGen
	c     *capacity
	r     float64 // the rate to try next
	pass  float64 // highest sustained so far
	fail  float64 // lowest not sustained so far
	steps int     // rates tried while stepping
	bisec int     // rates tried while bisecting
	try   int     // attempts at r so far
	phase int     // 0 stepping, 1 bisecting, 2 done
}

// prepare measures the low-rate reference and runs the profiled probe.
func (lg *loadGen) prepare(ep endpoint, profile bool) (*search, error) {
	c := &capacity{Endpoint: ep}
	lg.attack(ep, lowRate, 300*time.Millisecond) // warm-up
	var lows []step
	for range lowRuns {
		s := lg.attack(ep, lowRate, lg.m.lowDur)
		if s.Success < minSuccess {
			return nil, fmt.Errorf("%s: only %.1f%% success at %d/s", ep.title, 100*s.Success, lowRate)
		}
		s.Pass = true
		lows = append(lows, s)
	}
	slices.SortFunc(lows, func(a, b step) int { return int(a.P99 - b.P99) })
	c.Low = lows[len(lows)/2]
	c.Threshold = p99Factor * c.Low.P99
	c.lowP99s = nil
	for _, l := range lows {
		c.lowP99s = append(c.lowP99s, l.P99)
	}
	pause()
	prof := filepath.Join(lg.profDir, ep.name+".pprof")
	if !profile {
		prof = ""
	}
	var err error
	if c.Probe, c.CPUPerReq, c.Profile, err = lg.probe(ep, lg.m.probeDur, prof); err != nil {
		return nil, err
	}
	progress("  %s: low-rate p99 %s; closed-loop probe %.0f/s, %s CPU per request",
		ep.title, fmtDur(c.Low.P99), c.Probe, fmtDur(c.CPUPerReq))
	pause()
	return &search{lg: lg, c: c, r: startShare * c.Probe}, nil
}

func (s *search) done() bool { return s.phase == 2 }

// step makes one attempt at the current rate and moves the search on.
func (s *search) step() {
	lg, c := s.lg, s.c
	st := lg.attack(c.Endpoint, s.r, lg.m.stepDur)
	c.judge(&st)
	s.try++
	st.Attempt = s.try
	c.Steps = append(c.Steps, st)
	verdict := "ok"
	if !st.Pass {
		verdict = "not sustained: " + st.Why
	}
	progress("  %s: %7.0f/s → p50 %s p99 %s (windowed %s) success %.2f%% CPU %.0f%% — %s", c.Endpoint.title, st.Rate, fmtDur(st.P50), fmtDur(st.P99),
		fmtDur(st.P99w), 100*st.Success, 100*st.CPU, verdict)
	pause()
	if !st.Pass && s.try < lg.m.attempts && (s.pass == 0 || st.Rate < 1.5*s.pass) {
		return // maybe a stall of the machine: try again (not far above a sustained rate)
	}
	ok := st.Pass
	s.try = 0
	switch s.phase {
	case 0:
		s.steps++
		if ok {
			s.pass = s.r
			s.r *= stepUp
		} else {
			s.fail = s.r
			s.r /= stepDown
		}
		if (s.pass > 0 && s.fail > 0) || s.steps >= maxSteps {
			s.phase = 1
		}
	case 1:
		s.bisec++
		if ok {
			s.pass = s.r
		} else {
			s.fail = s.r
		}
	}
	if s.phase == 1 {
		if s.bisec >= lg.m.refine || s.pass == 0 || s.fail == 0 {
			s.phase = 2
		} else {
			s.r = math.Sqrt(s.pass * s.fail)
		}
	}
}

// finish measures latency at half the max sustained rate.
func (s *search) finish() error {
	c := s.c
	if s.pass == 0 {
		return fmt.Errorf("%s: no rate was sustained", c.Endpoint.title)
	}
	c.Max = math.Round(s.pass)
	c.Half = s.lg.attack(c.Endpoint, c.Max/2, s.lg.m.halfDur)
	c.judge(&c.Half)
	progress("  %s: max sustained %.0f/s; at half (%.0f/s) p50 %s p99 %s", c.Endpoint.title, c.Max, c.Half.Rate, fmtDur(c.Half.P50), fmtDur(c.Half.P99))
	pause()
	return nil
}

// maxRates searches the endpoints' max sustained rates with their steps
// interleaved in time (alternating which goes first), so that the CPU other
// jobs leave is about the same for each: used to pair an endpoint with its
// floor. profile[i] says whether endpoint i's probe is profiled.
func (lg *loadGen) maxRates(ctx context.Context, eps []endpoint, profile []bool) ([]*capacity, error) {
	ss := make([]*search, len(eps))
	var lows []time.Duration
	for i, ep := range eps {
		progress("  %s: warm-up and low-rate reference (%d/s, %d runs), then a closed-loop probe", ep.title, lowRate, lowRuns)
		s, err := lg.prepare(ep, profile[i])
		if err != nil {
			return nil, err
		}
		ss[i] = s
		lows = append(lows, s.c.lowP99s...)
	}
	// One p99 bound for the whole group, from the median p99 of all its
	// low-rate runs: the latency tail the bound guards against (GC, the
	// scheduler, other jobs) is the process's, not an endpoint's, and a
	// pair judged by two different bounds would compare the bounds' noise.
	slices.Sort(lows)
	bound := p99Factor * lows[len(lows)/2]
	for _, s := range ss {
		s.c.Threshold = bound
	}
	if len(ss) > 1 {
		progress("  p99 bound for the group: %s", fmtDur(bound))
	}
	for round := 0; ; round++ {
		active := false
		for k := range ss {
			s := ss[(k+round)%len(ss)]
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !s.done() {
				s.step()
				active = true
			}
		}
		if !active {
			break
		}
	}
	out := make([]*capacity, len(ss))
	for i, s := range ss {
		if err := s.finish(); err != nil {
			return nil, err
		}
		out[i] = s.c
	}
	return out, nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

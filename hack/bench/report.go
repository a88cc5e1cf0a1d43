package main

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

type machine struct {
	nproc              int
	gomaxprocs         int
	cpu                string
	goVersion          string
	loadStart, loadEnd string
}

func describeMachine() machine {
	return machine{
		nproc: runtime.NumCPU(), gomaxprocs: runtime.GOMAXPROCS(0), cpu: cpuModel(),
		goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, loadStart: loadAverage(),
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown (" + runtime.GOARCH + ")"
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown (" + runtime.GOARCH + ")"
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// Targets.
const (
	targetRateRatio    = 0.8
	targetHalfP99      = 2 * time.Millisecond
	targetIndexRatio   = 1.2
	targetBytesPerKey  = 2048
	targetReconcile    = 3.0
	targetRevocation   = time.Second
	targetTokensRatio  = 0.5
	targetRevocationQ  = 0.99
	reproduceCmdPrefix = "go run ./hack/bench"
)

type report struct {
	cfg               config
	machine           machine
	started, finished time.Time

	keyServer  *keyServerResult
	index      *indexResult
	reconcile  *reconcileResult
	revocation *revocationResult
	tokens     *tokensResult
	policy     *policyResult
	extAuthz   *extAuthzResult
	hotpath    *hotpathResult

	rows []row
}

type row struct {
	id, figure, value, target string
	pass                      bool
	cmd                       string
	// info: reported, no target to meet (neither PASS nor MISS).
	info bool
}

func verdict(rw row) string {
	if rw.info {
		return "—"
	}
	if rw.pass {
		return "PASS"
	}
	return "**MISS**"
}

func (r *report) command(fig string) string {
	cmd := reproduceCmdPrefix + " -only " + fig
	if r.cfg.quick {
		cmd += " -quick"
	}
	return "`" + cmd + "`"
}

// collect builds the summary rows from the results.
func (r *report) collect() {
	r.rows = nil
	if ks := r.keyServer; ks != nil {
		for i, p := range ks.Pairs {
			c := p.Endpoint
			id := fmt.Sprintf("1%c", 'a'+i)
			r.rows = append(r.rows,
				row{id + " rate", "Key server max sustained rate ÷ the bare handler's (searched interleaved): " + c.Endpoint.title,
					fmt.Sprintf("%.2f (%s/s ÷ %s/s)", p.ratio(), num(c.Max), num(p.Bare.Max)), fmt.Sprintf("≥ %.1f", targetRateRatio),
					p.ratio() >= targetRateRatio, r.command(figKeyServer), false},
				row{id + " p99", "Latency at half that rate: " + c.Endpoint.title,
					fmt.Sprintf("p50 %s, p99 %s at %s/s (bare handler at that rate: p99 %s)", fmtDur(c.Half.P50), fmtDur(c.Half.P99), num(c.Half.Rate), fmtDur(p.BareAtHalf.P99)),
					"p99 ≤ " + fmtDur(targetHalfP99),
					c.Half.P99 <= targetHalfP99 && c.Half.Success >= minSuccess, r.command(figKeyServer), false})
		}
	}
	if ix := r.index; ix != nil {
		first, last := ix.Sizes[0], ix.Sizes[len(ix.Sizes)-1]
		if len(ix.Served) > 0 {
			sf, sl := ix.Served[0], ix.Served[len(ix.Served)-1]
			r.rows = append(r.rows, row{"2a served", fmt.Sprintf("Validation p50 through the key server (GET /v1/authz at %.0f/s) at %s keys ÷ at %s keys",
				servedRate, num(float64(sl.N)), num(float64(sf.N))),
				fmt.Sprintf("%.2f (median of %d interleaved rounds' ratios; medians %s ÷ %s)", ix.servedRatio(), servedRounds, fmtDur(sl.P50), fmtDur(sf.P50)), fmt.Sprintf("≤ %.1f", targetIndexRatio),
				ix.servedRatio() <= targetIndexRatio && sl.Success >= minSuccess && sf.Success >= minSuccess, r.command(figIndex), false})
		}
		r.rows = append(r.rows,
			row{"2a index", fmt.Sprintf("Validation p50 in the index alone (`ValidateAPIKey`) at %s keys ÷ at %s keys", num(float64(last.N)), num(float64(first.N))),
				fmt.Sprintf("%.2f (%s ÷ %s)", ix.ratio(), fmtDurNs(last.P50), fmtDurNs(first.P50)), fmt.Sprintf("≤ %.1f", targetIndexRatio),
				ix.ratio() <= targetIndexRatio, r.command(figIndex), false},
			row{"2b", "Heap per key: index + key server's informer cache",
				fmt.Sprintf("%s B (%s + %s)", num(ix.perKey()), num(last.HeapPerKey), num(ix.CacheKeyServer)), "≤ 2 KiB",
				ix.perKey() <= targetBytesPerKey, r.command(figIndex), false})
	}
	if rc := r.reconcile; rc != nil {
		value := fmt.Sprintf("%.2f (%s ÷ %s)", rc.ratio(), fmtDur(rc.AllReady), fmtDur(rc.Secrets))
		if rc.Err != "" {
			value = fmt.Sprintf("> %.2f (%s)", rc.ratio(), rc.Err)
		}
		r.rows = append(r.rows, row{"3", fmt.Sprintf("Time for %s APIKeys to be Ready ÷ time to create %s plain Secrets", num(float64(rc.N)), num(float64(rc.N))),
			value, fmt.Sprintf("≤ %.0f", targetReconcile), rc.Err == "" && rc.ratio() <= targetReconcile, r.command(figReconcile), false})
	}
	if rv := r.revocation; rv != nil {
		p99 := quantile(rv.Latencies, targetRevocationQ)
		r.rows = append(r.rows, row{"4", fmt.Sprintf("Revocation: APIKey deleted → /v1/authz answers 401 (%d keys)", len(rv.Latencies)),
			fmt.Sprintf("p50 %s, p99 %s", fmtDur(quantile(rv.Latencies, 0.5)), fmtDur(p99)), "p99 ≤ 1 s",
			p99 <= targetRevocation && rv.TimedOut == 0, r.command(figRevocation), false})
	}
	if tk := r.tokens; tk != nil {
		ratio := tk.Tokens.Max / tk.RawRate
		r.rows = append(r.rows, row{"5", "POST /v1/tokens max sustained rate ÷ raw in-process ES256 signing rate",
			fmt.Sprintf("%.2f (%s/s ÷ %s/s)", ratio, num(tk.Tokens.Max), num(tk.RawRate)), fmt.Sprintf("≥ %.1f", targetTokensRatio),
			ratio >= targetTokensRatio, r.command(figTokens), false})
	}
	if pl := r.policy; pl != nil {
		med, lo, hi := pl.ratio()
		r.rows = append(r.rows, row{"6 rate", fmt.Sprintf("GET /v1/authz rate through a policy with one rule (%s policies, %s keys) ÷ the same server with no policy under allow-valid-key (today's behaviour)",
			num(policyTableN), num(policyKeys)),
			fmt.Sprintf("%.2f (median of %d interleaved rounds' ratios; spread %.2f–%.2f)", med, len(pl.Rounds), lo, hi), fmt.Sprintf("≥ %.1f", targetPolicyRatio),
			med >= targetPolicyRatio, r.command(figPolicy), false})
		var parts []string
		for _, h := range pl.Heap {
			parts = append(parts, fmt.Sprintf("%s B at %s policies", num(h.PerPolicy), num(float64(h.N))))
		}
		r.rows = append(r.rows, row{id: "6 heap", figure: "Heap per KeyPolicy in the key server's table (compiled policy and host index; one exact host, one rule)",
			value: strings.Join(parts, ", "), target: "reported (no target)", pass: true, cmd: r.command(figPolicy), info: true})
	}
	r.collectExtAuthz()
	r.collectHotPath()
}

// collectExtAuthz adds figure 7's rows.
func (r *report) collectExtAuthz() {
	ea := r.extAuthz
	if ea == nil {
		return
	}
	p, c := ea.Pair, ea.Pair.Endpoint
	med, lo, hi := ea.ratio()
	smed, slo, shi := ea.sameRatio()
	fmed, _, _ := ea.sameOverBare()
	r.rows = append(r.rows,
		row{"7 rate", "gRPC ext_authz Check rate (a KeyPolicy deciding) ÷ a bare gRPC Check handler answering OK, same client, both in the same seconds",
			fmt.Sprintf("%.2f (median of %d interleaved rounds' ratios; spread %.2f–%.2f; ÷ a bare handler giving the same OK answer: %.2f, spread %.2f–%.2f, that handler ÷ bare %.2f; max sustained, searched interleaved: %s/s ÷ %s/s = %.2f)",
				med, len(ea.Rounds), lo, hi, smed, slo, shi, fmed, num(c.Max), num(p.Bare.Max), p.ratio()), fmt.Sprintf("≥ %.1f", targetRateRatio),
			med >= targetRateRatio, r.command(figExtAuthz), false},
		row{"7 p99", "Latency at half the max sustained rate: gRPC ext_authz Check",
			fmt.Sprintf("p50 %s, p99 %s at %s/s (bare handler at that rate: p99 %s)", fmtDur(c.Half.P50), fmtDur(c.Half.P99), num(c.Half.Rate), fmtDur(p.BareAtHalf.P99)),
			"p99 ≤ " + fmtDur(targetHalfP99), c.Half.P99 <= targetHalfP99 && c.Half.Success >= minSuccess, r.command(figExtAuthz), false})
}

// collectHotPath adds figure 8's rows.
func (r *report) collectHotPath() {
	hp := r.hotpath
	if hp == nil {
		return
	}
	for _, sr := range hp.Scenarios {
		sc := sr.Scenario
		rw := row{id: "8 " + sc.name, figure: "GET /v1/authz rate (API key; " + sc.title + ") ÷ the bare handler's, same requests, closed loop in interleaved slices",
			cmd: r.command(figHotPath)}
		if sc.target > 0 {
			rw.target = fmt.Sprintf("≥ %.2f", sc.target)
		} else {
			rw.target, rw.info, rw.pass = "reported (no target)", true, true
		}
		if len(sr.Rounds) == 0 {
			rw.value, rw.info, rw.pass = "not measured in this build", true, true
		} else {
			med, lo, hi := sr.ratio()
			hmed, _, _ := sr.headersRatio()
			cmed, _, _ := sr.cpuRatio()
			rw.value = fmt.Sprintf("%.2f (median of %d rounds' ratios; spread %.2f–%.2f; by CPU per request %.2f; the bare handler writing the same answer headers: %.2f)",
				med, len(sr.Rounds), lo, hi, cmed, hmed)
			rw.pass = rw.pass || med >= sc.target
		}
		r.rows = append(r.rows, rw)
	}
	value := "not measured: " + hp.RedisErr
	if rt := hp.Redis; rt != nil {
		value = fmt.Sprintf("PING p50 %s, p99 %s; the store's Allow p50 %s, p99 %s (one at a time), p50 %s, p99 %s, %s CPU per call (%d at once)",
			fmtDur(rt.SerialP50), fmtDur(rt.SerialP99), fmtDur(rt.AllowP50), fmtDur(rt.AllowP99), fmtDur(rt.AllowConcP50), fmtDur(rt.AllowConcP99), fmtDur(rt.AllowCPU), rt.Conc)
	}
	r.rows = append(r.rows, row{id: "8 redis RTT", figure: "Redis round trip over loopback: PING, and the Redis store's call (GCRA in one script) that each request of a rate-limited key makes",
		value: value, target: "reported (no target)", pass: true, cmd: r.command(figHotPath), info: true})
}

func (r *report) verdictLine() string {
	r.collect()
	pass, miss := 0, []string{}
	for _, rw := range r.rows {
		if rw.info {
			continue
		}
		if rw.pass {
			pass++
		} else {
			miss = append(miss, rw.id)
		}
	}
	if len(miss) == 0 {
		return fmt.Sprintf("all %d figures PASS", pass)
	}
	return fmt.Sprintf("%d PASS, %d MISS (%s)", pass, len(miss), strings.Join(miss, ", "))
}

// num formats a count with thousands separators.
func num(v float64) string {
	n := int64(v + 0.5)
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func pct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func (r *report) markdown() string {
	r.collect()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	runCmd := reproduceCmdPrefix
	if r.cfg.quick {
		runCmd += " -quick"
	}
	if r.cfg.out != "" {
		runCmd += " -out " + r.cfg.out
	}
	w("# Benchmarks\n\n")
	w("<!-- Generated by hack/bench; do not edit by hand: re-run it. -->\n\n")
	w("Written by `%s` (source: [hack/bench](../hack/bench)); the run took %s.", runCmd, r.finished.Sub(r.started).Round(time.Second))
	if r.cfg.quick {
		w(" This was a **-quick** run: shorter load steps and %d APIKeys for figure 3; run without -quick for the figures of record.", r.cfg.mode().reconcileN)
	}
	w("\n\n")
	w("| machine | |\n|---|---|\n")
	w("| CPUs (nproc) | %d (GOMAXPROCS %d) |\n", r.machine.nproc, r.machine.gomaxprocs)
	w("| CPU model | %s |\n", r.machine.cpu)
	w("| Go | %s |\n", r.machine.goVersion)
	w("| date | %s |\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	w("| load average (1, 5, 15 min) at start / end | %s / %s |\n\n", r.machine.loadStart, r.machine.loadEnd)
	w("**Every figure is a ratio against a floor measured in the same run**, minutes or seconds apart on the same machine: ")
	w("a bare `net/http` handler for the key server, raw ES256 signing for token issuance, plain Secret writes for reconciling, ")
	w("a 1,000-key index for index scale, the same key server with no policy for policy selection, a bare gRPC Check handler for Envoy's gRPC ext_authz. This machine is shared — other engineers' test runs and CI jobs take CPU while it runs ")
	w("(see the load average above, for %d CPUs) — so absolute rates and latencies drift from run to run and machine to machine; ", r.machine.nproc)
	w("ratios of back-to-back or interleaved measurements hold better (the notes say how much noise is left). Absolute numbers are given for context only. ")
	w("The latency targets (2 ms, 1 s) are absolute by nature; they are the ones most exposed to a busy machine.\n\n")
	w("What the profiles showed for each missed target, what was changed, and the figures before and after: [performance-log.md](performance-log.md).\n\n")

	w("## Summary\n\n")
	w("| # | figure | value | target | result | reproduce |\n|---|---|---|---|---|---|\n")
	for _, rw := range r.rows {
		w("| %s | %s | %s | %s | %s | %s |\n", rw.id, rw.figure, rw.value, rw.target, verdict(rw), rw.cmd)
	}
	w("\nEach command prints a report of its figure only (add `-out FILE` to write it to a file); `-quick` shortens it.\n\n")
	var misses []string
	scored := 0
	for _, rw := range r.rows {
		if !rw.info {
			scored++
		}
		if !rw.pass {
			misses = append(misses, rw.id)
		}
	}
	if len(misses) > 0 {
		w("**Missed targets: %s** (%d of %d). The targets were not adjusted; the notes at the end say why each was missed and what the profiles show.\n\n",
			strings.Join(misses, ", "), len(misses), scored)
	} else if len(r.rows) > 0 {
		w("Every target was met in this run.\n\n")
	}

	if ks := r.keyServer; ks != nil {
		r.writeKeyServer(w, ks)
	}
	if ix := r.index; ix != nil {
		r.writeIndex(w, ix)
	}
	if rc := r.reconcile; rc != nil {
		r.writeReconcile(w, rc)
	}
	if rv := r.revocation; rv != nil {
		r.writeRevocation(w, rv)
	}
	if tk := r.tokens; tk != nil {
		r.writeTokens(w, tk)
	}
	if pl := r.policy; pl != nil {
		r.writePolicy(w, pl)
	}
	if ea := r.extAuthz; ea != nil {
		r.writeExtAuthz(w, ea)
	}
	if hp := r.hotpath; hp != nil {
		r.writeHotPath(w, hp)
	}
	r.writeProfiles(w)
	r.writeNotes(w)
	return b.String()
}

type writer func(format string, args ...any)

func (r *report) writeMethodHTTP(w writer) {
	m := r.cfg.mode()
	w("Method (figures 1 and 5): the whole operator runs in this process against envtest (a real kube-apiserver and etcd), ")
	w("its key server on `127.0.0.1`, plain HTTP; the floor is a bare `net/http` server in the same process, with the key server's ")
	w("limits and timeouts, answering 200 to everything; each endpoint is paired with the bare handler receiving the same request (method, headers, body). One HTTP/1.1 keep-alive client loads one endpoint at a time: ")
	w("[vegeta](https://github.com/tsenart/vegeta) as a library, open loop (requests leave at the asked rate whatever the answers' latency; up to %d in flight). ", maxWorkers)
	w("For each endpoint: %d runs of %s at %d/s give low-rate p99s (the table shows their median); a %s closed-loop probe (%d concurrent requests, ",
		lowRuns, m.lowDur, lowRate, m.probeDur, 8*r.machine.gomaxprocs)
	w("under a CPU profile, with the process's CPU time per request) seeds the steps; ")
	w("then %s steps from %.1f× the probe, up ×%.2f until one is not sustained (down ÷%.2f while the first ones are not), then %d bisection step(s) between the highest sustained and lowest unsustained rates. ",
		m.stepDur, startShare, stepUp, stepDown, m.refine)
	w("A rate is **sustained** when ≥ %.1f%% of answers are 200, p99 ≤ %d× the low-rate p99, and requests went out (≥ %.0f%%) and 200s came back (≥ %.0f%%) at the asked rate; ",
		100*minSuccess, p99Factor, 100*minSentShare, 100*minOKShare)
	w("an endpoint and its paired floor share one p99 bound, %d× the median of all their low-rate p99s (the tail it guards against — GC, the scheduler, other jobs — is the process's). ", p99Factor)
	w("Because other jobs share the CPUs, the p99 tested is the median of the p99s of each %s window of the step (a stall of the machine spoils one window, ", window)
	w("an overload spoils them all), and a rate that is not sustained is tried again unless it is far above one that was (%d attempts at most). ", m.attempts)
	w("The max sustained rate is then run again for %s at half that rate for p50/p99 (plain p99 over the whole run, no windows). ", m.halfDur)
	w("Client and server share the same CPUs, for the floor and the endpoints alike; the client's cost is in every figure.\n\n")
}

func (r *report) writeCapacityTable(w writer, caps []*capacity, ratioHeader string, ratio func(*capacity) string, cpuMult func(*capacity) float64) {
	w("| endpoint | low-rate p99 | p99 bound | probe | CPU per request | max sustained | %s | p50 at half | p99 at half |\n|---|---|---|---|---|---|---|---|---|\n", ratioHeader)
	for _, c := range caps {
		cpu := fmtDur(c.CPUPerReq)
		if m := cpuMult(c); m > 0 {
			cpu += fmt.Sprintf(" (%.2f×)", m)
		}
		w("| %s | %s | %s | %s/s | %s | %s/s | %s | %s | %s |\n", c.Endpoint.title, fmtDur(c.Low.P99), fmtDur(c.Threshold), num(c.Probe), cpu, num(c.Max),
			ratio(c), fmtDur(c.Half.P50), fmtDur(c.Half.P99))
	}
	w("\n<details><summary>every step</summary>\n\n")
	w("| endpoint | asked | sent | 200s/s | success | p50 | p99 | windowed p99 | CPU | sustained |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range caps {
		all := append([]step{c.Low}, c.Steps...)
		all = append(all, c.Half)
		for i, s := range all {
			label := ""
			switch {
			case i == 0:
				label = " (low-rate reference)"
			case i == len(all)-1:
				label = " (half max)"
			case s.Attempt > 1:
				label = fmt.Sprintf(" (try %d)", s.Attempt)
			}
			v := "yes"
			if !s.Pass {
				v = "no: " + s.Why
			}
			w("| %s | %s/s%s | %s/s | %s/s | %.2f%% | %s | %s | %s | %.0f%% | %s |\n", c.Endpoint.title, num(s.Rate), label, num(s.Sent), num(s.OK), 100*s.Success,
				fmtDur(s.P50), fmtDur(s.P99), fmtDur(s.P99w), 100*s.CPU, v)
		}
	}
	w("\n</details>\n\n")
}

func (r *report) writeKeyServer(w writer, ks *keyServerResult) {
	w("## 1. Key server over loopback\n\n")
	r.writeMethodHTTP(w)
	w("Each key server endpoint is paired with its own run of the floor: the two searches' steps alternate in time, so both see about the same ")
	w("CPU left by other jobs, and the ratio is taken within the pair. After the endpoint's half-max run, the bare handler runs at the same rate: ")
	w("the machine's own p99 there. ")
	w("The API key is a generated `kw_…` key of an APIKey (sent as `Authorization: Bearer`, and as `{\"key\": …}` to /v1/verify); ")
	w("the JWT was issued by the key server's /v1/tokens for an AccessKeyPair.\n\n")
	w("*CPU per request* is this process's CPU time (client and server together) per answered request during the closed-loop probe, and in brackets its multiple of the paired bare handler's: ")
	w("it depends less than rates on how much CPU other jobs leave (though it moves too, see the notes), and shows what each endpoint costs on top of the HTTP exchange.\n\n")
	var caps []*capacity
	pairOf := map[*capacity]pairResult{}
	for _, p := range ks.Pairs {
		caps = append(caps, p.Bare, p.Endpoint)
		pairOf[p.Bare], pairOf[p.Endpoint] = p, p
	}
	r.writeCapacityTable(w, caps, "÷ paired bare", func(c *capacity) string {
		p := pairOf[c]
		if c == p.Bare {
			return "(floor)"
		}
		return fmt.Sprintf("**%.2f**", p.ratio())
	}, func(c *capacity) float64 {
		p := pairOf[c]
		if c == p.Bare || p.Bare.CPUPerReq == 0 {
			return 0
		}
		return float64(c.CPUPerReq) / float64(p.Bare.CPUPerReq)
	})
	w("| endpoint at half max | its p99 | bare handler at the same rate, right after: p50 | p99 |\n|---|---|---|---|\n")
	for _, p := range ks.Pairs {
		w("| %s (%s/s) | %s | %s | %s |\n", p.Endpoint.Endpoint.title, num(p.Endpoint.Half.Rate), fmtDur(p.Endpoint.Half.P99), fmtDur(p.BareAtHalf.P50), fmtDur(p.BareAtHalf.P99))
	}
	w("\n")
}

func (r *report) writeIndex(w writer, ix *indexResult) {
	w("## 2. Index scale and memory\n\n")
	w("Method: %s, %s and %s generated API key records (shaped as the controller writes them) are loaded into `keyindex` directly; ",
		num(float64(ix.Sizes[0].N)), num(float64(ix.Sizes[1].N)), num(float64(ix.Sizes[2].N)))
	w("the heap it adds is read with `runtime.MemStats` after a GC, excluding the records fed to it (as `TestMemoryPerKey` does; ")
	w("for the smaller sizes several indexes are built, so that their figure stands out of the heap's noise). ")
	w("Validation latency is %s `ValidateAPIKey` calls per size with random valid keys (each a fresh copy, as a key arrives in a new request buffer), ", num(float64(ix.Samples)))
	w("each call timed, the sizes interleaved in 30 rounds so that drift hits them alike. ")
	w("The informer cache's cost is measured by decoding %s copies of a real hash Secret as the API server served it (%d bytes of JSON), ",
		num(cacheObjects), ix.HashSecretJSON)
	w("with the key server's cache transform applied (`feed.StripHashSecret`: everything but the name, namespace, resourceVersion, type and record dropped), ")
	w("kept as a client-go indexer keeps them ")
	w("(a map by namespace/name and the namespace index). All of this after the control plane was stopped, in a quiet heap.\n\n")
	w("| keys | index heap per key | validation p50 | p90 | p99 |\n|---|---|---|---|---|\n")
	for _, s := range ix.Sizes {
		w("| %s | %s B | %s | %s | %s |\n", num(float64(s.N)), num(s.HeapPerKey), fmtDurNs(s.P50), fmtDurNs(s.P90), fmtDurNs(s.P99))
	}
	if len(ix.Served) > 0 {
		w("\nThe same scale as a client sees it: one key server per size (`keyserver.New`, its index loaded directly, served by `httptest` on loopback), ")
		w("GET /v1/authz with %s distinct valid keys cycled, open loop at %.0f/s for %s per size, the sizes interleaved in %d rounds; the table gives medians of the rounds' p50 and p99, ",
			num(float64(servedTargets)), servedRate, servedStep, servedRounds)
		w("and the figure is the median of each round's ratio of the largest size's p50 to the smallest's (measured seconds apart, so the machine's drift moves both).\n\n")
		w("| keys | p50 | p99 | success (worst round) |\n|---|---|---|---|\n")
		for _, s := range ix.Served {
			w("| %s | %s | %s | %.2f%% |\n", num(float64(s.N)), fmtDur(s.P50), fmtDur(s.P99), 100*s.Success)
		}
	}
	w("\n| per key | heap |\n|---|---|\n")
	w("| index (at %s keys) | %s B |\n", num(float64(ix.Sizes[len(ix.Sizes)-1].N)), num(ix.Sizes[len(ix.Sizes)-1].HeapPerKey))
	w("| key server's hash Secret cache | %s B |\n", num(ix.CacheKeyServer))
	w("| **index + key server cache (the target)** | **%s B** |\n", num(ix.perKey()))
	w("| for information: the controllers' caches (hash Secret, delivery Secret and the APIKey, unstripped, managedFields included) | %s B |\n\n", num(ix.CacheControllers))
	w("The target covers what the key server holds per key. A replica that also runs the controllers (the default single binary) ")
	w("holds the controllers' caches too, about %s B per key in total.\n\n", num(ix.perKey()+ix.CacheControllers))
}

func (r *report) writeReconcile(w writer, rc *reconcileResult) {
	w("## 3. Reconcile throughput\n\n")
	w("Method: with the whole operator running (controllers and key server; the envtest API server, no client-side rate limit, as `main.go` runs), ")
	w("the bench's client creates %s plain Opaque Secrets (a delivery Secret's size) from %d goroutines: the API server's write floor. ", num(float64(rc.N)), writers)
	w("Then, watching APIKeys, it creates %s APIKeys with `spec.secretName` from the same %d goroutines, and times from the first create until all are Ready ",
		num(float64(rc.N)), writers)
	w("(each has its finalizer, a hash Secret, a delivery Secret and a status written by then).\n\n")
	w("| | time | per second |\n|---|---|---|\n")
	w("| %s plain Secrets created | %s | %s |\n", num(float64(rc.N)), fmtDur(rc.Secrets), num(float64(rc.N)/rc.Secrets.Seconds()))
	w("| %s APIKeys created (the create calls) | %s | %s |\n", num(float64(rc.N)), fmtDur(rc.Created), num(float64(rc.N)/rc.Created.Seconds()))
	w("| %s of %s APIKeys Ready | %s | %s |\n", num(float64(rc.Ready)), num(float64(rc.N)), fmtDur(rc.AllReady), num(float64(rc.Ready)/rc.AllReady.Seconds()))
	w("| **ratio** | **%.2f** | |\n\n", rc.ratio())
	if len(rc.Requests) > 0 && rc.Ready > 0 {
		verbs := slices.Sorted(maps.Keys(rc.Requests))
		total := 0
		var parts []string
		for _, v := range verbs {
			total += rc.Requests[v]
			parts = append(parts, fmt.Sprintf("%s %.1f", v, float64(rc.Requests[v])/float64(rc.Ready)))
		}
		w("The operator's own API requests while they were reconciled (counted at its client; watches excluded): %.1f per APIKey (%s), ",
			float64(total)/float64(rc.Ready), strings.Join(parts, ", "))
		w("%s in all at %.0f/s, against the bench's one create per plain Secret.\n\n", num(float64(total)), float64(total)/rc.AllReady.Seconds())
	}
	if rc.Err != "" {
		w("The run stopped waiting: %s.\n\n", rc.Err)
	}
}

func (r *report) writeRevocation(w writer, rv *revocationResult) {
	w("## 4. Revocation\n\n")
	w("Method: with the operator running, %d APIKeys are created and wait until Ready and validating. Then, one at a time, ", len(rv.Latencies))
	w("each is deleted and /v1/authz is polled with its key every 2 ms; the latency runs from the delete call to the first 401 ")
	w("(the delete's own API round trip, the finalizing reconcile, the hash Secret's deletion and its watch event reaching the key server's index). ")
	w("Polling stops at %s.\n\n", revocationTimeout)
	w("| p50 | p90 | p99 | max | not refused within %s |\n|---|---|---|---|---|\n", revocationTimeout)
	w("| %s | %s | %s | %s | %d |\n\n", fmtDur(quantile(rv.Latencies, 0.5)), fmtDur(quantile(rv.Latencies, 0.9)), fmtDur(quantile(rv.Latencies, 0.99)),
		fmtDur(rv.Latencies[len(rv.Latencies)-1]), rv.TimedOut)
}

func (r *report) writeTokens(w writer, tk *tokensResult) {
	w("## 5. Token issuance\n\n")
	w("Method: POST /v1/tokens with an AccessKeyPair's id and secret as HTTP Basic, loaded as in figure 1. ")
	w("The floor is raw ES256 signing in this process: `ecdsa.SignASN1` over the SHA-256 of a real token's signing input, on %d goroutines (GOMAXPROCS) for %s ",
		r.machine.gomaxprocs, r.cfg.mode().probeDur)
	w("(as `BenchmarkRawES256Sign` in internal/tokens, on every CPU), measured before and after the endpoint: %s/s and %s/s; the floor is their mean.\n\n",
		num(tk.RawRates[0]), num(tk.RawRates[len(tk.RawRates)-1]))
	w("For scale, in process CPU time (rusage): a raw signature costs %s; a token request costs %s, client included.\n\n",
		fmtDur(tk.RawCPUMean), fmtDur(tk.Tokens.CPUPerReq))
	r.writeCapacityTable(w, []*capacity{tk.Tokens}, "÷ raw signing", func(c *capacity) string { return fmt.Sprintf("**%.2f**", c.Max/tk.RawRate) },
		func(*capacity) float64 { return 0 })
}

func (r *report) allCaps() []*capacity {
	var caps []*capacity
	if ks := r.keyServer; ks != nil {
		for i, p := range ks.Pairs {
			if i == 0 {
				caps = append(caps, p.Bare)
			}
			caps = append(caps, p.Endpoint)
		}
	}
	if tk := r.tokens; tk != nil {
		caps = append(caps, tk.Tokens)
	}
	if ea := r.extAuthz; ea != nil {
		caps = append(caps, ea.Pair.Bare, ea.Pair.Endpoint)
	}
	return caps
}

func (r *report) writeExtAuthz(w writer, ea *extAuthzResult) {
	p := ea.Pair
	w("## 7. gRPC ext_authz\n\n")
	w("Method: one key server (`keyserver.New`, its index loaded directly with %s generated API keys of 50 namespaces; no API server) ", num(float64(ea.Keys)))
	w("with one KeyPolicy of namespace `%s` for host `%s` (one rule: prefix `/v1`, GET, scope `invoices:read`), `--default-policy=deny`, ", extAuthzNS, extAuthzHost)
	w("serving Envoy's `envoy.service.auth.v3.Authorization/Check` on its gRPC listener (`keyserver.NewExtAuthzServer`, plaintext, loopback). ")
	w("The floor is a bare gRPC server in the same process, with the same gRPC limits (`keyserver.GRPCServerOptions`), whose Check answers OK to everything. ")
	w("Both get the same requests from the same client code: a CheckRequest as Envoy's filter sends it for `GET %s` on `%s` (%d headers, pseudo-headers included, ", extAuthzPath, extAuthzHost, ea.Headers)
	w("the key as `Authorization: Bearer`), cycling the %s keys of the policy's namespace, over %d gRPC client connections per server (Envoy keeps one per worker). ", num(float64(ea.Targets)), ea.Conns)
	w("The bench checks that the key server's answer is OK and names the policy `%s`, and that a key of another namespace gets 403 and an unknown key 401. ", ea.Ref)
	w("The search below is figure 1's (the same open-loop steps, sustain rule, interleaved search, probe and half-max run), the requests paced by the bench itself instead of vegeta ")
	w("(each sent at its time on the rate's schedule whatever the answers' latency, at most %d in flight); an answer counts as a success when it is OK.\n\n", maxWorkers)
	med, lo, hi := ea.ratio()
	smed, slo, shi := ea.sameRatio()
	fmed, flo, fhi := ea.sameOverBare()
	w("**The rate**: %d rounds, each a %s closed-loop run of %d concurrent callers during which the turn passes from server to server every %s, ", len(ea.Rounds), ea.RunDur, ea.Conc, ea.Slice)
	w("each round starting with the next; each OK counted for the server it was sent to and each server's rate its count over the time it held the turn (figure 6's method: all share the same seconds, ")
	w("so another job's burst hits them alike); the figure is the median of the rounds' ratios. ")
	w("A third server takes turns too, as figure 8's: a bare gRPC Check handler answering the key server's own OK answer (%d identity headers set, %d headers to remove, %d dynamic metadata entries, ", ea.AnswerHeaders, ea.AnswerRemoved, ea.AnswerMetadata)
	w("built anew per call as the key server builds its own), deciding nothing: what the answer costs gRPC and protobuf, the floor the protocol sets for Check. ")
	w("The target is judged against the bare handler answering OK, as the issue states it.\n\n")
	w("| round | Check | bare (OK) | bare (same answer) | **Check ÷ bare** | Check ÷ same answer | same answer ÷ bare |\n|---|---|---|---|---|---|---|\n")
	for i, rd := range ea.Rounds {
		w("| %d | %s/s | %s/s | %s/s | %.3f | %.3f | %.3f |\n", i+1, num(rd.Check), num(rd.Bare), num(rd.Same), rd.ratio(), rd.sameRatio(), rd.Same/rd.Bare)
	}
	w("| **median** | | | | **%.3f** (spread %.3f–%.3f) | %.3f (%.3f–%.3f) | %.3f (%.3f–%.3f) |\n\n", med, lo, hi, smed, slo, shi, fmed, flo, fhi)
	w("**Max sustained rates and latency**: figure 1's interleaved search of both servers, then each at half the key server's max (p50/p99):\n\n")
	r.writeCapacityTable(w, []*capacity{p.Bare, p.Endpoint}, "÷ bare", func(c *capacity) string {
		if c == p.Bare {
			return "(floor)"
		}
		return fmt.Sprintf("**%.2f**", p.ratio())
	}, func(c *capacity) float64 {
		if c == p.Bare || p.Bare.CPUPerReq == 0 {
			return 0
		}
		return float64(c.CPUPerReq) / float64(p.Bare.CPUPerReq)
	})
	w("| endpoint at half max | its p50 | its p99 | bare handler at the same rate, right after: p50 | p99 |\n|---|---|---|---|---|\n")
	w("| %s (%s/s) | %s | %s | %s | %s |\n\n", p.Endpoint.Endpoint.title, num(p.Endpoint.Half.Rate), fmtDur(p.Endpoint.Half.P50), fmtDur(p.Endpoint.Half.P99),
		fmtDur(p.BareAtHalf.P50), fmtDur(p.BareAtHalf.P99))
}

func (r *report) writeProfiles(w writer) {
	caps := r.allCaps()
	var withProf []*capacity
	for _, c := range caps {
		if c.Profile != nil && c.Profile.TotalSeconds > 0 {
			withProf = append(withProf, c)
		}
	}
	if len(withProf) == 0 {
		return
	}
	w("## Where the CPU goes\n\n")
	w("CPU profiles (`runtime/pprof`) of the whole process during each closed-loop probe (saturated): load generator, servers and runtime together, ")
	w("as shares of all CPU samples. Keep them with `-profile-dir DIR` and open with `go tool pprof`.\n\n")
	w("| |")
	for _, c := range withProf {
		w(" %s |", c.Endpoint.title)
	}
	w("\n|---|")
	for range withProf {
		w("---|")
	}
	w("\n")
	for _, in := range inclusive {
		w("| %s |", strings.ReplaceAll(in.name, "  ", "&nbsp;&nbsp;"))
		for _, c := range withProf {
			w(" %s |", pct(c.Profile.inclusive(in.name)))
		}
		w("\n")
	}
	w("| *self time by kind of code* |")
	for range withProf {
		w(" |")
	}
	w("\n")
	for _, bk := range buckets {
		w("| %s |", bk.name)
		for _, c := range withProf {
			v := 0.0
			for _, s := range c.Profile.Buckets {
				if s.Name == bk.name {
					v = s.Share
				}
			}
			w(" %s |", pct(v))
		}
		w("\n")
	}
	w("\n<details><summary>top functions by self time</summary>\n\n")
	for _, c := range withProf {
		w("**%s** (%.1f CPU-seconds sampled): ", c.Endpoint.title, c.Profile.TotalSeconds)
		var parts []string
		for _, s := range c.Profile.Top {
			parts = append(parts, fmt.Sprintf("`%s` %s", s.Name, pct(s.Share)))
		}
		w("%s\n\n", strings.Join(parts, ", "))
	}
	w("</details>\n\n")
}

func (r *report) writePolicy(w writer, pl *policyResult) {
	med, lo, hi := pl.ratio()
	w("## 6. Policy selection\n\n")
	w("Method: one key server (`keyserver.New`, its index loaded directly with %s generated API keys of 50 namespaces, served by `httptest` on loopback; no API server), ",
		num(policyKeys))
	w("a table of %s KeyPolicies loaded directly with `SetPolicies(keypolicy.Build(…))` as the key server's feed does, each in one of those namespaces with one exact host ",
		num(policyTableN))
	w("and one rule (path prefix `/v1`, GET, scope `invoices:read`). The request is a forward-auth check as the nginx block sends it: GET /v1/authz, `Host: %s` ", pl.Host)
	w("(the host of policy `%s`), `X-Original-Uri: %s`, and one of the %s keys of that policy's namespace, cycled. ", pl.Ref, policyPath, num(float64(pl.Targets)))
	w("The floor is the same server answering the same requests with no policy (an empty table) under `--default-policy=allow-valid-key`: any valid key passes, as before KeyPolicy. ")
	w("With the table, the policy decides (the server's default mode is not asked for a host a policy names; the bench checks that the answer names the policy and that a key of another namespace gets 403). ")
	w("Each of %d rounds is first a %s closed-loop run (%d concurrent requests, as figure 1's probe) during which the server's table is swapped every %s between the 1,000 policies and none, ",
		len(pl.Rounds), pl.RunDur, pl.Conc, pl.Slice)
	w("each 200 counted for the side that answered it (by its X-Keyward-Policy header) and each side's rate its count over the time it held the server: ")
	w("both sides share the same seconds, so another job's burst hits both alike (rounds of whole runs, seconds apart, spread from 0.4 to 1.4 on this shared machine); ")
	w("then, for each side in turn (the order swapped each round), an open-loop run at a fixed %s/s (below figure 1's knees) for %s gives p50 and p99 at a moderate rate. ", num(pl.OpenRate), pl.OpenDur)
	w("Both sides were warmed up first (a short open-loop and closed-loop run each). ")
	w("The figure is the median of the rounds' ratios (through the policy ÷ no policy), with their lowest and highest as the spread. ")
	w("Closed loop rather than figure 1's p99-bounded knee: the knee moves ±10–15%% between runs of the same handler, which would hide a 10%% difference; ")
	w("saturated throughput in alternating rounds is steadier. Heap: tables of each size built from KeyPolicy objects, the heap they add read after a GC, the objects themselves excluded.\n\n")
	w("| round | through the policy | no policy | **ratio** | CPU per request (both sides) | open loop p50 (policy / none) | p99 (policy / none) |\n|---|---|---|---|---|---|---|\n")
	for i, rd := range pl.Rounds {
		w("| %d | %s/s | %s/s | %.3f | %s | %s / %s | %s / %s |\n", i+1, num(rd.Policy), num(rd.Base), rd.ratio(),
			fmtDur(rd.CPU), fmtDur(rd.PolicyP50), fmtDur(rd.BaseP50), fmtDur(rd.PolicyP99), fmtDur(rd.BaseP99))
	}
	bp50, bp99, pp50, pp99, bs, ps := pl.openMedians()
	w("| **median** | | | **%.3f** (spread %.3f–%.3f) | %s | %s / %s | %s / %s |\n\n", med, lo, hi, fmtDur(pl.cpuPerRequest()), fmtDur(pp50), fmtDur(bp50), fmtDur(pp99), fmtDur(bp99))
	w("Open-loop success, worst round: %.2f%% through the policy, %.2f%% with none. `Table.Select` alone, in process, for the same host and path: %s per call.\n\n",
		100*ps, 100*bs, fmtDurNs(pl.Select))
	w("| policies in the table | heap per policy | tables built |\n|---|---|---|\n")
	for _, h := range pl.Heap {
		w("| %s | %s B | %d |\n", num(float64(h.N)), num(h.PerPolicy), h.Reps)
	}
	w("\n")
}

func (r *report) writeHotPath(w writer, hp *hotpathResult) {
	w("## 8. The hot path\n\n")
	w("Method: for each scenario, one key server (`keyserver.New`, served by its own `Start` on `127.0.0.1` with its timeouts; its index loaded directly with %s generated API keys; ", num(float64(hp.Keys)))
	w("no API server, no policy, `--default-policy=allow-valid-key`) and figure 1's bare handler, given the same requests: GET /v1/authz with one of the keys as `Authorization: Bearer`, cycled. ")
	w("A third server is the bare handler writing the key server's answer headers (X-Keyward-Subject, -Groups, -Scopes, -Key-Id, -Namespace, -Policy, and RateLimit-Policy and RateLimit when a limit is counted: the same bytes): ")
	w("what answering a gateway costs net/http and the client, whoever computes the answer. ")
	w("Each round is one %s closed-loop run (%d concurrent requests on one keep-alive client, as figure 1's probe) whose load switches every %s from one server to the next ", hp.RunDur, hp.Conc, hp.Slice)
	w("(the first one rotating between rounds); at each switch the requests in flight finish before the next server's slice starts, so every request and its time belong to one server; ")
	w("each server's rate is its 200s over the time it held the load, and its CPU per request the process's CPU time (client included) during its slices over its 200s. ")
	w("All three share each round's seconds, so another job's burst hits them alike. The figure is the median of the rounds' ratios (key server ÷ bare handler), with their lowest and highest as the spread. ")
	w("Every answer must be a 200: the limited scenarios give every key a rate limit of %s requests per %s, far above what each key gets here, ", num(float64(hotLimit.Requests)), hotLimit.Period)
	w("so the figure is the cost of counting, not of refusing (the bench checks that the answers carry the RateLimit headers, i.e. that the request was counted). ")
	w("The Redis scenario runs a redis-server started for it on loopback (no persistence), the store behind a `ratelimit.Guard` as `--rate-limit-store=redis://…` builds it. ")
	w("After the rounds, a closed-loop run of /v1/authz alone under a CPU profile shows where the time goes (`-profile-dir` keeps it as `hotpath-<scenario>.pprof`).\n\n")
	w("The rate ratio is the figure; the CPU ratio (the bare handler's CPU per request over the key server's, median of the rounds) is what the rate ratio would be for a process that has the CPUs to itself, ")
	w("and moves less with other jobs: under a heavy load the lighter side, which sleeps and wakes more often per CPU-second, gets more of the CPU from the OS scheduler, and the rate ratio drops below the CPU ratio.\n\n")
	w("| scenario | round ratios | **median** (spread) | by CPU per request | bare handler writing the headers ÷ bare | CPU per request: key server / with the headers / bare | key server handlers in the profile |\n|---|---|---|---|---|---|---|\n")
	for _, sr := range hp.Scenarios {
		if len(sr.Rounds) == 0 {
			w("| %s | not measured: %s | | | | | |\n", sr.Scenario.title, sr.Missing)
			continue
		}
		var parts []string
		for _, rd := range sr.Rounds {
			parts = append(parts, fmt.Sprintf("%.3f", rd.ratio()))
		}
		med, lo, hi := sr.ratio()
		hmed, hlo, hhi := sr.headersRatio()
		prof := ""
		if p := sr.Profile; p != nil {
			prof = pct(p.inclusive("key server handlers"))
		}
		cmed, clo, chi := sr.cpuRatio()
		w("| %s | %s | **%.3f** (%.3f–%.3f) | %.3f (%.3f–%.3f) | %.3f (%.3f–%.3f) | %s / %s / %s | %s |\n", sr.Scenario.title, strings.Join(parts, ", "), med, lo, hi,
			cmed, clo, chi, hmed, hlo, hhi, fmtDur(sr.cpu(sideAuthz)), fmtDur(sr.cpu(sideHeaders)), fmtDur(sr.cpu(sideBare)), prof)
	}
	w("\n")
	if rt := hp.Redis; rt != nil {
		w("The Redis round trip: a redis-server %s started for the figure on loopback (no persistence), PING (the smallest command; the Redis store's one round trip per request costs this plus its script): ", rt.Version)
		w("one connection, one at a time, %s PINGs: p50 %s, p99 %s; %d connections, closed loop for %s: %s/s, p50 %s, p99 %s. ",
			num(redisPings), fmtDur(rt.SerialP50), fmtDur(rt.SerialP99), rt.Conc, hp.RunDur, num(rt.ConcRate), fmtDur(rt.ConcP50), fmtDur(rt.ConcP99))
		w("The store's own call, `ratelimit.Redis.Allow` (go-redis, redis_rate's GCRA script, %s keys' buckets), one at a time: p50 %s, p99 %s; %d at once: %s/s, p50 %s, p99 %s, %s of this process's CPU per call.\n\n",
			num(hotKeys), fmtDur(rt.AllowP50), fmtDur(rt.AllowP99), rt.Conc, num(rt.AllowConcRate), fmtDur(rt.AllowConcP50), fmtDur(rt.AllowConcP99), fmtDur(rt.AllowCPU))
	} else {
		w("The Redis round trip was not measured: %s.\n\n", hp.RedisErr)
	}
	w("\n<details><summary>every round</summary>\n\n")
	w("| scenario | round | key server | bare with the headers | bare | ratio | CPU per request (key server / headers / bare) |\n|---|---|---|---|---|---|---|\n")
	for _, sr := range hp.Scenarios {
		for i, rd := range sr.Rounds {
			w("| %s | %d | %s/s | %s/s | %s/s | %.3f | %s / %s / %s |\n", sr.Scenario.title, i+1, num(rd.Rate[sideAuthz]), num(rd.Rate[sideHeaders]), num(rd.Rate[sideBare]),
				rd.ratio(), fmtDur(rd.CPU[sideAuthz]), fmtDur(rd.CPU[sideHeaders]), fmtDur(rd.CPU[sideBare]))
		}
	}
	w("\n</details>\n\n")
}

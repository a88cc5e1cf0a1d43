package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/webhook/keyserver"
)

// Figure 6: /v1/authz decided by a KeyPolicy (issue 14, part 8). One key
// server, its index holding policyKeys keys, answers the same request in
// alternating rounds with a table of policyTableN policies (the request's
// host is one policy's, with one rule) and with no policy under
// allow-valid-key, which is how every request was decided before KeyPolicy.
const (
	policyKeys   = 100_000
	policyTableN = 1_000
	// policyTarget: the policy lookup must not be the new bottleneck.
	targetPolicyRatio = 0.9
	// policyPath is the original request's path, below the rule's prefix.
	policyPath = "/v1/invoices/42"
	// policyOpenRate is the open-loop rate of the latency runs: below any
	// knee of figure 1 (about 5,000/s for /v1/authz on 2 CPUs), so that
	// latency is the server's and not a queue's.
	policyOpenRate = 2000.0
	// policySlice is how long one side holds the server in a closed-loop
	// run before the table is swapped: short against the machine's drift
	// (other jobs' bursts hit both sides alike), long against the requests
	// in flight at a swap (tens of microseconds).
	policySlice = 20 * time.Millisecond
)

// policyHeapSizes are the tables whose heap per policy is reported.
var policyHeapSizes = []int{1_000, 10_000}

type policyRound struct {
	Base, Policy         float64       // closed-loop 200s per second
	CPU                  time.Duration // process CPU per request, both sides
	BaseP50, PolicyP50   time.Duration // open loop at the fixed rate
	BaseP99, PolicyP99   time.Duration
	BaseSucc, PolicySucc float64
}

func (r policyRound) ratio() float64 { return r.Policy / r.Base }

type policyHeap struct {
	N         int
	PerPolicy float64 // heap bytes per policy in the table (compiled policy and index)
	Reps      int
}

// policyResult is figure 6.
type policyResult struct {
	Rounds   []policyRound
	Conc     int // concurrent requests of the closed-loop runs
	RunDur   time.Duration
	Slice    time.Duration // how long the table stays before it is swapped
	OpenRate float64       // the fixed open-loop rate, both sides
	OpenDur  time.Duration
	Targets  int           // distinct keys presented
	Host     string        // the policy chosen
	Ref      string        // its namespace/name
	Select   time.Duration // Table.Select alone, in process, per call
	Heap     []policyHeap
}

func (p *policyResult) ratios() []float64 {
	out := make([]float64, len(p.Rounds))
	for i, r := range p.Rounds {
		out[i] = r.ratio()
	}
	slices.Sort(out)
	return out
}

// median of the per-round ratios, and the rounds' lowest and highest.
func (p *policyResult) ratio() (med, lo, hi float64) {
	rs := p.ratios()
	if len(rs) == 0 {
		return 0, 0, 0
	}
	return medianOf(rs), rs[0], rs[len(rs)-1]
}

func (p *policyResult) cpuPerRequest() time.Duration {
	ds := make([]time.Duration, 0, len(p.Rounds))
	for _, r := range p.Rounds {
		ds = append(ds, r.CPU)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// openMedians are the medians over the rounds of the open-loop p50 and
// p99 of each side, and each side's worst success.
func (p *policyResult) openMedians() (bp50, bp99, pp50, pp99 time.Duration, bs, ps float64) {
	var b50, b99, p50, p99 []time.Duration
	bs, ps = 1, 1
	for _, r := range p.Rounds {
		b50, b99, p50, p99 = append(b50, r.BaseP50), append(b99, r.BaseP99), append(p50, r.PolicyP50), append(p99, r.PolicyP99)
		bs, ps = min(bs, r.BaseSucc), min(ps, r.PolicySucc)
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	return med(b50), med(b99), med(p50), med(p99), bs, ps
}

func medianOf(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	default:
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
}

// benchPolicies is n KeyPolicies as teams write them: each in one of the
// fleet's namespaces (team-00 … team-49), one exact host, one rule (a path
// prefix, GET, a scope the fleet's keys carry), created a second apart.
func benchPolicies(n int) []kw.KeyPolicy {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]kw.KeyPolicy, n)
	for i := range out {
		out[i] = kw.KeyPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("team-%02d", i%50), Name: fmt.Sprintf("api-%05d", i), Generation: 1,
				CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(i) * time.Second))},
			Spec: kw.KeyPolicySpec{
				Hosts: []kw.Hostname{kw.Hostname(policyHost(i))},
				Rules: []kw.KeyPolicyRule{{PathPrefix: "/v1", Methods: []kw.HTTPMethod{http.MethodGet}, RequiredScopes: []string{"invoices:read"}}},
			},
		}
	}
	return out
}

func policyHost(i int) string { return fmt.Sprintf("api-%05d.example.com", i) }

// policyHeapPer builds reps tables of n policies and returns the heap they
// hold per policy, excluding the KeyPolicy objects fed to them (allocated
// before the first reading, alive at the second), as loadIndexes does.
func policyHeapPer(n, reps int) float64 {
	objs := make([][]kw.KeyPolicy, reps)
	for i := range objs {
		objs[i] = benchPolicies(n)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	tables := make([]*keypolicy.Table, reps)
	for i := range tables {
		tables[i] = keypolicy.Build(objs[i])
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(objs)
	runtime.KeepAlive(tables)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n*reps)
}

func benchPolicy(lg *loadGen, rounds int) (*policyResult, error) {
	progress("figure 6: GET /v1/authz through a policy (%s policies, %s keys) vs no policy (allow-valid-key), same server, interleaved rounds",
		num(policyTableN), num(policyKeys))
	res := &policyResult{Conc: 8 * runtime.GOMAXPROCS(0), RunDur: lg.m.probeDur, OpenDur: lg.m.stepDur, Slice: policySlice}
	for _, n := range policyHeapSizes {
		reps := max(1, policyHeapSizes[len(policyHeapSizes)-1]/n)
		h := policyHeap{N: n, Reps: reps, PerPolicy: policyHeapPer(n, reps)}
		res.Heap = append(res.Heap, h)
		progress("  %s policies (%d tables of that size): %.0f heap bytes per policy", num(float64(n)), reps, h.PerPolicy)
	}

	now := time.Now()
	recs, keys, err := fleet(policyKeys, now)
	if err != nil {
		return nil, err
	}
	// allow-valid-key: without a table, today's behaviour; with one, the
	// policy naming the request's host decides and the default mode is not
	// asked (it only decides hosts no policy names), so the policy side is
	// what a server under --default-policy=deny does for that request.
	s := keyserver.New(keyserver.Options{FailureLimit: 1 << 30, FailureRefill: time.Millisecond,
		DefaultPolicy: keypolicy.ModeAllowValidKey})
	for _, r := range recs {
		if err := s.Index().Upsert(hashsecret.Name(r.Kind, r.Namespace, r.Name), r); err != nil {
			return nil, err
		}
	}
	objs := benchPolicies(policyTableN)
	table := keypolicy.Build(objs)
	none := keypolicy.NewTable(nil)
	pick := policyTableN / 2
	chosen := objs[pick]
	res.Host, res.Ref = policyHost(pick), chosen.Namespace+"/"+chosen.Name
	if st, ok := table.Status(keypolicy.Ref{Namespace: chosen.Namespace, Name: chosen.Name}); !ok || st.Invalid != "" || len(st.Held) != 1 || table.Len() != policyTableN {
		return nil, fmt.Errorf("policy %s is not applied in the table (%d policies hold hosts): %+v", res.Ref, table.Len(), st)
	}

	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	// The keys of the chosen policy's namespace (the fleet's namespace is
	// team-(i%50)), cycled: the policy accepts them.
	var targets []vegeta.Target
	var stranger string
	for i := range policyKeys {
		if recs[i].Namespace != chosen.Namespace {
			if stranger == "" {
				stranger = keys[i]
			}
			continue
		}
		targets = append(targets, authzTarget(ts.URL, res.Host, keys[i]))
	}
	res.Targets = len(targets)
	recs, keys = nil, nil
	runtime.GC()

	// What is measured is what it claims to be: with the table, the policy
	// decides (a key of another namespace is refused); without, nobody.
	s.SetPolicies(table)
	if err := checkAuthz(lg.client, targets[0], http.StatusOK, res.Ref); err != nil {
		return nil, err
	}
	if err := checkAuthz(lg.client, authzTarget(ts.URL, res.Host, stranger), http.StatusForbidden, res.Ref); err != nil {
		return nil, err
	}
	s.SetPolicies(none)
	if err := checkAuthz(lg.client, targets[0], http.StatusOK, ""); err != nil {
		return nil, err
	}

	// Table.Select alone, for scale.
	const selects = 1_000_000
	t := time.Now()
	for range selects {
		if table.Select(res.Host, policyPath).Policy == nil {
			return nil, errors.New("Select found no policy")
		}
	}
	res.Select = time.Since(t) / selects

	ep := endpoint{name: "authz-policy", title: "GET /v1/authz", targets: targets}
	set := func(policy bool) {
		if policy {
			s.SetPolicies(table)
		} else {
			s.SetPolicies(none)
		}
	}
	// Warm-up: connections, the index's pages, the table's.
	res.OpenRate = policyOpenRate
	for _, policy := range []bool{false, true} {
		set(policy)
		lg.attack(ep, lowRate, 300*time.Millisecond)
		if _, _, _, err := lg.probe(ep, lg.m.probeDur/2, ""); err != nil {
			return nil, err
		}
		pause()
	}

	for r := range rounds {
		var rd policyRound
		var err error
		rd.Policy, rd.Base, rd.CPU, err = switchedRates(lg.client, targets, lg.m.probeDur, res.Conc, r%2 == 0, set, res.Ref)
		if err != nil {
			return nil, err
		}
		pause()
		for k := range 2 {
			policy := (k+r)%2 == 1
			set(policy)
			st := lg.attack(ep, res.OpenRate, lg.m.stepDur)
			pause()
			if policy {
				rd.PolicyP50, rd.PolicyP99, rd.PolicySucc = st.P50, st.P99, st.Success
			} else {
				rd.BaseP50, rd.BaseP99, rd.BaseSucc = st.P50, st.P99, st.Success
			}
		}
		res.Rounds = append(res.Rounds, rd)
		progress("  round %d: through the policy %.0f/s, no policy %.0f/s: %.3f (CPU per request %s; at %.0f/s p50 %s vs %s, p99 %s vs %s)",
			r+1, rd.Policy, rd.Base, rd.ratio(), fmtDur(rd.CPU), res.OpenRate,
			fmtDur(rd.PolicyP50), fmtDur(rd.BaseP50), fmtDur(rd.PolicyP99), fmtDur(rd.BaseP99))
	}
	set(true)
	if err := checkAuthz(lg.client, targets[len(targets)-1], http.StatusOK, res.Ref); err != nil {
		return nil, err
	}
	med, lo, hi := res.ratio()
	progress("  median of %d rounds' ratios %.3f (%.3f–%.3f); Table.Select alone %s", rounds, med, lo, hi, fmtDurNs(res.Select))
	runtime.KeepAlive(objs)
	return res, nil
}

// authzTarget is a forward-auth check as the nginx block sends it: the
// original host as Host, its path as X-Original-Uri, GET.
func authzTarget(base, host, key string) vegeta.Target {
	return vegeta.Target{Method: http.MethodGet, URL: base + "/v1/authz", Header: http.Header{
		"Host":           {host},
		"Authorization":  {"Bearer " + key},
		"X-Original-Uri": {policyPath},
	}}
}

// checkAuthz sends t once and wants status and X-Keyward-Policy policy.
func checkAuthz(c *http.Client, t vegeta.Target, status int, policy string) error {
	req, err := t.Request()
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != status || resp.Header.Get(wire.HeaderPolicy) != policy {
		return fmt.Errorf("figure 6: /v1/authz answered %d, policy %q (%s); want %d, policy %q",
			resp.StatusCode, resp.Header.Get(wire.HeaderPolicy), resp.Header.Get(wire.HeaderCode), status, policy)
	}
	return nil
}

// switchedRates runs conc concurrent requests for d (closed loop) while the
// server's table is swapped every policySlice between the policy table and
// none, starting with the policy when policyFirst. Each 200 is counted for
// the side that answered it (X-Keyward-Policy names ref, or is empty), and
// each side's rate is its count over the time it held the server.
func switchedRates(c *http.Client, targets []vegeta.Target, d time.Duration, conc int, policyFirst bool, set func(policy bool), ref string) (policyRate, baseRate float64, cpuPerReq time.Duration, err error) {
	var nPolicy, nBase, nOther atomic.Int64
	var held [2]time.Duration // [0] no policy, [1] the policy
	var stop atomic.Bool
	var wg sync.WaitGroup
	cpu0 := processCPU()
	for w := range conc {
		wg.Go(func() {
			for i := w; !stop.Load(); i += conc {
				req, err := targets[i%len(targets)].Request()
				if err != nil {
					nOther.Add(1)
					return
				}
				resp, err := c.Do(req)
				if err != nil {
					nOther.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				switch p := resp.Header.Get(wire.HeaderPolicy); {
				case resp.StatusCode != http.StatusOK:
					nOther.Add(1)
				case p == ref:
					nPolicy.Add(1)
				case p == "":
					nBase.Add(1)
				default:
					nOther.Add(1)
				}
			}
		})
	}
	side := policyFirst
	deadline := time.Now().Add(d)
	for t := time.Now(); t.Before(deadline); {
		set(side)
		time.Sleep(policySlice)
		now := time.Now()
		if side {
			held[1] += now.Sub(t)
		} else {
			held[0] += now.Sub(t)
		}
		t, side = now, !side
	}
	stop.Store(true)
	wg.Wait()
	cpu := processCPU() - cpu0
	if n := nOther.Load(); n > 0 {
		return 0, 0, 0, fmt.Errorf("figure 6: %d answers were not a 200 of either side", n)
	}
	if nPolicy.Load() == 0 || nBase.Load() == 0 {
		return 0, 0, 0, errors.New("figure 6: a side answered nothing")
	}
	return float64(nPolicy.Load()) / held[1].Seconds(), float64(nBase.Load()) / held[0].Seconds(),
		cpu / time.Duration(nPolicy.Load()+nBase.Load()), nil
}

package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/webhook/keyserver"
)

// Figure 2a as a client sees it: the whole key server, its index loaded
// with each size, answering GET /v1/authz over loopback at a fixed rate far
// below any knee of figure 1, so that the latency is the server's own and
// not a queue's.
const (
	servedRate    = 1000.0
	servedStep    = 700 * time.Millisecond
	servedRounds  = 9
	servedTargets = 20_000 // distinct keys presented per size, cycled
)

type servedSize struct {
	N        int
	P50, P99 time.Duration // medians over the rounds
	Success  float64       // worst round
}

// benchIndexServed loads one key server per size and measures them in
// short interleaved rounds. It returns each size's medians and the median
// over the rounds of the ratio of the largest size's p50 to the smallest's
// in the same round: the machine's drift (other jobs, GC) moves both.
func benchIndexServed(lg *loadGen, now time.Time) ([]servedSize, float64, error) {
	progress("figure 2a, served: GET /v1/authz at %.0f/s against a key server holding %v keys", servedRate, indexSizes)
	eps := make([]endpoint, len(indexSizes))
	for i, n := range indexSizes {
		recs, keys, err := fleet(n, now)
		if err != nil {
			return nil, 0, err
		}
		// Every request comes from 127.0.0.1; nothing here fails anyway.
		// Validation is measured, not a policy: no KeyPolicy names 127.0.0.1.
		s := keyserver.New(keyserver.Options{FailureLimit: 1 << 30, FailureRefill: time.Millisecond,
			DefaultPolicy: keypolicy.ModeAllowValidKey})
		for _, r := range recs {
			if err := s.Index().Upsert(hashsecret.Name(r.Kind, r.Namespace, r.Name), r); err != nil {
				return nil, 0, err
			}
		}
		ts := httptest.NewServer(s.Handler())
		defer ts.Close()
		targets := make([]vegeta.Target, min(servedTargets, n))
		for t := range targets {
			targets[t] = vegeta.Target{Method: http.MethodGet, URL: ts.URL + "/v1/authz",
				Header: http.Header{"Authorization": {"Bearer " + keys[rand.IntN(n)]}}}
		}
		eps[i] = endpoint{name: fmt.Sprintf("served-%d", n), title: fmt.Sprintf("key server with %d keys", n), targets: targets}
	}
	p50s := make([][]time.Duration, len(eps))
	p99s := make([][]time.Duration, len(eps))
	out := make([]servedSize, len(eps))
	for i := range out {
		out[i] = servedSize{N: indexSizes[i], Success: 1}
	}
	var ratios []float64
	last := len(eps) - 1
	for r := range servedRounds {
		round := make([]time.Duration, len(eps))
		for j := range eps {
			i := (j + r) % len(eps)
			st := lg.attack(eps[i], servedRate, servedStep)
			p50s[i] = append(p50s[i], st.P50)
			p99s[i] = append(p99s[i], st.P99)
			round[i] = st.P50
			out[i].Success = min(out[i].Success, st.Success)
			progress("  %s: p50 %s p99 %s success %.2f%%", eps[i].title, fmtDur(st.P50), fmtDur(st.P99), 100*st.Success)
		}
		if round[0] > 0 {
			ratios = append(ratios, float64(round[last])/float64(round[0]))
		}
		pause()
	}
	for i := range out {
		slices.Sort(p50s[i])
		slices.Sort(p99s[i])
		out[i].P50, out[i].P99 = p50s[i][len(p50s[i])/2], p99s[i][len(p99s[i])/2]
	}
	slices.Sort(ratios)
	ratio := 0.0
	if len(ratios) > 0 {
		ratio = ratios[len(ratios)/2]
	}
	return out, ratio, nil
}

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// keyServerResult is figure 1: each endpoint searched interleaved with its
// own run of the floor.
type keyServerResult struct {
	Pairs []pairResult
	GC    gcSummary // over the whole figure
}

type pairResult struct {
	Bare, Endpoint *capacity
	// BareAtHalf is the bare handler at the endpoint's half-max rate, run
	// right after it: the machine's own p99 at that rate.
	BareAtHalf step
}

func (p pairResult) ratio() float64 { return p.Endpoint.Max / p.Bare.Max }

// bareServer is a net/http server answering 200 to everything, with the key
// server's limits, in this process: the floor of figure 1.
func bareServer(ctx context.Context) (string, error) {
	return startBare(ctx, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
}

// startBare serves h as bareServer does.
func startBare(ctx context.Context, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           h,
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       90 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return "http://" + ln.Addr().String(), nil
}

func benchKeyServer(ctx context.Context, lg *loadGen, cl *cluster, cr credentials) (*keyServerResult, error) {
	progress("figure 1: key server over loopback vs a bare net/http handler")
	bareURL, err := bareServer(ctx)
	if err != nil {
		return nil, err
	}
	bare := endpoint{name: "bare", title: "bare net/http handler (GET, 200)", targets: []vegeta.Target{{Method: http.MethodGet, URL: bareURL + "/v1/authz",
		Header: http.Header{"Authorization": {"Bearer " + cr.apiKey}}}}}
	eps := []endpoint{
		{name: "authz-apikey", title: "GET /v1/authz, API key", targets: []vegeta.Target{{Method: http.MethodGet, URL: cl.base + "/v1/authz",
			Header: http.Header{"Authorization": {"Bearer " + cr.apiKey}}}}},
		{name: "verify-apikey", title: "POST /v1/verify, API key", targets: []vegeta.Target{{Method: http.MethodPost, URL: cl.base + "/v1/verify",
			Body: []byte(`{"key":"` + cr.apiKey + `"}`), Header: http.Header{"Content-Type": {"application/json"}}}}},
		{name: "authz-jwt", title: "GET /v1/authz, Keyward JWT", targets: []vegeta.Target{{Method: http.MethodGet, URL: cl.base + "/v1/authz",
			Header: http.Header{"Authorization": {"Bearer " + cr.jwt}}}}},
	}
	res := &keyServerResult{}
	gc0 := readGC()
	defer func() { res.GC = summarizeGC(gc0, readGC()) }()
	for i, ep := range eps {
		// The bare handler gets the same request as the endpoint (method,
		// headers, body), so the client's and net/http's share of the work
		// is the same on both sides of the ratio.
		b := bare
		b.name = fmt.Sprintf("bare-%d", i+1)
		b.title = fmt.Sprintf("bare net/http handler (%s, 200)", ep.targets[0].Method)
		b.targets = sameRequestAt(bareURL, cl.base, ep.targets)
		progress(" %s, interleaved with the bare handler", ep.title)
		caps, err := lg.maxRates(ctx, []endpoint{b, ep}, []bool{i == 0, true})
		if err != nil {
			return nil, err
		}
		p := pairResult{Bare: caps[0], Endpoint: caps[1]}
		p.BareAtHalf = lg.attack(b, p.Endpoint.Half.Rate, lg.m.halfDur)
		p.Bare.judge(&p.BareAtHalf)
		progress("  bare handler at %.0f/s: p50 %s p99 %s", p.BareAtHalf.Rate, fmtDur(p.BareAtHalf.P50), fmtDur(p.BareAtHalf.P99))
		pause()
		res.Pairs = append(res.Pairs, p)
	}
	return res, nil
}

// tokensResult is figure 5.
type tokensResult struct {
	RawRates []float64       // raw ES256 signatures per second, all CPUs; before and after
	RawRate  float64         // their mean
	RawCPU   []time.Duration // process CPU time per raw signature, before and after
	// RawCPUMean is their mean.
	RawCPUMean time.Duration
	Tokens     *capacity
}

// rawSignRate signs SHA-256 digests of input with ecdsa.SignASN1 on
// GOMAXPROCS goroutines for d and returns signatures per second and the
// process CPU time per signature: the floor of figure 5, as
// BenchmarkRawES256Sign in internal/tokens but on all CPUs.
func rawSignRate(input []byte, d time.Duration) (float64, time.Duration, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, 0, err
	}
	var n atomic.Int64
	cpu0 := processCPU()
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				digest := sha256.Sum256(input)
				if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	cpu := processCPU() - cpu0
	if err, ok := firstErr.Load().(error); ok {
		return 0, 0, err
	}
	if n.Load() == 0 {
		return 0, 0, errors.New("no signature in the time given")
	}
	return float64(n.Load()) / time.Since(start).Seconds(), cpu / time.Duration(n.Load()), nil
}

func benchTokens(ctx context.Context, lg *loadGen, cl *cluster, cr credentials) (*tokensResult, error) {
	progress("figure 5: token issuance vs raw ES256 signing")
	// The signing input of a real token: what ecdsa signs when one is issued.
	dot := strings.LastIndexByte(cr.jwt, '.')
	if dot < 0 {
		return nil, errors.New("the issued token is not a JWS")
	}
	input := []byte(cr.jwt[:dot])
	res := &tokensResult{}
	measureRaw := func() error {
		r, cpu, err := rawSignRate(input, lg.m.probeDur)
		if err != nil {
			return err
		}
		progress("  raw ES256 signing on %d goroutines: %.0f/s, %s CPU per signature", runtime.GOMAXPROCS(0), r, fmtDur(cpu))
		res.RawRates = append(res.RawRates, r)
		res.RawCPU = append(res.RawCPU, cpu)
		pause()
		return nil
	}
	if err := measureRaw(); err != nil {
		return nil, err
	}
	ep := endpoint{name: "tokens", title: "POST /v1/tokens, HTTP Basic", targets: []vegeta.Target{{Method: http.MethodPost, URL: cl.base + "/v1/tokens",
		Header: http.Header{"Authorization": {cr.basicHdr}}}}}
	caps, err := lg.maxRates(ctx, []endpoint{ep}, []bool{true})
	if err != nil {
		return nil, err
	}
	res.Tokens = caps[0]
	if err := measureRaw(); err != nil {
		return nil, err
	}
	for i, r := range res.RawRates {
		res.RawRate += r / float64(len(res.RawRates))
		res.RawCPUMean += res.RawCPU[i] / time.Duration(len(res.RawCPU))
	}
	// A last check that what was measured is what it claims to be.
	code, body := cl.do(http.MethodPost, "/v1/tokens", "", map[string]string{"Authorization": cr.basicHdr})
	var tr struct {
		Token string `json:"token"`
	}
	if code != 200 || json.Unmarshal(body, &tr) != nil || strings.Count(tr.Token, ".") != 2 {
		return nil, errors.New("POST /v1/tokens did not answer a token after the run")
	}
	return res, nil
}

// sameRequestAt copies targets to the server at url instead of base.
func sameRequestAt(url, base string, targets []vegeta.Target) []vegeta.Target {
	out := make([]vegeta.Target, len(targets))
	for i, t := range targets {
		t.URL = url + strings.TrimPrefix(t.URL, base)
		out[i] = t
	}
	return out
}

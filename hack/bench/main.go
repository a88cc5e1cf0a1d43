// Command bench measures Keyward's performance figures and writes them, with
// the machine they were measured on, to a Markdown document
// (docs/benchmarks.md).
//
//	go run ./hack/bench -out docs/benchmarks.md          # full run, ~8 min on 2 cores
//	go run ./hack/bench -quick                           # short run, ~2 min, to stdout
//	go run ./hack/bench -only keyserver,tokens -quick    # some figures only
//	go run ./hack/bench -only policy                     # no API server needed
//	go run ./hack/bench -only extauthz                   # nor here
//	go run ./hack/bench -only hotpath -quick             # nor here: /v1/authz vs bare, ~1 min
//
// Every figure is a ratio against a floor measured in the same run on the
// same machine (a bare net/http handler, raw ES256 signing, plain Secret
// writes, a 1k-key index): absolute times drift on shared CI machines, where
// other jobs share the CPU, while ratios of back-to-back measurements hold.
//
// It starts a real kube-apiserver and etcd (envtest, built by
// hack/envtest-assets.sh) and runs the whole operator in this process, as
// hack/dev does. Everything listens on loopback only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keyward/keyward/internal/logging"
)

// The figures, by the -only names that select them.
const (
	figKeyServer  = "keyserver"
	figIndex      = "index"
	figReconcile  = "reconcile"
	figRevocation = "revocation"
	figTokens     = "tokens"
	figPolicy     = "policy"
	figExtAuthz   = "extauthz"
	figHotPath    = "hotpath"
)

var allFigures = []string{figKeyServer, figIndex, figReconcile, figRevocation, figTokens, figPolicy, figExtAuthz, figHotPath}

// needsCluster: figures measured against the running operator (the index
// figure takes a real hash Secret's shape from it). The policy, ext_authz
// and hot path figures run their own key servers, with neither API server
// nor operator.
func (c config) needsCluster() bool {
	return slices.ContainsFunc(c.only, func(f string) bool { return f != figPolicy && f != figExtAuthz && f != figHotPath })
}

type config struct {
	quick      bool
	out        string
	only       []string
	profileDir string
	operatorV  bool
}

func (c config) want(fig string) bool { return slices.Contains(c.only, fig) }

// mode holds the durations and sizes of a run.
type mode struct {
	stepDur, lowDur, halfDur, probeDur time.Duration
	refine                             int // bisection steps after the first failing rate
	attempts                           int // tries of a rate before it counts as not sustained
	reconcileN                         int
	revocationN                        int
	indexSamples                       int // validations timed per index size
	policyRounds                       int // interleaved rounds of figure 6
	hotRounds                          int // interleaved rounds of figure 7, per scenario
}

func (c config) mode() mode {
	if c.quick {
		return mode{stepDur: 700 * time.Millisecond, lowDur: 400 * time.Millisecond, halfDur: 1200 * time.Millisecond, probeDur: 600 * time.Millisecond,
			refine: 1, attempts: 2, reconcileN: 100, revocationN: 100, indexSamples: 100_000, policyRounds: 5, hotRounds: 5}
	}
	return mode{stepDur: 2 * time.Second, lowDur: 1500 * time.Millisecond, halfDur: 4 * time.Second, probeDur: 2 * time.Second,
		refine: 3, attempts: 2, reconcileN: 1000, revocationN: 100, indexSamples: 300_000, policyRounds: 9, hotRounds: 9}
}

var began = time.Now()

// progress prints a line to stderr with the time since start.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	var cfg config
	var only string
	flag.BoolVar(&cfg.quick, "quick", false, "Short run (~2 min on 2 cores): shorter load steps, 100 APIKeys for the reconcile figure.")
	flag.StringVar(&cfg.out, "out", "", "Write the Markdown report here (e.g. docs/benchmarks.md); empty prints it to stdout.")
	flag.StringVar(&only, "only", strings.Join(allFigures, ","), "Comma-separated figures to measure: "+strings.Join(allFigures, ", ")+".")
	flag.StringVar(&cfg.profileDir, "profile-dir", "", "Keep the CPU profiles taken at half the max rate here (default: a temporary directory, removed).")
	flag.BoolVar(&cfg.operatorV, "operator-log", false, "Print the operator's own log (errors and info) to stderr.")
	flag.Parse()
	for _, f := range strings.Split(only, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(allFigures, f) {
			fmt.Fprintf(os.Stderr, "bench: unknown figure %q (want some of %s)\n", f, strings.Join(allFigures, ", "))
			os.Exit(2)
		}
		cfg.only = append(cfg.only, f)
	}
	if cfg.operatorV {
		ctrl.SetLogger(logging.Capped(zap.New(zap.WriteTo(os.Stderr))))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := cfg.mode()
	if cfg.quick {
		pauseDur = 150 * time.Millisecond
	}
	rep := &report{cfg: cfg, machine: describeMachine(), started: time.Now()}
	progress("machine: %d CPUs (GOMAXPROCS %d), %s, %s; load average %s", rep.machine.nproc, runtime.GOMAXPROCS(0),
		rep.machine.cpu, rep.machine.goVersion, rep.machine.loadStart)

	profDir := cfg.profileDir
	if profDir == "" {
		d, err := os.MkdirTemp("", "keyward-bench-prof-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(d) }()
		profDir = d
	} else if err := os.MkdirAll(profDir, 0o755); err != nil {
		return err
	}

	lg := newLoadGen(m, profDir)
	if cfg.needsCluster() {
		if err := runCluster(ctx, cfg, m, lg, rep); err != nil {
			return err
		}
	}
	if cfg.want(figPolicy) {
		// Also measured with the control plane gone: it reports heap.
		var err error
		if rep.policy, err = benchPolicy(lg, m.policyRounds); err != nil {
			return err
		}
	}
	if cfg.want(figExtAuthz) {
		var err error
		if rep.extAuthz, err = benchExtAuthz(ctx, lg); err != nil {
			return err
		}
	}
	if cfg.want(figHotPath) {
		var err error
		if rep.hotpath, err = benchHotPath(ctx, lg, m.hotRounds); err != nil {
			return err
		}
	}
	rep.finished = time.Now()
	rep.machine.loadEnd = loadAverage()
	doc := rep.markdown()
	if cfg.out == "" {
		fmt.Print(doc)
	} else if err := os.WriteFile(cfg.out, []byte(doc), 0o644); err != nil {
		return err
	}
	progress("done in %s; %s", rep.finished.Sub(rep.started).Round(time.Second), rep.verdictLine())
	return nil
}

// runCluster measures the figures that need the operator running, and the
// index figure after stopping it.
func runCluster(ctx context.Context, cfg config, m mode, lg *loadGen, rep *report) error {
	progress("starting kube-apiserver, etcd and the operator (envtest)…")
	cl, err := startCluster(ctx)
	if err != nil {
		return err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cl.stop()
		}
	}
	defer stop()
	progress("operator running; key server at %s", cl.base)

	if cfg.want(figKeyServer) || cfg.want(figTokens) {
		creds, err := cl.httpCredentials(ctx)
		if err != nil {
			return err
		}
		if cfg.want(figKeyServer) {
			if rep.keyServer, err = benchKeyServer(ctx, lg, cl, creds); err != nil {
				return err
			}
		}
		if cfg.want(figTokens) {
			if rep.tokens, err = benchTokens(ctx, lg, cl, creds); err != nil {
				return err
			}
		}
	}
	if cfg.want(figReconcile) {
		if rep.reconcile, err = benchReconcile(ctx, cl, m.reconcileN); err != nil {
			return err
		}
	}
	if cfg.want(figRevocation) {
		if rep.revocation, err = benchRevocation(ctx, cl, m.revocationN); err != nil {
			return err
		}
	}
	var shapes *objectShapes
	if cfg.want(figIndex) {
		// One real APIKey's objects, as the API server serves them, for the
		// informer caches' per-key cost.
		if shapes, err = cl.captureShapes(ctx); err != nil {
			return err
		}
	}
	progress("stopping the operator and the control plane")
	stop()
	if cfg.want(figIndex) {
		// Measured last, with the control plane gone: heap figures want a
		// quiet process.
		if rep.index, err = benchIndex(lg, shapes, m.indexSamples); err != nil {
			return err
		}
	}
	return nil
}

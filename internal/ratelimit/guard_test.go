package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestParseFailureMode(t *testing.T) {
	for in, want := range map[string]FailureMode{
		"open":   FailOpen,
		"closed": FailClosed,
	} {
		if got, err := ParseFailureMode(in); err != nil || got != want {
			t.Errorf("ParseFailureMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Open", "close", "fail-open", "true"} {
		if got, err := ParseFailureMode(in); err == nil {
			t.Errorf("ParseFailureMode(%q) = %q, want an error", in, got)
		}
	}
	var m FailureMode // as a pflag.Value: the zero value is the default
	if m.String() != "open" {
		t.Errorf("the zero FailureMode is %q, want open", m.String())
	}
	if err := m.Set("closed"); err != nil || m != FailClosed {
		t.Errorf("Set(closed): %v, %q", err, m)
	}
	if err := m.Set("maybe"); err == nil || m != FailClosed {
		t.Errorf("Set(maybe): %v, %q", err, m)
	}
}

// flaky is a Store whose answers a test switches: failing or counting on a
// local store, and how often it was called.
type flaky struct {
	local *Local
	fail  atomic.Bool
	calls atomic.Int64
}

var errDown = errors.New("dial tcp 10.0.0.9:6379: connect: connection refused")

func (f *flaky) Allow(ctx context.Context, name string, l Limit) (Result, error) {
	f.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if f.fail.Load() {
		return Result{}, errDown
	}
	return f.local.Allow(ctx, name, l)
}

type transitions struct {
	mu  sync.Mutex
	got []bool
	err []error
}

func (tr *transitions) record(available bool, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, available)
	tr.err = append(tr.err, err)
}

func (tr *transitions) list() []bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]bool(nil), tr.got...)
}

func TestGuardAnswersByTheFailureModeWhileTheStoreFails(t *testing.T) {
	l := Limit{Requests: 2, Period: time.Minute}
	for _, c := range []struct {
		mode FailureMode
		want Result
	}{
		{FailOpen, Result{Allowed: true, Unchecked: true}},
		{FailClosed, Result{RetryAfter: time.Second, Unchecked: true}},
	} {
		t.Run(string(c.mode), func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(t0)
			store := &flaky{local: NewLocal(clk)}
			tr := &transitions{}
			g := NewGuard(store, GuardOptions{Mode: c.mode, Clock: clk, OnTransition: tr.record})
			errs0 := testutil.ToFloat64(storeErrors)
			unchecked0 := testutil.ToFloat64(unchecked.WithLabelValues(decision(c.want.Allowed)))

			if r := allow(t, g, "ns/a", l); !r.Allowed || r.Unchecked {
				t.Fatalf("store up: %+v", r)
			}
			if testutil.ToFloat64(storeUp) != 1 {
				t.Fatal("store up, gauge not 1")
			}
			store.fail.Store(true)
			for i := range 100 {
				if r := allow(t, g, "ns/a", l); r != c.want {
					t.Fatalf("store down, request %d: %+v, want %+v", i+1, r, c.want)
				}
			}
			if got := tr.list(); len(got) != 1 || got[0] {
				t.Fatalf("transitions %v, want one: unavailable", got)
			}
			if !errors.Is(tr.err[0], errDown) {
				t.Fatalf("the transition carries %v, want the store's error", tr.err[0])
			}
			if d := testutil.ToFloat64(storeErrors) - errs0; d != DefaultFailuresToDown {
				t.Fatalf("%v store errors counted, want %d: once down, requests within the probe interval do not try the store", d, DefaultFailuresToDown)
			}
			if d := testutil.ToFloat64(unchecked.WithLabelValues(decision(c.want.Allowed))) - unchecked0; d != 100 {
				t.Fatalf("%v unchecked requests counted, want 100", d)
			}
			if testutil.ToFloat64(storeUp) != 0 || g.Available() {
				t.Fatal("store down, still reported up")
			}
			if n := store.calls.Load(); n != 1+DefaultFailuresToDown {
				t.Fatalf("the store was called %d times, want one success and %d failures", n, DefaultFailuresToDown)
			}

			// A probe interval later one request tries the store again;
			// still down: no new transition.
			clk.SetTime(t0.Add(DefaultProbeInterval))
			allow(t, g, "ns/a", l)
			allow(t, g, "ns/a", l)
			if n := store.calls.Load(); n != 2+DefaultFailuresToDown {
				t.Fatalf("the store was called %d times, want one probe more", n)
			}
			if got := tr.list(); len(got) != 1 {
				t.Fatalf("transitions %v after a failed probe, want still one", got)
			}

			// Back: the next probe counts the request and the store is up.
			store.fail.Store(false)
			clk.SetTime(t0.Add(2 * DefaultProbeInterval))
			if r := allow(t, g, "ns/a", l); !r.Allowed || r.Unchecked || r.Remaining != 0 {
				t.Fatalf("the probe after recovery: %+v, want counted (the second of 2)", r)
			}
			if r := allow(t, g, "ns/a", l); r.Allowed || r.Unchecked {
				t.Fatalf("after recovery: %+v, want counted and refused", r)
			}
			if got := tr.list(); len(got) != 2 || !got[1] || tr.err[1] != nil {
				t.Fatalf("transitions %v, want unavailable then available", got)
			}
			if testutil.ToFloat64(storeUp) != 1 || !g.Available() {
				t.Fatal("store back, not reported up")
			}
		})
	}
}

func TestGuardCallsBackOncePerTransitionUnderConcurrentFailures(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	store := &flaky{local: NewLocal(clk)}
	store.fail.Store(true)
	var calls atomic.Int64
	g := NewGuard(store, GuardOptions{Clock: clk, OnTransition: func(bool, error) { calls.Add(1) }})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				_, _ = g.Allow(context.Background(), "ns/a", Limit{Requests: 1, Period: time.Second})
			}
		})
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("%d transition calls, want 1", calls.Load())
	}
}

// A store that fails now and then (a slow round trip on a busy node) is not
// taken down: only the failing requests are answered by the failure mode.
// With fail-closed, taking it down would refuse every limited key for a
// probe interval. Failing FailuresToDown requests in a row takes it down.
func TestGuardTakesTheStoreDownOnlyAfterFailuresInARow(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	store := &flaky{local: NewLocal(clk)}
	tr := &transitions{}
	g := NewGuard(store, GuardOptions{Mode: FailClosed, Clock: clk, OnTransition: tr.record})
	l := Limit{Requests: 1 << 20, Period: time.Second}
	for i := range 1000 {
		store.fail.Store(i%DefaultFailuresToDown != 0) // fails all but one in DefaultFailuresToDown
		r := allow(t, g, "ns/a", l)
		if r.Unchecked != store.fail.Load() || r.Allowed == r.Unchecked {
			t.Fatalf("request %d, store failing %v: %+v", i+1, store.fail.Load(), r)
		}
	}
	if got := tr.list(); len(got) != 0 || !g.Available() {
		t.Fatalf("sporadic failures made transitions %v", got)
	}
	store.fail.Store(true)
	for range DefaultFailuresToDown {
		allow(t, g, "ns/a", l)
	}
	if got := tr.list(); len(got) != 1 || got[0] || g.Available() {
		t.Fatalf("%d failures in a row: transitions %v", DefaultFailuresToDown, got)
	}
}

// Attack 6: a client that gives up on its request (its context canceled)
// must not make the guard believe the store failed: that would switch every
// key to --rate-limit-store-failure for a probe interval, and with
// fail-open lift every limit.
func TestAttack6AbandonedRequestsDoNotTakeTheStoreDown(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	store := &flaky{local: NewLocal(clk)}
	tr := &transitions{}
	g := NewGuard(store, GuardOptions{Clock: clk, OnTransition: tr.record})
	errs0 := testutil.ToFloat64(storeErrors)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := Limit{Requests: 1, Period: time.Hour}
	for range 10 {
		_, _ = g.Allow(ctx, "ns/a", l)
	}
	if got := tr.list(); len(got) != 0 || !g.Available() || testutil.ToFloat64(storeErrors) != errs0 {
		t.Fatalf("abandoned requests: transitions %v, available %v, store errors +%v", got, g.Available(), testutil.ToFloat64(storeErrors)-errs0)
	}
	if r := allow(t, g, "ns/a", l); !r.Allowed || r.Unchecked {
		t.Fatalf("then a live request: %+v, want counted", r)
	}
	if r := allow(t, g, "ns/a", l); r.Allowed {
		t.Fatalf("a spent limit after abandoned requests: %+v, want refused", r)
	}
}

func TestOpenStoreByFlag(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	for flag, want := range map[string]string{
		"":                                "*ratelimit.Local",
		"local":                           "*ratelimit.Local",
		"redis://keyward-redis:6379":      "*ratelimit.Redis",
		"rediss://u:p@redis.example:6380": "*ratelimit.Redis",
		"Local":                           "error",
		"keyward-redis:6379":              "error",
		"memcached://m:11211":             "error",
	} {
		s, err := OpenStore(flag, clk)
		got := fmt.Sprintf("%T", s)
		if err != nil {
			if s != nil {
				t.Errorf("OpenStore(%q) failed (%v) but returned a store %#v", flag, err, s)
			}
			got = "error"
		}
		if got != want {
			t.Errorf("OpenStore(%q) = %s (%v), want %s", flag, got, err, want)
		}
		if c, ok := s.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
}

package keylifecycle

import (
	"context"
	"errors"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// run is a scope for Run's tests: it records the phases that ran.
type run struct {
	ran     []string
	stopped bool
}

func (r *run) Stopped() bool { return r.stopped }

func TestRun(t *testing.T) {
	phase := func(name string, wait time.Duration, stop bool, err error) Phase[*run] {
		return func(_ context.Context, r *run) (ctrl.Result, error) {
			r.ran = append(r.ran, name)
			r.stopped = r.stopped || stop
			return ctrl.Result{RequeueAfter: wait}, err
		}
	}
	boom := errors.New("boom")
	cases := map[string]struct {
		phases  []Phase[*run]
		ran     []string
		wait    time.Duration
		wantErr error
	}{
		"every phase runs, in order, and the soonest requeue wins": {
			phases: []Phase[*run]{phase("a", time.Hour, false, nil), phase("b", 0, false, nil), phase("c", time.Minute, false, nil)},
			ran:    []string{"a", "b", "c"}, wait: time.Minute,
		},
		"a phase that blocks the key is the last to run": {
			phases: []Phase[*run]{phase("a", 0, false, nil), phase("b", time.Minute, true, nil), phase("c", time.Second, false, nil)},
			ran:    []string{"a", "b"}, wait: time.Minute,
		},
		"an error ends the phases, with no requeue of its own": {
			phases: []Phase[*run]{phase("a", time.Second, false, nil), phase("b", time.Minute, false, boom), phase("c", 0, false, nil)},
			ran:    []string{"a", "b"}, wantErr: boom,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := &run{}
			res, err := Run(context.Background(), r, c.phases...)
			if !errors.Is(err, c.wantErr) || res.RequeueAfter != c.wait || len(r.ran) != len(c.ran) {
				t.Fatalf("Run ran %v, waits %v, err %v; want %v, %v, %v", r.ran, res.RequeueAfter, err, c.ran, c.wait, c.wantErr)
			}
			for i := range c.ran {
				if r.ran[i] != c.ran[i] {
					t.Fatalf("Run ran %v, want %v", r.ran, c.ran)
				}
			}
		})
	}
}

package keylifecycle

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Phase is one short step of a kind's converge (Cluster API's shape): it
// does one thing the plan asks for, or nothing.
type Phase[S any] func(context.Context, S) (ctrl.Result, error)

// Stopper is a scope on which a phase can end the reconcile early (Blocked).
type Stopper interface{ Stopped() bool }

// Run runs phases in order. It stops at the first error, or after a phase
// that blocked the key: the phases after it would write what the block
// forbids. The result is the soonest requeue any phase asked for.
func Run[S Stopper](ctx context.Context, s S, phases ...Phase[S]) (ctrl.Result, error) {
	var res ctrl.Result
	for _, phase := range phases {
		r, err := phase(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		res = soonest(res, r)
		if s.Stopped() {
			break
		}
	}
	return res, nil
}

// soonest is the result that requeues first (zero: none).
func soonest(a, b ctrl.Result) ctrl.Result {
	if a.RequeueAfter == 0 || (b.RequeueAfter > 0 && b.RequeueAfter < a.RequeueAfter) {
		return b
	}
	return a
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// reconcileResult is figure 3.
type reconcileResult struct {
	N        int
	Secrets  time.Duration // creating N plain Secrets: the API server's write floor
	Created  time.Duration // creating N APIKeys (the calls only)
	AllReady time.Duration // from the first create until all N are Ready
	Ready    int           // how many were Ready at the end
	Err      string        // set when not all became Ready in time
	// Requests are the operator's API requests by HTTP method while the
	// APIKeys were reconciled (watches excluded).
	Requests map[string]int
}

func (r *reconcileResult) ratio() float64 { return r.AllReady.Seconds() / r.Secrets.Seconds() }

func benchReconcile(ctx context.Context, cl *cluster, n int) (*reconcileResult, error) {
	progress("figure 3: %d APIKeys to Ready vs %d plain Secrets, %d concurrent writers", n, n, writers)
	res := &reconcileResult{N: n}
	const floorNS, keysNS = "bench-floor", "bench-reconcile"
	for _, ns := range []string{floorNS, keysNS} {
		if err := cl.namespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	value := []byte("kw_0123456789ab_0123456789abcdefghijklmnopqrstuvABCDEF") // a delivery Secret's size
	start := time.Now()
	if err := parallel(n, writers, func(i int) error {
		return cl.c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: floorNS, Name: fmt.Sprintf("plain-%04d", i)},
			Type:       corev1.SecretTypeOpaque, Data: map[string][]byte{"key": value},
		})
	}); err != nil {
		return nil, err
	}
	res.Secrets = time.Since(start)
	progress("  %d plain Secrets created in %s (%.0f/s)", n, res.Secrets.Round(time.Millisecond), float64(n)/res.Secrets.Seconds())
	pause()

	rw, err := cl.watchReady(ctx, keysNS, n)
	if err != nil {
		return nil, err
	}
	// Bounded: a run must end even if reconciling is far slower than its target.
	timeout := max(2*time.Minute, 40*res.Secrets)
	before := cl.requests.snapshot()
	start = time.Now()
	if err := cl.createAPIKeys(ctx, keysNS, "key", n); err != nil {
		return nil, err
	}
	res.Created = time.Since(start)
	progress("  %d APIKeys created in %s; waiting for Ready (at most %s)", n, res.Created.Round(time.Millisecond), timeout.Round(time.Second))
	tick := time.NewTicker(5 * time.Second)
	deadline := time.After(timeout)
	func() {
		defer tick.Stop()
		for {
			select {
			case <-rw.done:
				return
			case <-tick.C:
				progress("  … %d/%d Ready", rw.count(), n)
			case <-deadline:
				res.Err = fmt.Sprintf("only %d of %d Ready after %s", rw.count(), n, timeout.Round(time.Second))
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.AllReady = time.Since(start)
	res.Ready = rw.count()
	res.Requests = map[string]int{}
	for verb, n := range cl.requests.snapshot() {
		if d := n - before[verb]; d > 0 {
			res.Requests[verb] = d
		}
	}
	progress("  %d/%d APIKeys Ready in %s (%.0f/s); ratio to the Secret floor %.2f", res.Ready, n,
		res.AllReady.Round(time.Millisecond), float64(res.Ready)/res.AllReady.Seconds(), res.ratio())
	pause()
	return res, nil
}

// revocationResult is figure 4.
type revocationResult struct {
	Latencies []time.Duration // sorted; from the delete call to the first 401
	TimedOut  int
}

const revocationTimeout = 10 * time.Second

func benchRevocation(ctx context.Context, cl *cluster, n int) (*revocationResult, error) {
	progress("figure 4: revocation of %d APIKeys, polling /v1/authz every 2 ms", n)
	const ns = "bench-revoke"
	if err := cl.namespace(ctx, ns); err != nil {
		return nil, err
	}
	rw, err := cl.watchReady(ctx, ns, n)
	if err != nil {
		return nil, err
	}
	if err := cl.createAPIKeys(ctx, ns, "revoke", n); err != nil {
		return nil, err
	}
	if err := rw.wait(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	plain := make([]string, n)
	if err := parallel(n, writers, func(i int) error {
		sec := &corev1.Secret{}
		if err := cl.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("revoke-%04d-key", i)}, sec); err != nil {
			return err
		}
		plain[i] = string(sec.Data[kw.DeliveryDataKey])
		return nil
	}); err != nil {
		return nil, err
	}
	authz := func(key string) int {
		return cl.status(http.MethodGet, "/v1/authz", "", map[string]string{"Authorization": "Bearer " + key})
	}
	for i, k := range plain {
		if err := until(ctx, 10*time.Second, func() bool { return authz(k) == 200 }); err != nil {
			return nil, fmt.Errorf("key revoke-%04d never validated: %w", i, err)
		}
	}
	progress("  %d keys Ready and validating; revoking one at a time", n)
	res := &revocationResult{}
	for i, k := range plain {
		key := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("revoke-%04d", i)}}
		start := time.Now()
		if err := cl.c.Delete(ctx, key); err != nil {
			return nil, err
		}
		for {
			poll := time.Now()
			if authz(k) == http.StatusUnauthorized {
				res.Latencies = append(res.Latencies, time.Since(start))
				break
			}
			if time.Since(start) > revocationTimeout {
				res.Latencies = append(res.Latencies, time.Since(start))
				res.TimedOut++
				break
			}
			time.Sleep(2*time.Millisecond - time.Since(poll))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	slices.Sort(res.Latencies)
	progress("  revocation p50 %s p99 %s max %s", fmtDur(quantile(res.Latencies, 0.5)), fmtDur(quantile(res.Latencies, 0.99)),
		fmtDur(res.Latencies[len(res.Latencies)-1]))
	return res, nil
}

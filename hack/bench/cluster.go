package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

// writers is how many goroutines create objects concurrently, for the
// Secret floor and the APIKeys alike.
const writers = 16

// cluster is one envtest control plane with the whole operator (controllers
// and key server; no admission webhooks, as in the e2e suites) running in
// this process.
type cluster struct {
	cfg    *rest.Config
	c      client.WithWatch // the bench's own client: no client-side rate limit
	base   string           // the key server's URL
	stop   func()
	client *http.Client // for single requests (revocation polling, setup)
	// requests counts the operator's API requests (watches excluded).
	requests *requestCounter
}

type requestCounter struct {
	mu     sync.Mutex
	byVerb map[string]int
}

func (rc *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Query().Get("watch") != "true" {
			rc.mu.Lock()
			rc.byVerb[req.Method]++
			rc.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

// snapshot returns the counts so far.
func (rc *requestCounter) snapshot() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int, len(rc.byVerb))
	for k, v := range rc.byVerb {
		out[k] = v
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startCluster(ctx context.Context) (*cluster, error) {
	env, cfg, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	cl := &cluster{cfg: cfg, client: &http.Client{Timeout: 5 * time.Second}}
	ok := false
	defer func() {
		if !ok {
			_ = env.Stop()
		}
	}()
	// No client-side rate limit, as main.go runs (ctrl.GetConfig leaves it
	// to API Priority and Fairness) and for the floor: the API server's.
	benchCfg := rest.CopyConfig(cfg)
	benchCfg.QPS, benchCfg.Burst = -1, 0
	if cl.c, err = client.NewWithWatch(benchCfg, client.Options{Scheme: kube.Scheme()}); err != nil {
		return nil, err
	}
	if err := cl.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keyward-system"}}); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cl.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	opCfg := rest.CopyConfig(benchCfg)
	cl.requests = &requestCounter{byVerb: map[string]int{}}
	opCfg.Wrap(cl.requests.wrap)
	mgr, err := operator.NewManager(opCfg, operator.Options{
		EnableControllers: true, EnableKeyServer: true,
		KeyServerBindAddress: fmt.Sprintf("127.0.0.1:%d", port), OperatorNamespace: "keyward-system",
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		TokenIssuer: cl.base, MaxTokenLifetime: 24 * time.Hour, SigningKeyPeriod: 24 * time.Hour,
		ExpiringSoonWindow: time.Hour, MaxPairsPerSubject: 2,
		// Every request comes from 127.0.0.1, and every request here is
		// meant to succeed; the limit only matters for failures.
		FailureBurst: 1 << 20, FailureRefill: time.Millisecond,
		// The token benchmark measures signing with one pair, far above the
		// per-pair limit a cluster needs; the limit has its own tests.
		TokenBurst: 1 << 30, TokenRefill: time.Nanosecond,
		// Keys are measured, not policies: no KeyPolicy names 127.0.0.1.
		DefaultPolicy:                keypolicy.ModeAllowValidKey,
		SkipControllerNameValidation: true,
	})
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	cl.stop = func() {
		cancel()
		<-done
		_ = env.Stop()
	}
	if err := until(ctx, 60*time.Second, func() bool { return cl.status(http.MethodGet, "/readyz", "", nil) == 200 }); err != nil {
		cancel()
		<-done
		return nil, fmt.Errorf("the key server did not become ready: %w", err)
	}
	ok = true
	return cl, nil
}

// until polls cond every 20ms until it holds or d passes.
func until(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// status sends one request to the key server and returns its status code
// (-1 on a transport error).
func (cl *cluster) status(method, path, body string, hdr map[string]string) int {
	code, _ := cl.do(method, path, body, hdr)
	return code
}

func (cl *cluster) do(method, path, body string, hdr map[string]string) (int, []byte) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, cl.base+path, r)
	if err != nil {
		return -1, nil
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.client.Do(req)
	if err != nil {
		return -1, nil
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (cl *cluster) namespace(ctx context.Context, name string) error {
	return cl.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

// credentials are what the key server load tests present.
type credentials struct {
	apiKey   string
	ak, sk   string
	jwt      string
	basicHdr string
}

// httpCredentials declares one APIKey and one AccessKeyPair, waits for the
// key server to accept them, and exchanges the pair for a token.
func (cl *cluster) httpCredentials(ctx context.Context) (credentials, error) {
	var cr credentials
	const ns = "bench-http"
	if err := cl.namespace(ctx, ns); err != nil {
		return cr, err
	}
	key := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gateway-client"},
		Spec: kw.APIKeySpec{Groups: []string{"reporting"}, Scopes: []string{"invoices:read"}, SecretName: "gateway-client-key"}}
	pair := &kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"},
		Spec: kw.AccessKeyPairSpec{Groups: []string{"devs"}, Scopes: []string{"reports:read"}, SecretName: "deployer-keys"}}
	if err := cl.c.Create(ctx, key); err != nil {
		return cr, err
	}
	if err := cl.c.Create(ctx, pair); err != nil {
		return cr, err
	}
	data := func(name, field string) (string, error) {
		var out string
		err := until(ctx, 30*time.Second, func() bool {
			sec := &corev1.Secret{}
			if cl.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sec) != nil {
				return false
			}
			out = string(sec.Data[field])
			return out != ""
		})
		if err != nil {
			err = fmt.Errorf("secret %s/%s has no %s: %w", ns, name, field, err)
		}
		return out, err
	}
	var err error
	if cr.apiKey, err = data("gateway-client-key", kw.DeliveryDataKey); err != nil {
		return cr, err
	}
	if cr.ak, err = data("deployer-keys", kw.DeliveryDataAccessKeyID); err != nil {
		return cr, err
	}
	if cr.sk, err = data("deployer-keys", kw.DeliveryDataSecretKey); err != nil {
		return cr, err
	}
	req, _ := http.NewRequest(http.MethodPost, "/", nil)
	req.SetBasicAuth(cr.ak, cr.sk)
	cr.basicHdr = req.Header.Get("Authorization")
	if err := until(ctx, 30*time.Second, func() bool {
		return cl.status(http.MethodGet, "/v1/authz", "", map[string]string{"Authorization": "Bearer " + cr.apiKey}) == 200
	}); err != nil {
		return cr, fmt.Errorf("the API key never validated: %w", err)
	}
	if err := until(ctx, 30*time.Second, func() bool {
		code, body := cl.do(http.MethodPost, "/v1/tokens", "", map[string]string{"Authorization": cr.basicHdr})
		if code != 200 {
			return false
		}
		var tr struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(body, &tr) != nil {
			return false
		}
		cr.jwt = tr.Token
		return cr.jwt != ""
	}); err != nil {
		return cr, fmt.Errorf("no token for the access key pair: %w", err)
	}
	if code := cl.status(http.MethodGet, "/v1/authz", "", map[string]string{"Authorization": "Bearer " + cr.jwt}); code != 200 {
		return cr, fmt.Errorf("the issued token gave %d at /v1/authz", code)
	}
	return cr, nil
}

// createAPIKeys creates n APIKeys named <prefix>-NNNN in ns, each with
// spec.secretName, from `writers` goroutines.
func (cl *cluster) createAPIKeys(ctx context.Context, ns, prefix string, n int) error {
	return parallel(n, writers, func(i int) error {
		name := fmt.Sprintf("%s-%04d", prefix, i)
		return cl.c.Create(ctx, &kw.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: kw.APIKeySpec{Groups: []string{"reporting"}, Scopes: []string{"invoices:read"},
				Access: kw.AccessReadOnly, SecretName: name + "-key"},
		})
	})
}

// parallel runs f(0..n-1) on w goroutines and returns the first error.
func parallel(n, w int, f func(i int) error) error {
	idx := make(chan int)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range w {
		wg.Go(func() {
			for i := range idx {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return first
}

// readyWatcher counts the APIKeys of a namespace whose Ready condition is
// True, from a watch (a list-then-watch loop, so a closed watch loses
// nothing). Start it before creating the keys.
type readyWatcher struct {
	mu    sync.Mutex
	ready map[string]bool
	done  chan struct{}
	want  int
	err   error
}

func (cl *cluster) watchReady(ctx context.Context, ns string, want int) (*readyWatcher, error) {
	rw := &readyWatcher{ready: map[string]bool{}, done: make(chan struct{}), want: want}
	list := &kw.APIKeyList{}
	if err := cl.c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	rw.observeList(list)
	rv := list.ResourceVersion
	go func() {
		for {
			w, err := cl.c.Watch(ctx, &kw.APIKeyList{}, &client.ListOptions{Namespace: ns, Raw: &metav1.ListOptions{ResourceVersion: rv}})
			if err == nil {
				rv = rw.consume(w)
			}
			if rw.finished() || ctx.Err() != nil {
				return
			}
			// Closed or expired: catch up with a list and watch again.
			list := &kw.APIKeyList{}
			if err := cl.c.List(ctx, list, client.InNamespace(ns)); err == nil {
				rw.observeList(list)
				rv = list.ResourceVersion
			}
			if rw.finished() {
				return
			}
		}
	}()
	return rw, nil
}

func (rw *readyWatcher) observeList(list *kw.APIKeyList) {
	for i := range list.Items {
		rw.observe(&list.Items[i])
	}
}

func (rw *readyWatcher) observe(k *kw.APIKey) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if meta.IsStatusConditionTrue(k.Status.Conditions, kw.ConditionReady) {
		rw.ready[k.Name] = true
	} else {
		delete(rw.ready, k.Name)
	}
	if len(rw.ready) >= rw.want {
		select {
		case <-rw.done:
		default:
			close(rw.done)
		}
	}
}

func (rw *readyWatcher) finished() bool {
	select {
	case <-rw.done:
		return true
	default:
		return false
	}
}

// consume reads events until the watch closes or all are ready; it returns
// the last resourceVersion seen.
func (rw *readyWatcher) consume(w watch.Interface) string {
	defer w.Stop()
	rv := ""
	for {
		select {
		case <-rw.done:
			return rv
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv
			}
			k, isKey := ev.Object.(*kw.APIKey)
			if !isKey {
				return rv // an error event: re-list
			}
			rv = k.ResourceVersion
			if ev.Type == watch.Deleted {
				rw.mu.Lock()
				delete(rw.ready, k.Name)
				rw.mu.Unlock()
				continue
			}
			rw.observe(k)
		}
	}
}

func (rw *readyWatcher) count() int {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return len(rw.ready)
}

// wait blocks until all are Ready or d passes.
func (rw *readyWatcher) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-rw.done:
		return nil
	case <-t.C:
		return fmt.Errorf("only %d of %d APIKeys Ready after %s", rw.count(), rw.want, d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// objectShapes are one APIKey's objects as the API server serves them
// (JSON), for measuring what decoded copies cost in the informer caches.
type objectShapes struct {
	hashSecret, deliverySecret, apiKey []byte
}

func (cl *cluster) captureShapes(ctx context.Context) (*objectShapes, error) {
	const ns = "bench-shapes"
	if err := cl.namespace(ctx, ns); err != nil {
		return nil, err
	}
	rw, err := cl.watchReady(ctx, ns, 1)
	if err != nil {
		return nil, err
	}
	key := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-reporter"},
		Spec: kw.APIKeySpec{Groups: []string{"reporting"}, Scopes: []string{"invoices:read"},
			Access: kw.AccessReadOnly, SecretName: "billing-reporter-key",
			Rotation: &kw.RotationPolicy{Period: metav1.Duration{Duration: 720 * time.Hour}}}}
	if err := cl.c.Create(ctx, key); err != nil {
		return nil, err
	}
	if err := rw.wait(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cl.cfg)
	if err != nil {
		return nil, err
	}
	get := func(path string) ([]byte, error) { return cs.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx) }
	s := &objectShapes{}
	if s.hashSecret, err = get("/api/v1/namespaces/keyward-system/secrets/" + hashsecret.Name(hashsecret.KindAPIKey, ns, key.Name)); err != nil {
		return nil, err
	}
	if s.deliverySecret, err = get("/api/v1/namespaces/" + ns + "/secrets/" + key.Spec.SecretName); err != nil {
		return nil, err
	}
	if s.apiKey, err = get("/apis/keys.keyward.dev/v1alpha1/namespaces/" + ns + "/apikeys/" + key.Name); err != nil {
		return nil, err
	}
	return s, nil
}

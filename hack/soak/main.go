// Command soak rotates 10% of the keys every minute under steady validation
// load and counts false rejections: a key a client holds that the key server
// refuses while it is still inside its grace period. `make soak` runs it for
// 30 minutes against a local control plane; it is not part of `make test`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

func main() {
	duration := flag.Duration("duration", 30*time.Minute, "How long to soak.")
	keys := flag.Int("keys", 100, "How many APIKeys.")
	clients := flag.Int("clients", 8, "Concurrent validating clients.")
	flag.Parse()
	logf.SetLogger(logr.Discard()) // the count is the output
	if err := run(*duration, *keys, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, n, clients int) error {
	ctx := context.Background()
	env, cfg, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		return err
	}
	for _, ns := range []string{"soak", "keyward-system"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	_ = l.Close()
	mgr, err := operator.NewManager(cfg, operator.Options{
		EnableControllers: true, EnableKeyServer: true, KeyServerBindAddress: addr, OperatorNamespace: "keyward-system",
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", MaxPairsPerSubject: 2, SigningKeyPeriod: time.Hour,
		MaxTokenLifetime: time.Hour, FailureBurst: 1 << 30, FailureRefill: time.Millisecond,
		// Rotation is soaked, not policies: no KeyPolicy names the address.
		DefaultPolicy: keypolicy.ModeAllowValidKey,
	})
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = mgr.Start(mctx) }()

	// Grace of two rotation rounds: a client refreshing its key every 10 s
	// is never outside it.
	for i := range n {
		k := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "soak", Name: fmt.Sprintf("k%d", i)}, Spec: kw.APIKeySpec{
			SecretName: fmt.Sprintf("k%d", i),
			Rotation:   &kw.RotationPolicy{Period: metav1.Duration{Duration: 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: 2 * time.Minute}},
		}}
		if err := c.Create(ctx, k); err != nil {
			return err
		}
	}
	held := make([]atomic.Value, n) // the key each "client" holds
	refresh := func(i int) bool {
		sec := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "soak", Name: fmt.Sprintf("k%d", i)}, sec); err != nil {
			return false
		}
		if v := string(sec.Data[kw.DeliveryDataKey]); v != "" {
			held[i].Store(v)
			return true
		}
		return false
	}
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < n; {
		if refresh(i) {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("key %d was never delivered", i)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "soak: %d keys issued; validating with %d clients for %v\n", n, clients, duration)

	var checks, falseRejections atomic.Int64
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 5 * time.Second}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				i := rand.IntN(n)
				key, _ := held[i].Load().(string)
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/authz", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := hc.Do(req)
				if err != nil {
					continue
				}
				_ = resp.Body.Close()
				checks.Add(1)
				if resp.StatusCode != http.StatusOK {
					falseRejections.Add(1)
					fmt.Fprintf(os.Stderr, "soak: false rejection of k%d (%d)\n", i, resp.StatusCode)
				}
			}
		}()
	}
	// Clients pick up the delivered key every 10 s.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			for i := range n {
				refresh(i)
			}
			time.Sleep(10 * time.Second)
		}
	}()
	// Every minute, 10% of the keys rotate: half by the rotate annotation,
	// half by their holder through the key server (the client then holds
	// the key it was given).
	rotations, selfRotations, selfRefused := 0, 0, 0
	for round := 0; time.Now().Before(stop); round++ {
		for j, i := range rand.Perm(n)[:max(1, n/10)] {
			if j%2 == 1 {
				switch key, status := selfRotate(&http.Client{Timeout: 15 * time.Second}, addr, held[i].Load().(string)); status {
				case http.StatusOK:
					held[i].Store(key)
					selfRotations++
				default:
					// 409: the held key is no longer current (the client has
					// not picked up an annotation rotation yet).
					selfRefused++
					fmt.Fprintf(os.Stderr, "soak: self-rotation of k%d answered %d\n", i, status)
				}
				continue
			}
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"r%d"}}}`, kw.AnnotationRotate, round)
			if err := c.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "soak", Name: fmt.Sprintf("k%d", i)}},
				client.RawPatch(types.MergePatchType, []byte(patch))); err == nil {
				rotations++
			}
		}
		select {
		case <-time.After(time.Minute):
		case <-time.After(time.Until(stop)):
		}
	}
	wg.Wait()
	fmt.Printf("soak: %v, %d keys, %d rotations by annotation, %d self-rotations (%d refused), %d validations, %d false rejections inside grace windows\n",
		duration, n, rotations, selfRotations, selfRefused, checks.Load(), falseRejections.Load())
	if falseRejections.Load() > 0 {
		return fmt.Errorf("%d false rejections", falseRejections.Load())
	}
	return nil
}

// selfRotate calls POST /v1/keys/current/rotate with key; it returns the
// new key and the status.
func selfRotate(hc *http.Client, addr, key string) (string, int) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/keys/current/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Key string `json:"key"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out) != nil {
		return "", resp.StatusCode
	}
	return out.Key, http.StatusOK
}

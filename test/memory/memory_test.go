// Package memory shows that Keyward's memory is bounded by the keys it
// manages, not by the cluster: unrelated Secrets never enter its caches.
package memory

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

const (
	unrelated  = 5000
	secretSize = 100 << 10 // 500 MB of Secrets in all
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestCachesHoldNoUnrelatedSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 500 MB of Secrets")
	}
	logf.SetLogger(logr.Discard())
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "busy"}}
	opNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keyward-system"}}
	for _, n := range []*corev1.Namespace{ns, opNS} {
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}

	payload := []byte(strings.Repeat("x", secretSize))
	var wg sync.WaitGroup
	errs := make(chan error, unrelated)
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "busy", Name: fmt.Sprintf("unrelated-%d", i)},
					Data: map[string][]byte{"blob": payload}}
				if err := c.Create(ctx, s); err != nil {
					errs <- err
				}
			}
		}()
	}
	start := time.Now()
	for i := range unrelated {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("created %d unrelated Secrets of %d KiB in %v", unrelated, secretSize>>10, time.Since(start))
	// A few keys Keyward does manage.
	for i := range 20 {
		k := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "busy", Name: fmt.Sprintf("key-%d", i)},
			Spec: kw.APIKeySpec{SecretName: fmt.Sprintf("key-%d", i)}}
		if err := c.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
	}

	before := heapInUse()
	mgr, err := operator.NewManager(cfg, operator.Options{
		EnableControllers: true, EnableKeyServer: true, KeyServerBindAddress: "127.0.0.1:0",
		OperatorNamespace: "keyward-system", MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		MaxPairsPerSubject: 2, SigningKeyPeriod: time.Hour, MaxTokenLifetime: time.Hour,
		SkipControllerNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// Every key issued: the caches are synced and working.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list := &kw.APIKeyList{}
		if err := c.List(ctx, list, client.InNamespace("busy")); err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, k := range list.Items {
			if k.Status.KeyID != "" {
				ready++
			}
		}
		if ready == len(list.Items) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d keys issued", ready, len(list.Items))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The controllers cache Secrets of the operator namespace only (the
	// delivery Secrets in "busy" are read live), so all they hold of
	// "busy" is its 20 hash Secrets.
	cached := &corev1.SecretList{}
	if err := mgr.GetCache().List(ctx, cached); err != nil {
		t.Fatal(err)
	}
	hashes := 0
	for _, s := range cached.Items {
		if s.Namespace != "keyward-system" {
			t.Errorf("the controllers' cache holds Secret %s/%s, outside the operator namespace", s.Namespace, s.Name)
		}
		if s.Labels[hashsecret.LabelOwnerNamespace] == "busy" {
			hashes++
		}
	}
	if hashes != 20 {
		t.Errorf("the controllers' cache holds %d hash Secrets of the namespace's keys, want 20", hashes)
	}
	after := heapInUse()
	grew := int64(after) - int64(before)
	t.Logf("heap in use: %d MiB before the manager, %d MiB with it running (%+d MiB); the unrelated Secrets total %d MiB",
		before>>20, after>>20, grew>>20, unrelated*secretSize>>20)
	// Caching them would cost at least their size (500 MiB); a tenth of
	// that is far above what a manager with 20 keys needs.
	if limit := int64(unrelated * secretSize / 10); grew > limit {
		t.Fatalf("the heap grew by %d MiB: unrelated Secrets are being cached", grew>>20)
	}
}

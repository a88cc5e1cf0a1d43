package operator_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/internal/tracing"
	"github.com/keyward/keyward/operator"
)

// TestTheManagerExportsSpansByOTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set,
// a running manager sends a collector the spans of its reconciles and of
// the key server's decisions, the latter in the trace of the gateway's
// traceparent. Spans travel as OTLP protobuf, whose strings and ids are
// raw bytes in the body.
func TestTheManagerExportsSpansByOTLP(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	var (
		mu     sync.Mutex
		bodies bytes.Buffer
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies.Write(b)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	received := func(what []byte) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return bytes.Contains(bodies.Bytes(), what)
		}
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Cleanup(func() { tracing.SetProvider(nil) })

	env, cfg, err := testenv.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	k8s, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "keyward-system-"}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())

	ksPort := freePort(g)
	mgr, err := operator.NewManager(cfg, operator.Options{
		EnableControllers: true, EnableKeyServer: true, OperatorNamespace: ns.Name,
		KeyServerBindAddress: fmt.Sprintf("127.0.0.1:%d", ksPort),
		MetricsBindAddress:   "0", HealthProbeBindAddress: "0", MaxPairsPerSubject: 2,
		SigningKeyPeriod: time.Hour, MaxTokenLifetime: time.Hour, SkipControllerNameValidation: true,
	})
	g.Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The signing-key controller reconciles once at start.
	g.Eventually(received([]byte("reconcile signingkey"))).Should(BeTrue())

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	g.Eventually(func(g Gomega) {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v1/authz", ksPort), nil)
		req.Header.Set("Authorization", "Bearer kw_notakey")
		req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
	}).Should(Succeed())
	id, _ := hex.DecodeString(traceID)
	g.Eventually(received([]byte("keyward authz"))).Should(BeTrue())
	g.Eventually(received(id)).Should(BeTrue())
}

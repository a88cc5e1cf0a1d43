package apikey

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/kube"
)

var _ = Describe("leader failover in the middle of a burst of rotations", func() {
	It("loses no key, never shows two current versions, and converges under the new leader", func() {
		h := newHarness()
		const n = 12
		var keys []*kw.APIKey
		for i := range n {
			k := newKey(h.ns, fmt.Sprintf("failover-%d", i), withRotation(time.Hour, 10*time.Minute))
			Expect(k8s.Create(ctx, k)).To(Succeed())
			keys = append(keys, k)
		}
		for _, k := range keys {
			waitReady(k)
		}
		h.stop() // from here on, two leader-elected replicas
		h.stop = func() {}

		type replica struct {
			elected <-chan struct{}
			cancel  context.CancelFunc
			done    chan struct{}
		}
		start := func() replica {
			cacheOpts := kube.CacheOptions(h.opNS)
			cacheOpts.DefaultNamespaces = map[string]cache.Config{h.ns: {}}
			mgr, err := ctrl.NewManager(cfg, ctrl.Options{
				Scheme: kube.Scheme(), Cache: cacheOpts,
				Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
				Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
				LeaderElection:          true,
				LeaderElectionID:        "failover-test",
				LeaderElectionNamespace: h.ns,
				LeaseDuration:           ptr.To(2 * time.Second),
				RenewDeadline:           ptr.To(time.Second),
				RetryPeriod:             ptr.To(200 * time.Millisecond),
			})
			Expect(err).NotTo(HaveOccurred())
			Expect((&Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: h.clock,
				HashNamespace: h.opNS, Resync: specResync,
				Recorder: mgr.GetEventRecorder("keyward-apikey"), ExpiringSoonWindow: time.Minute}).SetupWithManager(mgr)).To(Succeed())
			mctx, cancel := context.WithCancel(ctx)
			r := replica{elected: mgr.Elected(), cancel: cancel, done: make(chan struct{})}
			go func() { defer close(r.done); _ = mgr.Start(mctx) }()
			return r
		}
		a, b := start(), start()
		DeferCleanup(func() { a.cancel(); b.cancel(); <-a.done; <-b.done })
		var leader, standby replica
		select {
		case <-a.elected:
			leader, standby = a, b
		case <-b.elected:
			leader, standby = b, a
		case <-time.After(20 * time.Second):
			Fail("no replica was elected")
		}

		// A burst: every key asked to rotate at once.
		for _, k := range keys {
			patch := []byte(`{"metadata":{"annotations":{"` + kw.AnnotationRotate + `":"burst"}}}`)
			Expect(k8s.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: k.Name}},
				client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		}
		// The leader dies mid-burst (no lease release: a crash).
		Eventually(func() bool {
			for _, k := range keys {
				if getKey(k).Status.RotateRequest == "burst" {
					return true
				}
			}
			return false
		}).Should(BeTrue())
		leader.cancel()
		<-leader.done
		Eventually(standby.elected, 20*time.Second).Should(BeClosed())

		for _, k := range keys {
			Eventually(func(g Gomega) {
				cur := getKey(k)
				rec := record(g, k)
				key := delivered(g, k)
				g.Expect(rec.RotateRequest).To(Equal("burst"))
				g.Expect(cur.Status.RotateRequest).To(Equal("burst"))
				g.Expect(cur.Status.KeyID).To(Equal(rec.Current.ID))
				g.Expect(key.ID).To(Equal(rec.Current.ID), "the delivered key is not the current version")
				g.Expect(key.Verify(rec.Current.Hash)).To(BeTrue())
				for _, v := range rec.Previous {
					g.Expect(v.NotAfter).NotTo(BeNil(), "a second current version")
				}
			}, 30*time.Second).Should(Succeed())
			Expect(managedSecrets(k)).To(HaveLen(2))
		}
	})
})

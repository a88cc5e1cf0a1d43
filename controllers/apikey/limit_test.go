package apikey

import (
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/testenv"
)

var _ = Describe("the cap on APIKeys per namespace", func() {
	It("marks a key past the cap LimitExceeded, issues nothing for it, and issues it once a place frees up", func() {
		ns, opNS := newNamespace(), newNamespace()
		operatorNamespaceOf.Store(ns, opNS)
		clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
		stop, err := testenv.StartManager(cfg, ns, opNS, func(mgr ctrl.Manager) error {
			return (&Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clk,
				Recorder: mgr.GetEventRecorder("keyward-apikey"), HashNamespace: opNS, Resync: specResync,
				MaxPerNamespace: 2}).SetupWithManager(mgr)
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(stop()).To(Succeed()) })

		// Created at once with no webhook in front: the controller is the
		// second line of defence.
		keys := []*kw.APIKey{newKey(ns, "k1"), newKey(ns, "k2"), newKey(ns, "k3")}
		var wg sync.WaitGroup
		for _, k := range keys {
			wg.Add(1)
			go func() { defer GinkgoRecover(); defer wg.Done(); Expect(k8s.Create(ctx, k)).To(Succeed()) }()
		}
		wg.Wait()
		// The two oldest (ties broken by name) hold the places.
		var over *kw.APIKey
		Eventually(func(g Gomega) {
			var ready, capped []*kw.APIKey
			for _, k := range keys {
				switch readyReason(g, k) {
				case kw.ReasonIssued:
					ready = append(ready, k)
				case kw.ReasonLimitExceeded:
					capped = append(capped, k)
				}
			}
			g.Expect(ready).To(HaveLen(2))
			g.Expect(capped).To(HaveLen(1))
			over = capped[0]
		}).Should(Succeed())

		cur := &kw.APIKey{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(over), cur)).To(Succeed())
		c := meta.FindStatusCondition(cur.Status.Conditions, kw.ConditionReady)
		Expect(c.Message).To(ContainSubstring("this namespace already holds 2 API keys, the most allowed (--max-apikeys-per-namespace)"))
		Expect(cur.Status.KeyID).To(BeEmpty())
		Eventually(func() []string { return eventReasons(over) }).Should(ContainElement(kw.ReasonLimitExceeded))
		Consistently(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, hashSecretKey(over), &corev1.Secret{}))
		}, 2*time.Second).Should(BeTrue(), "no hash Secret for a key past the cap")
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: over.Spec.SecretName}, &corev1.Secret{}))).
			To(BeTrue(), "no delivery Secret either")

		// A sibling leaving frees its place.
		for _, k := range keys {
			if k.Name != over.Name {
				Expect(k8s.Delete(ctx, k)).To(Succeed())
				break
			}
		}
		waitReady(over)
	})
})

var _ = Describe("withinCap", func() {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	key := func(name string) kw.APIKey {
		return kw.APIKey{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: t0}}
	}
	siblings := []kw.APIKey{key("a"), key("b"), key("c")}
	DescribeTable("decides",
		func(k kw.APIKey, sibs []kw.APIKey, max int, want bool) {
			Expect(withinCap(&k, sibs, max)).To(Equal(want))
		},
		Entry("no cap: always within", key("c"), siblings, 0, true),
		Entry("among the first max", key("b"), siblings, 2, true),
		Entry("past the cap", key("c"), siblings, 2, false),
		Entry("not listed yet (cache lag): the webhook checked it", key("d"), siblings, 2, true),
	)
})

package signingkey

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward/keyward/internal/signingkeys"
	"github.com/keyward/keyward/internal/testenv"
)

func TestSigningKeyController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "signing key controller suite (envtest)")
}

var (
	cfg *rest.Config
	k8s client.Client
	ctx = context.Background()
)

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	s := testenv.StartSuite(GinkgoT(), testenv.Start)
	cfg, k8s = s.Config, s.Client
})

const period, maxTok = 24 * time.Hour, 2 * time.Hour

func start(ns string, clk *clocktesting.FakeClock) func() {
	stop, err := testenv.StartManager(cfg, ns, ns, func(mgr ctrl.Manager) error {
		return (&Reconciler{Client: mgr.GetClient(), Clock: clk, Namespace: ns, Period: period, MaxTokenLifetime: maxTok}).SetupWithManager(mgr)
	})
	Expect(err).NotTo(HaveOccurred())
	return func() { Expect(stop()).To(Succeed()) }
}

func keySet(g Gomega, ns string) *signingkeys.KeySet {
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: signingkeys.SecretName}, sec)).To(Succeed())
	ks, err := signingkeys.Decode(sec)
	g.Expect(err).NotTo(HaveOccurred())
	return ks
}

func namespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "signing-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// touch makes the controller look again after the fake clock moved.
func touch(ns string) {
	patch := []byte(`{"metadata":{"annotations":{"test.keyward.dev/poke":"` + time.Now().Format(time.RFC3339Nano) + `"}}}`)
	Expect(k8s.Patch(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: signingkeys.SecretName}},
		client.RawPatch(types.MergePatchType, patch))).To(Succeed())
}

var _ = Describe("signing keys", func() {
	It("are created on first start, and two replicas starting at once end with one key set", func() {
		ns := namespace()
		clk := clocktesting.NewFakeClock(time.Now())
		stopA, stopB := start(ns, clk), start(ns, clk)
		DeferCleanup(func() { stopA(); stopB() })
		var id string
		Eventually(func(g Gomega) {
			ks := keySet(g, ns)
			g.Expect(ks.Keys).To(HaveLen(1))
			id = ks.Keys[0].ID
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			ks := keySet(g, ns)
			g.Expect(ks.Keys).To(HaveLen(1))
			g.Expect(ks.Keys[0].ID).To(Equal(id))
		}, "2s").Should(Succeed())
	})

	It("survive a restart unchanged, rotate every period, and publish a retired key until its tokens expired", func() {
		ns := namespace()
		clk := clocktesting.NewFakeClock(time.Now())
		stop := start(ns, clk)
		var first string
		Eventually(func(g Gomega) { first = keySet(g, ns).Keys[0].ID }).Should(Succeed())

		stop()
		stop = start(ns, clk)
		DeferCleanup(func() { stop() })
		Consistently(func(g Gomega) { g.Expect(keySet(g, ns).Keys[0].ID).To(Equal(first)) }, "1s").Should(Succeed())

		clk.Step(period)
		touch(ns)
		Eventually(func(g Gomega) {
			ks := keySet(g, ns)
			g.Expect(ks.Keys).To(HaveLen(2))
			g.Expect(ks.Keys[0].ID).NotTo(Equal(first))
			g.Expect(ks.Keys[1].ID).To(Equal(first))
			g.Expect(*ks.Keys[1].PublishUntil).To(BeTemporally(">", clk.Now().Add(maxTok)))
		}).Should(Succeed())

		clk.Step(maxTok + time.Minute)
		touch(ns)
		Eventually(func(g Gomega) {
			ks := keySet(g, ns)
			g.Expect(ks.Keys).To(HaveLen(1))
			g.Expect(ks.Keys[0].ID).NotTo(Equal(first))
		}).Should(Succeed())
	})
})

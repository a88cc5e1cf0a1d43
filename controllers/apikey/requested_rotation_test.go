package apikey

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keylimit"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/testenv"
)

// Attack 10 of issue 12, by annotation: whoever may edit an APIKey can
// change its rotate annotation in a loop, each change a reconcile and
// several writes. The controller acts on two at once, then one a minute
// per key; the rest wait, and the latest value is acted on then.
var _ = Describe("rotations requested with the annotation", func() {
	It("attack 10: are limited per key, deferred and never dropped", func() {
		ns, clk := startRotationLimited()

		churned, other := newKey(ns, "churned"), newKey(ns, "other")
		for _, k := range []*kw.APIKey{churned, other} {
			Expect(k8s.Create(ctx, k)).To(Succeed())
			waitReady(k)
		}
		ask := func(k *kw.APIKey, value string) {
			GinkgoHelper()
			patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, kw.AnnotationRotate, value)
			Expect(k8s.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}},
				client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		}
		actedOn := func(k *kw.APIKey, value string) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				g.Expect(getKey(k).Status.RotateRequest).To(Equal(value))
				g.Expect(delivered(g, k).ID).To(Equal(getKey(k).Status.KeyID))
			}).Should(Succeed())
		}

		ask(churned, "r1")
		actedOn(churned, "r1")
		ask(churned, "r2")
		actedOn(churned, "r2")
		before := getKey(churned).Status.KeyID

		ask(churned, "r3")
		var ready *metav1.Condition
		Eventually(func(g Gomega) {
			ready = meta.FindStatusCondition(getKey(churned).Status.Conditions, kw.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Message).To(ContainSubstring("deferred until"))
		}).Should(Succeed())
		Expect(ready.Status).To(Equal(metav1.ConditionTrue), "a deferred rotation leaves the key valid")
		Expect(ready.Message).To(ContainSubstring(kw.AnnotationRotate))
		cur := getKey(churned)
		Expect(cur.Status.RotateRequest).To(Equal("r2"), "the third request within a minute was acted on")
		Expect(cur.Status.KeyID).To(Equal(before))
		var key keymaterial.Key
		Eventually(func(g Gomega) { key = delivered(g, churned) }).Should(Succeed())
		Expect(key.ID).To(Equal(before), "the delivered key changed while the rotation waited")

		ask(other, "o1")
		actedOn(other, "o1") // another key is not limited

		clk.Step(DefaultRequestedRotationRefill)
		ask(churned, "r4") // the latest value, once the budget refilled
		actedOn(churned, "r4")
		Expect(getKey(churned).Status.KeyID).NotTo(Equal(before))
		Expect(meta.FindStatusCondition(getKey(churned).Status.Conditions, kw.ConditionReady).Message).NotTo(ContainSubstring("deferred"))
	})
})

// startRotationLimited starts a manager for the spec in a fresh namespace
// (and operator namespace) whose requested rotations are limited as the
// operator's are, on a fake clock the spec moves to refill the limit.
func startRotationLimited() (ns string, clk *clocktesting.FakeClock) {
	GinkgoHelper()
	ns, opNS := newNamespace(), newNamespace()
	operatorNamespaceOf.Store(ns, opNS)
	clk = clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	stop, err := testenv.StartManager(cfg, ns, opNS, func(mgr ctrl.Manager) error {
		return (&Reconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clk,
			Recorder: mgr.GetEventRecorder("keyward-apikey"), HashNamespace: opNS, Resync: specResync,
			RequestedRotations: keylimit.New(0, 0, DefaultRequestedRotationBurst, DefaultRequestedRotationRefill, clk),
		}).SetupWithManager(mgr)
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	return ns, clk
}

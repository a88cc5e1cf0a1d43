package accesskeypair

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
)

// The lifecycle both kinds share (issue 13) ended two drifts from APIKeys.
var _ = Describe("the lifecycle shared with APIKeys", func() {
	var h *harness
	BeforeEach(func() { h = newHarness() })

	It("drift 1: emits ExpiringSoon and Expired with the action Expire, as APIKeys do", func() {
		p := newPair(h.ns, "hank-1", "hank")
		end := metav1.NewTime(h.clock.Now().Add(time.Hour))
		p.Spec.ExpiresAt = &end
		Expect(k8s.Create(ctx, p)).To(Succeed())
		issued(p)
		for _, step := range []struct {
			at     time.Time
			reason string
		}{{end.Add(-10 * time.Minute), kw.ReasonExpiringSoon}, {end.Time, kw.ReasonExpired}} {
			h.clock.SetTime(step.at)
			touch(p) // RequeueAfter runs on the real clock: make the controller look now
			Eventually(func(g Gomega) {
				g.Expect(eventActions(g, p)).To(HaveKeyWithValue(step.reason, keylifecycle.ActionExpire))
			}).Should(Succeed())
		}
	})

	It("drift 2: a blocked pair is looked at again at its expiry, not a flat minute later", func() {
		p := newPair(h.ns, "iris-1", "iris")
		end := metav1.NewTime(h.clock.Now().Add(3 * time.Second))
		p.Spec.ExpiresAt = &end
		theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: p.Spec.SecretName}}
		Expect(k8s.Create(ctx, theirs)).To(Succeed())
		Expect(k8s.Create(ctx, p)).To(Succeed())
		Eventually(func(g Gomega) string { return readyReason(g, p) }).Should(Equal(kw.ReasonDeliveryConflict))
		Expect(meta.IsStatusConditionFalse(get(p).Status.Conditions, kw.ConditionExpired)).To(BeTrue())
		// Nothing touches the pair: only the blocked requeue brings the
		// controller back, within the 20 s Eventually waits.
		h.clock.SetTime(end.Time)
		Eventually(func(g Gomega) {
			g.Expect(meta.IsStatusConditionTrue(get(p).Status.Conditions, kw.ConditionExpired)).To(BeTrue())
		}).Should(Succeed())
	})
})

// touch changes p's spec, so the controller reconciles it at once.
func touch(p *kw.AccessKeyPair) {
	GinkgoHelper()
	cur := get(p)
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Groups = append(cur.Spec.Groups, fmt.Sprintf("touched-%d", len(cur.Spec.Groups)))
	Expect(k8s.Patch(ctx, cur, patch)).To(Succeed())
}

// eventActions maps the reasons of the events about p to their actions.
func eventActions(g Gomega, p *kw.AccessKeyPair) map[string]string {
	uid := get(p).UID
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx, list, client.InNamespace(p.Namespace))).To(Succeed())
	actions := map[string]string{}
	for _, e := range list.Items {
		if e.Regarding.UID == uid {
			actions[e.Reason] = e.Action
		}
	}
	return actions
}

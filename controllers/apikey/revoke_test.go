package apikey

import (
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
)

// revocationTarget is the revocation target of docs/benchmarks.md: a key
// that must stop validating does so within a second.
const revocationTarget = time.Second

// revokeIDs sets spec.revokedKeyIDs, as `kubectl keyward revoke --key-id`
// or a GitOps sync would, through c.
func revokeIDs(c client.Client, k *kw.APIKey, ids ...string) {
	GinkgoHelper()
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"revokedKeyIDs": ids}})
	Expect(err).NotTo(HaveOccurred())
	Expect(c.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}},
		client.RawPatch(types.MergePatchType, patch))).To(Succeed())
}

// requestRotation sets the rotate annotation to value.
func requestRotation(k *kw.APIKey, value string) {
	GinkgoHelper()
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, kw.AnnotationRotate, value)
	Expect(k8s.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}},
		client.RawPatch(types.MergePatchType, patch))).To(Succeed())
}

// rotated rotates k and returns the version it replaced, now in its grace
// period, and the new current one.
func rotated(h *harness, k *kw.APIKey) (old, cur keymaterial.Key) {
	GinkgoHelper()
	Eventually(func(g Gomega) { old = delivered(g, k) }).Should(Succeed())
	requestRotation(k, "r1")
	Eventually(func(g Gomega) {
		got := getKey(k)
		g.Expect(got.Status.RotateRequest).To(Equal("r1"))
		g.Expect(got.Status.PreviousKeys).To(ContainElement(HaveField("KeyID", old.ID)))
		cur = delivered(g, k)
		g.Expect(cur.ID).To(Equal(got.Status.KeyID))
		x := indexOf(g, h.opNS)
		g.Expect(x.ValidateAPIKey(old.String(), h.clock.Now()).Code).To(Equal(keyindex.Valid), "the old version, in its grace")
		g.Expect(x.ValidateAPIKey(cur.String(), h.clock.Now()).Code).To(Equal(keyindex.Valid))
	}).Should(Succeed())
	return old, cur
}

// codes are the index's answers for keys, at the harness's clock.
func codes(g Gomega, h *harness, keys ...keymaterial.Key) []keyindex.Code {
	x := indexOf(g, h.opNS)
	var out []keyindex.Code
	for _, k := range keys {
		out = append(out, x.ValidateAPIKey(k.String(), h.clock.Now()).Code)
	}
	return out
}

func revokedCondition(g Gomega, k *kw.APIKey) *metav1.Condition {
	cur := getKey(k)
	c := meta.FindStatusCondition(cur.Status.Conditions, kw.ConditionKeyIDsRevoked)
	g.Expect(c).NotTo(BeNil())
	g.Expect(c.ObservedGeneration).To(Equal(cur.Generation))
	return c
}

func countOf(reasons []string, reason string) int {
	n := 0
	for _, r := range reasons {
		if r == reason {
			n++
		}
	}
	return n
}

var _ = Describe("revoking one version by its key id", func() {
	It("refuses a previous version within the revocation target, keeps the current one valid, and never brings it back", func() {
		h := newHarness()
		k := newKey(h.ns, "rotating", withRotation(720*time.Hour, 24*time.Hour))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		old, cur := rotated(h, k)

		start := time.Now()
		revokeIDs(k8s, k, old.ID)
		Eventually(func(g Gomega) []keyindex.Code { return codes(g, h, old, cur) }, revocationTarget, 10*time.Millisecond).
			Should(Equal([]keyindex.Code{keyindex.NotFound, keyindex.Valid}), "the old version refused, the current one valid")
		GinkgoWriter.Printf("revoked version refused by the index %v after the edit\n", time.Since(start))

		Eventually(func(g Gomega) {
			c := revokedCondition(g, k)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(kw.ReasonRevoked))
			st := getKey(k).Status
			g.Expect(st.PreviousKeys).To(BeEmpty())
			g.Expect(st.KeyID).To(Equal(cur.ID))
			g.Expect(meta.IsStatusConditionTrue(st.Conditions, kw.ConditionReady)).To(BeTrue())
		}).Should(Succeed())
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.EventVersionRevoked))
		rec := func(g Gomega) []string { return record(g, k).Retired }
		Eventually(rec).Should(ContainElement(old.ID), "a revoked id stays known as old")

		// A crash and a lost hash Secret: the record is rebuilt from the
		// delivered (current) version, and the revoked one stays refused.
		h.restart(nil)
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hashSecretKey(k).Namespace, Name: hashSecretKey(k).Name}}
		Expect(k8s.Delete(ctx, sec)).To(Succeed())
		Eventually(func(g Gomega) []keyindex.Code { return codes(g, h, old, cur) }).
			Should(Equal([]keyindex.Code{keyindex.NotFound, keyindex.Valid}))
		Expect(getKey(k).Status.KeyID).To(Equal(cur.ID))
		Expect(countOf(eventReasons(k), kw.EventVersionRevoked)).To(Equal(1), "one revocation, one event")
	})

	It("attack R2: the current version listed is refused openly, once, and is revoked when a rotation replaces it", func() {
		h := newHarness()
		k := newKey(h.ns, "listed", withRotation(720*time.Hour, 24*time.Hour))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var cur keymaterial.Key
		Eventually(func(g Gomega) { cur = delivered(g, k) }).Should(Succeed())

		revokeIDs(tenant(h.ns, "mallory"), k, cur.ID)
		var refused *metav1.Condition
		Eventually(func(g Gomega) {
			refused = revokedCondition(g, k)
			g.Expect(refused.Status).To(Equal(metav1.ConditionFalse))
		}).Should(Succeed())
		Expect(refused.Reason).To(Equal(kw.ReasonRevokeRefused))
		Expect(refused.Message).To(ContainSubstring(cur.ID + " is the current version and still validates"))
		Expect(refused.Message).To(ContainSubstring("rotate first"))
		Expect(meta.IsStatusConditionTrue(getKey(k).Status.Conditions, kw.ConditionReady)).To(BeTrue())
		Eventually(func(g Gomega) []keyindex.Code { return codes(g, h, cur) }).Should(Equal([]keyindex.Code{keyindex.Valid}))

		// No loop: further reconciles write nothing and warn no more.
		var before corev1.Secret
		Expect(k8s.Get(ctx, hashSecretKey(k), &before)).To(Succeed())
		Eventually(func() int { return countOf(eventReasons(k), kw.ReasonRevokeRefused) }).Should(Equal(1))
		poke(k)
		poke(k)
		Consistently(func(g Gomega) {
			var now corev1.Secret
			g.Expect(k8s.Get(ctx, hashSecretKey(k), &now)).To(Succeed())
			g.Expect(now.ResourceVersion).To(Equal(before.ResourceVersion), "the hash Secret was written again")
			g.Expect(countOf(eventReasons(k), kw.ReasonRevokeRefused)).To(Equal(1))
		}, 2*time.Second, 100*time.Millisecond).Should(Succeed())

		// Rotate first: the listed version is revoked as soon as it is a
		// previous one, with no grace.
		requestRotation(k, "r1")
		Eventually(func(g Gomega) {
			next := delivered(g, k)
			g.Expect(next.ID).NotTo(Equal(cur.ID))
			g.Expect(codes(g, h, cur, next)).To(Equal([]keyindex.Code{keyindex.NotFound, keyindex.Valid}))
			g.Expect(revokedCondition(g, k).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(getKey(k).Status.PreviousKeys).To(BeEmpty())
		}).Should(Succeed())
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.EventVersionRevoked))
	})

	It("attack R1: a tenant listing another namespace's key id revokes nothing there", func() {
		victim, attacker := newHarness(), newHarness()
		k := newKey(victim.ns, "billing", withRotation(720*time.Hour, 24*time.Hour))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		old, cur := rotated(victim, k)

		mallory := tenant(attacker.ns, "mallory")
		own := newKey(attacker.ns, "own")
		Expect(mallory.Create(ctx, own)).To(Succeed())
		waitReady(own)
		revokeIDs(mallory, own, old.ID, cur.ID)
		Eventually(func(g Gomega) {
			c := revokedCondition(g, own)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Message).To(ContainSubstring(old.ID + ", " + cur.ID + ": no version of this key has that id, nothing was revoked under it"))
		}).Should(Succeed())
		Expect(codes(Default, victim, old, cur)).To(Equal([]keyindex.Code{keyindex.Valid, keyindex.Valid}))
		Expect(getKey(k).Status.PreviousKeys).To(ContainElement(HaveField("KeyID", old.ID)))

		err := mallory.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: victim.ns, Name: k.Name}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"revokedKeyIDs":["`+old.ID+`"]}}`)))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the tenant edited another namespace's key: %v", err)
	})

	It("attack R4: a revoked version put back in the delivery Secret is never adopted, even with the hash Secret lost", func() {
		h := newHarness()
		k := newKey(h.ns, "planted", withRotation(720*time.Hour, 24*time.Hour))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		old, cur := rotated(h, k)
		revokeIDs(k8s, k, old.ID)
		Eventually(func(g Gomega) []keyindex.Code { return codes(g, h, old, cur) }).
			Should(Equal([]keyindex.Code{keyindex.NotFound, keyindex.Valid}))

		// With the controller down, the revoked key goes back into the
		// delivery Secret (a stale copy restored, or planted by whoever
		// holds it and may write the Secret), and the record is lost.
		h.stop()
		ds := &corev1.Secret{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: k.Spec.SecretName}, ds)).To(Succeed())
		ds.Data[kw.DeliveryDataKey] = []byte(old.String())
		ds.Annotations[kw.AnnotationDeliveredKeyID] = old.ID
		Expect(k8s.Update(ctx, ds)).To(Succeed())
		Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hashSecretKey(k).Namespace, Name: hashSecretKey(k).Name}})).To(Succeed())
		h.stop = startManager(h.ns, h.opNS, h.clock, nil)

		Eventually(func(g Gomega) {
			g.Expect(record(g, k).Current).NotTo(BeNil())
			g.Expect(getKey(k).Status.KeyID).NotTo(BeEmpty())
			g.Expect(delivered(g, k).ID).NotTo(Equal(old.ID), "the revoked key is still what the Secret delivers")
		}).Should(Succeed())
		Expect(getKey(k).Status.KeyID).NotTo(Equal(old.ID), "the revoked version was adopted as current")
		Expect(codes(Default, h, old)).To(Equal([]keyindex.Code{keyindex.NotFound}))
	})

	It("does not wait for a problem that blocks the key", func() {
		h := newHarness()
		k := newKey(h.ns, "blocked", withRotation(720*time.Hour, 24*time.Hour))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		old, cur := rotated(h, k)

		// Someone else's Secret takes the delivery Secret's name.
		h.stop()
		Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Spec.SecretName}})).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Spec.SecretName}})).To(Succeed())
		h.stop = startManager(h.ns, h.opNS, h.clock, nil)
		Eventually(func(g Gomega) string { return readyReason(g, k) }).Should(Equal(kw.ReasonDeliveryConflict))

		revokeIDs(k8s, k, old.ID)
		Eventually(func(g Gomega) {
			g.Expect(codes(g, h, old, cur)).To(Equal([]keyindex.Code{keyindex.NotFound, keyindex.Valid}))
			g.Expect(revokedCondition(g, k).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(readyReason(g, k)).To(Equal(kw.ReasonDeliveryConflict))
			g.Expect(getKey(k).Status.PreviousKeys).To(BeEmpty())
		}).Should(Succeed())
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.EventVersionRevoked))
	})
})

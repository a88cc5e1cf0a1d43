package apikey

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"filippo.io/age"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/selfrotation"
)

// The controller's half of self-rotation: the key server writes a request
// into status and waits for the answer (internal/selfrotation).
var _ = Describe("self-rotation requests", func() {
	var h *harness
	BeforeEach(func() { h = newHarness() })

	// ask writes a request as the key server would, proving possession
	// with the stored hash of presented.
	ask := func(k *kw.APIKey, presented keymaterial.Key, proofHash string) (string, *age.X25519Identity) {
		GinkgoHelper()
		id := newIdentity()
		raw := make([]byte, 8)
		_, _ = rand.Read(raw)
		reqID := hex.EncodeToString(raw)
		cur := getKey(k)
		patch := client.MergeFromWithOptions(cur.DeepCopy(), client.MergeFromWithOptimisticLock{})
		cur.Status.SelfRotationRequest = selfrotation.NewRequest(reqID, k.Namespace, k.Name, presented.ID, proofHash,
			id.Recipient().String(), h.clock.Now(), 5*time.Second)
		Expect(k8s.Status().Patch(ctx, cur, patch)).To(Succeed())
		return reqID, id
	}
	answer := func(k *kw.APIKey, reqID string) *kw.SelfRotationResponse {
		GinkgoHelper()
		var out *kw.SelfRotationResponse
		Eventually(func(g Gomega) {
			out = getKey(k).Status.SelfRotationResponse
			g.Expect(out).NotTo(BeNil())
			g.Expect(out.ID).To(Equal(reqID))
		}).Should(Succeed())
		return out
	}

	It("answers the holder of the current version with its successor, once, encrypted to the request", func() {
		k := newKey(h.ns, "self")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var old keymaterial.Key
		Eventually(func(g Gomega) { old = delivered(g, k) }).Should(Succeed())

		reqID, id := ask(k, old, old.SecretHash())
		got := answer(k, reqID)
		Expect(got.Refused).To(BeEmpty())
		Expect(selfrotation.VerifyAnswer(old.SecretHash(), k.Namespace, k.Name, got)).To(BeTrue(), "the answer's MAC is keyed by the presented version's hash")
		plain, err := agecrypt.Decrypt(got.EncryptedKey, id)
		Expect(err).NotTo(HaveOccurred())
		next, err := keymaterial.Parse(plain)
		Expect(err).NotTo(HaveOccurred())
		remember(next)
		Expect(next.ID).To(Equal(got.KeyID))
		Expect(next.ID).NotTo(Equal(old.ID))
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).To(Equal(next.ID))
			g.Expect(next.Verify(rec.Current.Hash)).To(BeTrue())
			g.Expect(rec.Previous).To(ContainElement(HaveField("ID", old.ID)), "the old version keeps a grace period")
			g.Expect(delivered(g, k).Equal(next)).To(BeTrue(), "the delivery Secret follows")
		}).Should(Succeed())

		// The old version, now in its grace period, cannot rotate again.
		reqID, _ = ask(k, old, old.SecretHash())
		Expect(answer(k, reqID).Refused).To(Equal(kw.RefusedNotRotatable))
	})

	It("refuses a request whose proof was not made with the key (the key id alone is public)", func() {
		k := newKey(h.ns, "forged")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		before := waitReady(k).Status.KeyID
		var cur keymaterial.Key
		Eventually(func(g Gomega) { cur = delivered(g, k) }).Should(Succeed())

		reqID, _ := ask(k, cur, keymaterial.Hash("a guess"))
		got := answer(k, reqID)
		Expect(got.Refused).To(Equal(kw.RefusedBadRequest))
		Expect(got.EncryptedKey).To(BeEmpty())
		Expect(getKey(k).Status.KeyID).To(Equal(before))
	})

	It("answers from the hash Secret after a crash between the hash Secret and the status, without rotating twice", func() {
		k := newKey(h.ns, "crash-self")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var old keymaterial.Key
		Eventually(func(g Gomega) { old = delivered(g, k) }).Should(Succeed())

		hook, reached := crashAt("crash-self", StepRecorded)
		h.restart(hook)
		reqID, id := ask(k, old, old.SecretHash())
		Eventually(reached).Should(BeClosed())
		h.stop()
		var recorded string
		Eventually(func(g Gomega) {
			recorded = record(g, k).Current.ID
			g.Expect(recorded).NotTo(Equal(old.ID))
		}).Should(Succeed())
		Expect(getKey(k).Status.SelfRotationResponse).To(BeNil())

		h.stop = startManager(h.ns, h.opNS, h.clock, nil)
		got := answer(k, reqID)
		Expect(got.KeyID).To(Equal(recorded), "a second version was issued for one request")
		Expect(selfrotation.VerifyAnswer(old.SecretHash(), k.Namespace, k.Name, got)).To(BeTrue())
		plain, err := agecrypt.Decrypt(got.EncryptedKey, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(plain).To(HavePrefix(kw.DefaultPrefix))
		Expect(record(Default, k).Current.ID).To(Equal(recorded))
	})

	It("answers with the version delivered before a crash, and keeps the caller's key for the minimum grace", func() {
		k := newKey(h.ns, "crash-delivered-self") // no grace period configured
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var old keymaterial.Key
		Eventually(func(g Gomega) { old = delivered(g, k) }).Should(Succeed())

		hook, reached := crashAt("crash-delivered-self", StepDelivered)
		h.restart(hook)
		reqID, id := ask(k, old, old.SecretHash())
		Eventually(reached).Should(BeClosed())
		h.stop()
		var inFlight keymaterial.Key
		Eventually(func(g Gomega) {
			inFlight = delivered(g, k)
			g.Expect(inFlight.ID).NotTo(Equal(old.ID))
			g.Expect(record(g, k).Current.ID).To(Equal(old.ID), "the record was written before the crash")
		}).Should(Succeed())

		h.stop = startManager(h.ns, h.opNS, h.clock, nil)
		got := answer(k, reqID)
		Expect(got.KeyID).To(Equal(inFlight.ID), "the delivered version is the answer, not a third one")
		Expect(selfrotation.VerifyAnswer(old.SecretHash(), k.Namespace, k.Name, got)).To(BeTrue())
		plain, err := agecrypt.Decrypt(got.EncryptedKey, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(plain).To(Equal(inFlight.String()))
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).To(Equal(inFlight.ID))
			g.Expect(rec.Previous).To(ContainElement(And(HaveField("ID", old.ID),
				HaveField("NotAfter", HaveValue(BeTemporally(">=", h.clock.Now().Add(MinSelfRotationGrace)))))))
		}).Should(Succeed())
	})
})

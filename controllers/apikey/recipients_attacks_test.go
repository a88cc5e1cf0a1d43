package apikey

import (
	"fmt"
	"strings"
	"sync"

	"filippo.io/age"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/kube"
)

// Two ways around attack 1 and attack 10 of issue 12 through
// spec.delivery.ageRecipients, found by the review of the first fixes: a
// version adopted after a crash, and recipient edits in a loop.

// setRecipients is the tenant's edit of the key's age recipients.
func setRecipients(c client.Client, k *kw.APIKey, ids ...*age.X25519Identity) {
	GinkgoHelper()
	var list []string
	for _, id := range ids {
		list = append(list, fmt.Sprintf("%q", id.Recipient().String()))
	}
	patch := fmt.Sprintf(`{"spec":{"delivery":{"ageRecipients":[%s]}}}`, strings.Join(list, ","))
	Expect(c.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}},
		client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

// opens is the id of the version id decrypts from st's age delivery, ""
// when it decrypts none.
func opens(st kw.APIKeyStatus, id age.Identity) string {
	if st.AgeDelivery == nil {
		return ""
	}
	plain, err := agecrypt.Decrypt(st.AgeDelivery.EncryptedKey, id)
	if err != nil {
		return ""
	}
	k, err := keymaterial.Parse(plain)
	if err != nil {
		return ""
	}
	remember(k)
	return k.ID
}

// statusWatch records every status of k the API server holds from now on:
// a version encrypted to the wrong recipient for a moment is a leak too.
type statusWatch struct {
	mu   sync.Mutex
	seen []kw.APIKeyStatus
	stop func()
}

func watchStatus(k *kw.APIKey) *statusWatch {
	GinkgoHelper()
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: kube.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(ctx, &kw.APIKeyList{}, client.InNamespace(k.Namespace),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", k.Name)})
	Expect(err).NotTo(HaveOccurred())
	sw := &statusWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if o, ok := ev.Object.(*kw.APIKey); ok {
				sw.mu.Lock()
				sw.seen = append(sw.seen, *o.Status.DeepCopy())
				sw.mu.Unlock()
			}
		}
	}()
	sw.stop = func() { w.Stop(); <-done }
	DeferCleanup(func() { sw.stop() })
	return sw
}

func (sw *statusWatch) statuses() []kw.APIKeyStatus {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return append([]kw.APIKeyStatus(nil), sw.seen...)
}

var _ = Describe("a version adopted after a crash", func() {
	It("attack 1: a version delivered before a crash is not encrypted to a recipient added meanwhile", func() {
		h := newHarness()
		hook, reached := crashAt("payments", StepDelivered)
		h.restart(hook)
		owner := newIdentity()
		k := newKey(h.ns, "payments", withAge(owner.Recipient().String()))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		Eventually(reached).Should(BeClosed())
		var inSecret keymaterial.Key
		Eventually(func(g Gomega) { inSecret = delivered(g, k) }).Should(Succeed()) // the workload may read it now
		Expect(apierrors.IsNotFound(k8s.Get(ctx, hashSecretKey(k), &corev1.Secret{}))).To(BeTrue(), "the crash came before the record")

		mallory := tenant(h.ns, "mallory")
		err := mallory.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: k.Spec.SecretName}, &corev1.Secret{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the tenant may not read the delivery Secret, got %v", err)
		att := newIdentity()
		setRecipients(mallory, k, owner, att)
		sw := watchStatus(k)
		h.restart(nil)

		var got string
		Eventually(func(g Gomega) {
			cur := getKey(k)
			g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
			id := opens(cur.Status, att)
			g.Expect(id).NotTo(BeEmpty(), "the added recipient gets a version")
			g.Expect(id).NotTo(Equal(inSecret.ID), "the tenant decrypted the version that was in the delivery Secret before it added its recipient")
			g.Expect(cur.Status.KeyID).To(Equal(id))
			g.Expect(opens(cur.Status, owner)).To(Equal(id))
			got = id
		}).Should(Succeed())

		// The adopted version was in the workload's hands: it stays valid,
		// as any version replaced because recipients were added.
		Eventually(func(g Gomega) {
			cur := getKey(k)
			g.Expect(cur.Status.PreviousKeys).To(ConsistOf(kw.PreviousKey{KeyID: inSecret.ID, ValidUntil: metav1.NewTime(h.clock.Now().Add(MinRecipientsGrace))}))
			g.Expect(delivered(g, k).ID).To(Equal(got))
			g.Expect(indexOf(g, h.opNS).ValidateAPIKey(inSecret.String(), h.clock.Now()).Code).To(Equal(keyindex.Valid))
		}).Should(Succeed())
		sw.stop()
		seen := sw.statuses()
		Expect(seen).NotTo(BeEmpty())
		for _, st := range seen {
			Expect(opens(st, att)).NotTo(Equal(inSecret.ID), "a status the tenant could read held the adopted version for its recipient")
		}
	})

	It("adopts a version delivered before a crash with its age delivery, when the recipients did not change", func() {
		h := newHarness()
		hook, reached := crashAt("steady", StepDelivered)
		h.restart(hook)
		owner := newIdentity()
		k := newKey(h.ns, "steady", withAge(owner.Recipient().String()))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		Eventually(reached).Should(BeClosed())
		var inSecret keymaterial.Key
		Eventually(func(g Gomega) { inSecret = delivered(g, k) }).Should(Succeed())
		h.restart(nil)

		Eventually(func(g Gomega) {
			cur := getKey(k)
			g.Expect(cur.Status.KeyID).To(Equal(inSecret.ID), "the delivered key was replaced")
			g.Expect(opens(cur.Status, owner)).To(Equal(inSecret.ID))
		}).Should(Succeed())
		Expect(eventReasons(k)).NotTo(ContainElement(kw.EventRecipientsChanged))
	})
})

var _ = Describe("rotations caused by editing age recipients", func() {
	It("attack 10: rotations caused by editing ageRecipients are limited per key", func() {
		ns, clk := startRotationLimited()
		owner := newIdentity()
		k := newKey(ns, "churned", withAge(owner.Recipient().String()))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		mallory := tenant(ns, "mallory")

		// edit adds one new recipient beside the owner's and waits for the
		// reconcile of that generation (the fake clock never moves: one
		// instant).
		edit := func() (*age.X25519Identity, *kw.APIKey) {
			GinkgoHelper()
			id := newIdentity()
			setRecipients(mallory, k, owner, id)
			var cur *kw.APIKey
			Eventually(func(g Gomega) {
				cur = getKey(k)
				g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
			}).Should(Succeed())
			return id, cur
		}
		prev := getKey(k).Status.KeyID
		for range DefaultRequestedRotationBurst {
			id, cur := edit()
			Expect(cur.Status.KeyID).NotTo(Equal(prev), "a recipients change within the limit rotates at once")
			Expect(opens(cur.Status, id)).To(Equal(cur.Status.KeyID))
			prev = cur.Status.KeyID
		}

		var latest *age.X25519Identity
		for range 4 {
			id, cur := edit()
			latest = id
			Expect(cur.Status.KeyID).To(Equal(prev), "versions issued by recipient edits in one instant beyond the per-key limit")
			ready := meta.FindStatusCondition(cur.Status.Conditions, kw.ConditionReady)
			Expect(ready).NotTo(BeNil())
			Expect(ready.Status).To(Equal(metav1.ConditionTrue), "a deferred rotation leaves the key valid")
			Expect(ready.Message).To(ContainSubstring("deferred until"))
			Expect(opens(cur.Status, id)).To(BeEmpty(), "the version in use was encrypted to a recipient added while the rotation waited")
			Expect(opens(cur.Status, owner)).To(Equal(prev), "a recipient the version in use was delivered to keeps it")
			Expect(cur.Status.AgeDelivery.Recipients).To(Equal([]string{owner.Recipient().String()}))
			Eventually(func(g Gomega) { g.Expect(delivered(g, k).ID).To(Equal(prev)) }).Should(Succeed())
		}

		clk.Step(DefaultRequestedRotationRefill)
		poke(k)
		Eventually(func(g Gomega) {
			cur := getKey(k)
			g.Expect(cur.Status.KeyID).NotTo(Equal(prev), "the deferred change was dropped")
			g.Expect(opens(cur.Status, latest)).To(Equal(cur.Status.KeyID), "the latest recipients get the new version")
			g.Expect(opens(cur.Status, owner)).To(Equal(cur.Status.KeyID))
			g.Expect(cur.Status.AgeDelivery.Recipients).To(Equal([]string{owner.Recipient().String(), latest.Recipient().String()}))
			g.Expect(cur.Status.PreviousKeys).To(ContainElement(kw.PreviousKey{KeyID: prev, ValidUntil: metav1.NewTime(clk.Now().Add(MinRecipientsGrace))}))
			g.Expect(meta.FindStatusCondition(cur.Status.Conditions, kw.ConditionReady).Message).NotTo(ContainSubstring("deferred"))
		}).Should(Succeed())
	})
})

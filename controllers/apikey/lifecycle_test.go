package apikey

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

var _ = Describe("issuing a key", func() {
	var (
		h  *harness
		ns string
	)
	BeforeEach(func() { h = newHarness(); ns = h.ns })

	It("hashes the secret at rest, delivers the plaintext to the Secret and to age recipients, and reports it", func() {
		id := newIdentity()
		k := newKey(ns, "billing", withAge(id.Recipient().String()))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		got := waitReady(k)

		Eventually(func(g Gomega) {
			key := delivered(g, k)
			g.Expect(key.Prefix).To(Equal(kw.DefaultPrefix))
			g.Expect(key.ID).To(Equal(got.Status.KeyID))
			g.Expect(decrypted(g, k, id).Equal(key)).To(BeTrue(), "the age delivery holds another key than the Secret")

			rec := record(g, k)
			g.Expect(rec.Current).NotTo(BeNil())
			g.Expect(rec.Current.ID).To(Equal(key.ID))
			g.Expect(rec.Current.Hash).To(HavePrefix("sha256:"))
			g.Expect(keymaterial.Verify(rec.Current.Hash, secretPart(key))).To(BeTrue())
			g.Expect(rec.Subject).To(Equal("billing"))
			g.Expect(rec.Scopes).To(Equal([]string{"invoices:read"}))
			g.Expect(rec.Access).To(Equal(string(kw.AccessReadWrite)))

			hs := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: hashSecretKey(k).Namespace, Name: got.Status.HashSecretName}, hs)).To(Succeed())
			g.Expect(hs.Type).To(Equal(hashsecret.SecretType))
			for _, v := range hs.Data {
				g.Expect(string(v)).NotTo(ContainSubstring(secretPart(key)), "the hash Secret holds the plaintext")
			}
		}).Should(Succeed())

		Expect(got.Status.Subject).To(Equal("billing"))
		Expect(got.Status.KeyHint).To(MatchRegexp(`^kw_…[0-9A-Za-z]{4}$`))
		Expect(got.Status.HashSecretName).To(Equal(hashsecret.Name(hashsecret.KindAPIKey, ns, "billing")))
		Expect(got.Status.IssuedAt.Time).To(BeTemporally("==", h.clock.Now()))
		Expect(got.Status.ExpiresAt).To(BeNil())
		Expect(got.Status.NextRotationAt).To(BeNil())
		Expect(meta.FindStatusCondition(got.Status.Conditions, kw.ConditionExpired).Reason).To(Equal(kw.ReasonNoExpiry))
		Expect(meta.FindStatusCondition(got.Status.Conditions, kw.ConditionSuspended).Status).To(Equal(metav1.ConditionFalse))
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.ReasonIssued))
		Expect(managedSecrets(k)).To(ConsistOf(k.Spec.SecretName, got.Status.HashSecretName))
	})

	It("delivers only through age when no Secret is named: no plaintext in the cluster", func() {
		id := newIdentity()
		k := newKey(ns, "partner", withoutSecret(), withAge(id.Recipient().String()))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		got := waitReady(k)
		Eventually(func(g Gomega) {
			key := decrypted(g, k, id)
			g.Expect(key.ID).To(Equal(got.Status.KeyID))
			g.Expect(keymaterial.Verify(record(g, k).Current.Hash, secretPart(key))).To(BeTrue())
		}).Should(Succeed())
		Expect(managedSecrets(k)).To(ConsistOf(got.Status.HashSecretName))
	})

	It("refuses to overwrite a Secret it does not own", func() {
		theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"}, StringData: map[string]string{"key": "theirs"}}
		Expect(k8s.Create(ctx, theirs)).To(Succeed())
		k := newKey(ns, "clash")
		k.Spec.SecretName = "taken"
		Expect(k8s.Create(ctx, k)).To(Succeed())
		Eventually(func(g Gomega) string { return readyReason(g, k) }).Should(Equal(kw.ReasonDeliveryConflict))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(theirs), theirs)).To(Succeed())
		Expect(string(theirs.Data["key"])).To(Equal("theirs"))
	})
})

var _ = Describe("importing a key", func() {
	var ns string
	BeforeEach(func() { ns = newHarness().ns })

	It("hashes an existing key, which then validates, and copies it nowhere", func() {
		const legacy = "Lg7-Zq2xP9rT4mW8vK1nB6yH3cJ5sD0fA_eU"
		src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"}, StringData: map[string]string{"key": legacy}}
		Expect(k8s.Create(ctx, src)).To(Succeed())
		k := newKey(ns, "legacy-billing", withImport("legacy"))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		got := waitReady(k)
		Expect(got.Status.KeyID).To(MatchRegexp(`^[0-9A-Za-z]{12}$`))
		Expect(got.Status.KeyHint).To(Equal(hashsecret.HintImported))
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).To(Equal(got.Status.KeyID))
			g.Expect(rec.Current.Lookup).To(Equal(hashsecret.LookupHash))
			g.Expect(keymaterial.Verify(rec.Current.Hash, legacy)).To(BeTrue())
		}).Should(Succeed())
		Expect(managedSecrets(k)).To(ConsistOf(got.Status.HashSecretName))
		seen.Store(legacy, true)
	})

	It("keeps a key imported in Keyward's format (say, from another cluster) under a random id too", func() {
		migrated, err := keymaterial.Generate("acme")
		Expect(err).NotTo(HaveOccurred())
		remember(migrated)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-elsewhere"},
			StringData: map[string]string{"key": migrated.String()}})).To(Succeed())
		k := newKey(ns, "migrated", withImport("from-elsewhere"))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		got := waitReady(k)
		Expect(got.Status.KeyID).NotTo(Equal(migrated.ID), "the embedded id of a key its importer might not read")
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).To(Equal(got.Status.KeyID))
			g.Expect(rec.Current.Lookup).To(Equal(hashsecret.LookupSecretHash))
			g.Expect(migrated.Verify(rec.Current.Hash)).To(BeTrue())
		}).Should(Succeed())
	})

	It("gives an import recorded with an id derived from the key a random one, bound since the same instant", func() {
		h := newHarness()
		const legacy = "Lg7-Zq2xP9rT4mW8vK1nB6yH3cJ5sD0fA_eU"
		seen.Store(legacy, true)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "legacy"},
			StringData: map[string]string{"key": legacy}})).To(Succeed())
		k := newKey(h.ns, "old-import", withImport("legacy"))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)

		// Rewrite the record as an earlier Keyward wrote it.
		h.stop()
		h.stop = func() {}
		bound := h.clock.Now().Add(-24 * time.Hour).UTC()
		sec := &corev1.Secret{}
		Expect(k8s.Get(ctx, hashSecretKey(k), sec)).To(Succeed())
		rec, err := hashsecret.Decode(sec)
		Expect(err).NotTo(HaveOccurred())
		rec.Current = &hashsecret.Version{ID: derivedImportID(legacy), Hash: keymaterial.Hash(legacy), NotBefore: bound, Hint: hashsecret.HintImported}
		sec.Data[hashsecret.DataRecord], err = json.Marshal(rec)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Update(ctx, sec)).To(Succeed())

		h.stop = startManager(h.ns, h.opNS, h.clock, nil)
		poke(k)
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).NotTo(Equal(derivedImportID(legacy)))
			g.Expect(rec.Current.Lookup).To(Equal(hashsecret.LookupHash))
			g.Expect(rec.Current.NotBefore).To(BeTemporally("==", bound), "the key is bound since the same instant")
			g.Expect(getKey(k).Status.KeyID).To(Equal(rec.Current.ID))
		}).Should(Succeed())
	})

	It("reports a missing import Secret", func() {
		k := newKey(ns, "orphan", withImport("nowhere"))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		Eventually(func(g Gomega) string { return readyReason(g, k) }).Should(Equal(kw.ReasonImportNotFound))
	})
})

var _ = Describe("expiry", func() {
	var (
		h  *harness
		ns string
	)
	BeforeEach(func() { h = newHarness(); ns = h.ns })

	It("warns before, then expires the whole key at the instant, in status and in the hash Secret", func() {
		k := newKey(ns, "short-lived", withLifetime(2*time.Hour), withRotation(time.Hour, 10*time.Minute))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		got := waitReady(k)
		expiry := got.CreationTimestamp.Add(2 * time.Hour)
		Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", expiry))
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.ExpiresAt).NotTo(BeNil())
			g.Expect(*rec.ExpiresAt).To(BeTemporally("==", expiry))
			g.Expect(*rec.Current.NotAfter).To(BeTemporally("==", expiry), "the version must end at the key's expiry")
		}).Should(Succeed())

		h.clock.SetTime(expiry.Add(-20 * time.Minute)) // inside the 30m window
		poke(k)
		Eventually(func(g Gomega) string { return readyReason(g, k) }).Should(Equal(kw.ReasonExpiringSoon))
		Expect(meta.IsStatusConditionTrue(getKey(k).Status.Conditions, kw.ConditionReady)).To(BeTrue())
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.ReasonExpiringSoon))

		h.clock.SetTime(expiry)
		poke(k)
		Eventually(func(g Gomega) string { return readyReason(g, k) }).Should(Equal(kw.ReasonExpired))
		cur := getKey(k)
		Expect(meta.IsStatusConditionTrue(cur.Status.Conditions, kw.ConditionExpired)).To(BeTrue())
		Expect(meta.IsStatusConditionFalse(cur.Status.Conditions, kw.ConditionReady)).To(BeTrue())
		Expect(cur.Status.NextRotationAt).To(BeNil())
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.ReasonExpired))
		Eventually(func(g Gomega) {
			for _, v := range record(g, k).Versions() {
				g.Expect(v.ValidAt(expiry)).To(BeFalse(), "version %s still validates after expiry", v.ID)
			}
		}).Should(Succeed())
	})
})

var _ = Describe("rotation", func() {
	var (
		h  *harness
		ns string
	)
	BeforeEach(func() { h = newHarness(); ns = h.ns })

	It("issues a new version every period, keeps the previous one for its grace, then prunes it", func() {
		id := newIdentity()
		k := newKey(ns, "rotating", withRotation(time.Hour, 10*time.Minute), withAge(id.Recipient().String()))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		v1 := waitReady(k)
		Expect(v1.Status.NextRotationAt.Time).To(BeTemporally("==", v1.Status.IssuedAt.Add(time.Hour)))
		var first keymaterial.Key
		Eventually(func(g Gomega) { first = delivered(g, k) }).Should(Succeed())

		rotatedAt := v1.Status.NextRotationAt.Time
		h.clock.SetTime(rotatedAt)
		poke(k)
		Eventually(func(g Gomega) {
			cur := getKey(k)
			g.Expect(cur.Status.KeyID).NotTo(Equal(first.ID))
			g.Expect(cur.Status.PreviousKeys).To(ConsistOf(kw.PreviousKey{KeyID: first.ID, ValidUntil: metav1.NewTime(rotatedAt.Add(10 * time.Minute))}))
			second := delivered(g, k)
			g.Expect(second.ID).To(Equal(cur.Status.KeyID))
			g.Expect(decrypted(g, k, id).Equal(second)).To(BeTrue())
			rec := record(g, k)
			g.Expect(rec.Current.ID).To(Equal(second.ID))
			g.Expect(second.Verify(rec.Current.Hash)).To(BeTrue())
			g.Expect(rec.Previous).To(HaveLen(1))
			g.Expect(rec.Previous[0].ID).To(Equal(first.ID))
			g.Expect(first.Verify(rec.Previous[0].Hash)).To(BeTrue(), "the previous key must keep validating in its grace")
			g.Expect(rec.Previous[0].ValidAt(rotatedAt.Add(9 * time.Minute))).To(BeTrue())
			g.Expect(rec.Previous[0].ValidAt(rotatedAt.Add(10 * time.Minute))).To(BeFalse())
		}).Should(Succeed())
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.EventRotated))

		h.clock.SetTime(rotatedAt.Add(10 * time.Minute))
		poke(k)
		Eventually(func(g Gomega) {
			g.Expect(getKey(k).Status.PreviousKeys).To(BeEmpty())
			g.Expect(record(g, k).Previous).To(BeEmpty())
		}).Should(Succeed())
	})

	It("rotates now when the rotate annotation gets a new value, once", func() {
		k := newKey(ns, "on-demand", withRotation(24*time.Hour, time.Hour))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		before := waitReady(k).Status.KeyID

		cur := getKey(k)
		cur.Annotations = map[string]string{kw.AnnotationRotate: "2026-11-22T10:00:00Z"}
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		var after string
		Eventually(func(g Gomega) {
			got := getKey(k)
			g.Expect(got.Status.RotateRequest).To(Equal("2026-11-22T10:00:00Z"))
			g.Expect(got.Status.KeyID).NotTo(Equal(before))
			g.Expect(got.Status.PreviousKeys).To(HaveLen(1))
			after = got.Status.KeyID
		}).Should(Succeed())

		// The same value again does not rotate again.
		poke(k)
		Consistently(func() string { return getKey(k).Status.KeyID }, "2s").Should(Equal(after))
	})
})

var _ = Describe("suspension", func() {
	var ns string
	BeforeEach(func() { ns = newHarness().ns })

	It("is written to the hash Secret and lifting it restores the same key", func() {
		k := newKey(ns, "paused")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		before := waitReady(k).Status.KeyID

		cur := getKey(k)
		cur.Spec.Suspended = true
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		Eventually(func(g Gomega) string { return readyReason(g, k) }).Should(Equal(kw.ReasonSuspended))
		Expect(meta.IsStatusConditionTrue(getKey(k).Status.Conditions, kw.ConditionSuspended)).To(BeTrue())
		Eventually(func(g Gomega) { g.Expect(record(g, k).Suspended).To(BeTrue()) }).Should(Succeed())

		cur = getKey(k)
		cur.Spec.Suspended = false
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		Expect(waitReady(k).Status.KeyID).To(Equal(before))
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Suspended).To(BeFalse())
			g.Expect(rec.Current.ID).To(Equal(before))
			g.Expect(delivered(g, k).ID).To(Equal(before))
		}).Should(Succeed())
	})
})

var _ = Describe("deletion", func() {
	var ns string
	BeforeEach(func() { ns = newHarness().ns })

	It("deletes the hash and delivery Secrets before the APIKey goes, without a garbage collector", func() {
		k := newKey(ns, "doomed")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		Expect(managedSecrets(k)).To(HaveLen(2))

		Expect(k8s.Delete(ctx, getKey(k))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(k), &kw.APIKey{}))
		}).Should(BeTrue())
		Expect(managedSecrets(k)).To(BeEmpty())
	})
})

var _ = Describe("drift", func() {
	var ns string
	BeforeEach(func() { ns = newHarness().ns })

	It("repairs an edited hash Secret without changing the key", func() {
		k := newKey(ns, "edited")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		keyID := waitReady(k).Status.KeyID

		sec := &corev1.Secret{}
		Expect(k8s.Get(ctx, hashSecretKey(k), sec)).To(Succeed())
		rec, err := hashsecret.Decode(sec)
		Expect(err).NotTo(HaveOccurred())
		rec.Current.Hash = keymaterial.Hash("forged")
		rec.Suspended = true
		sec.Data[hashsecret.DataRecord], err = json.Marshal(rec)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Update(ctx, sec)).To(Succeed())

		Eventually(func(g Gomega) {
			rec := record(g, k)
			key := delivered(g, k)
			g.Expect(rec.Current.ID).To(Equal(keyID))
			g.Expect(key.ID).To(Equal(keyID))
			g.Expect(key.Verify(rec.Current.Hash)).To(BeTrue())
			g.Expect(rec.Suspended).To(BeFalse())
		}).Should(Succeed())
	})

	It("rebuilds a deleted hash Secret without changing the key", func() {
		k := newKey(ns, "deleted")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		keyID := waitReady(k).Status.KeyID
		hk := hashSecretKey(k)
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hk.Namespace, Name: hk.Name}}
		Expect(k8s.Delete(ctx, sec)).To(Succeed())

		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).To(Equal(keyID))
			g.Expect(delivered(g, k).Verify(rec.Current.Hash)).To(BeTrue())
		}).Should(Succeed())
		Expect(getKey(k).Status.KeyID).To(Equal(keyID))
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.EventHashSecretRepaired))
	})
})

var _ = Describe("restarts", func() {
	var (
		h  *harness
		ns string
	)
	BeforeEach(func() { h = newHarness(); ns = h.ns })

	// converged checks the invariants a restart must never break: one
	// current version, the same everywhere, its delivered key valid, and no
	// Secret besides the hash and delivery Secrets.
	converged := func(k *kw.APIKey) *kw.APIKey {
		GinkgoHelper()
		got := waitReady(k)
		Eventually(func(g Gomega) {
			cur := getKey(k)
			rec := record(g, k)
			key := delivered(g, k)
			g.Expect(rec.Current).NotTo(BeNil())
			g.Expect(cur.Status.KeyID).To(Equal(rec.Current.ID))
			g.Expect(key.ID).To(Equal(rec.Current.ID))
			g.Expect(key.Verify(rec.Current.Hash)).To(BeTrue())
			for _, v := range rec.Previous {
				g.Expect(v.ID).NotTo(Equal(rec.Current.ID))
				g.Expect(v.NotAfter).NotTo(BeNil(), "a previous version without an end is a second current version")
			}
		}).Should(Succeed())
		Expect(managedSecrets(k)).To(ConsistOf(k.Spec.SecretName, got.Status.HashSecretName))
		return getKey(k)
	}

	It("adopts a first version delivered before the crash rather than issuing another", func() {
		hook, reached := crashAt("crash-delivered", StepDelivered)
		h.restart(hook)
		k := newKey(ns, "crash-delivered")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		Eventually(reached).Should(BeClosed())
		h.stop()
		var inFlight keymaterial.Key
		Eventually(func(g Gomega) { inFlight = delivered(g, k) }).Should(Succeed())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, hashSecretKey(k), &corev1.Secret{}))).To(BeTrue())

		h.stop = startManager(ns, h.opNS, h.clock, nil)
		got := converged(k)
		Expect(got.Status.KeyID).To(Equal(inFlight.ID), "the delivered key was replaced: a client holding it would be locked out")
	})

	It("finishes the status after a crash between the hash Secret write and the status update", func() {
		hook, reached := crashAt("crash-recorded", StepRecorded)
		h.restart(hook)
		k := newKey(ns, "crash-recorded")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		Eventually(reached).Should(BeClosed())
		h.stop()
		Expect(getKey(k).Status.KeyID).To(BeEmpty())
		var rec *hashsecret.Record
		Eventually(func(g Gomega) { rec = record(g, k) }).Should(Succeed())

		h.stop = startManager(ns, h.opNS, h.clock, nil)
		Expect(converged(k).Status.KeyID).To(Equal(rec.Current.ID))
	})

	It("records a rotation before delivering it: interrupted in between, the delivered old key stays valid and a newer version follows", func() {
		k := newKey(ns, "crash-rotation", withRotation(time.Hour, 15*time.Minute))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		old := converged(k)
		var oldKey keymaterial.Key
		Eventually(func(g Gomega) { oldKey = delivered(g, k) }).Should(Succeed())

		hook, reached := crashAt("crash-rotation", StepRecorded)
		h.restart(hook)
		h.clock.SetTime(old.Status.NextRotationAt.Time)
		poke(k)
		Eventually(reached).Should(BeClosed())
		h.stop()
		var recorded string
		var graceEnd time.Time
		Eventually(func(g Gomega) {
			rec := record(g, k)
			recorded = rec.Current.ID
			g.Expect(recorded).NotTo(Equal(old.Status.KeyID))
			g.Expect(delivered(g, k).ID).To(Equal(old.Status.KeyID), "the delivery Secret was written before the record")
			prev := rec.Previous[0]
			g.Expect(prev.ID).To(Equal(old.Status.KeyID))
			g.Expect(oldKey.Verify(prev.Hash)).To(BeTrue())
			g.Expect(prev.ValidAt(h.clock.Now())).To(BeTrue(), "the delivered key must stay valid meanwhile")
			graceEnd = *prev.NotAfter
		}).Should(Succeed())

		h.stop = startManager(ns, h.opNS, h.clock, nil)
		poke(k)
		Eventually(func(g Gomega) {
			got := converged(k)
			g.Expect(got.Status.KeyID).NotTo(BeElementOf(old.Status.KeyID, recorded))
			rec := record(g, k)
			var oldVersion *hashsecret.Version
			for i := range rec.Previous {
				if rec.Previous[i].ID == old.Status.KeyID {
					oldVersion = &rec.Previous[i]
				}
			}
			g.Expect(oldVersion).NotTo(BeNil())
			g.Expect(*oldVersion.NotAfter).To(BeTemporally("==", graceEnd), "the old version's grace is kept, not restarted or cut")
		}).Should(Succeed())
	})
})

var _ = Describe("a rotation that cuts the old key off (no grace)", func() {
	It("never revives the old key when it crashes between the record and the delivery", func() {
		h := newHarness()
		k := newKey(h.ns, "leaked")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var leaked keymaterial.Key
		Eventually(func(g Gomega) { leaked = delivered(g, k) }).Should(Succeed())

		hook, reached := crashAt("leaked", StepRecorded)
		h.restart(hook)
		cur := getKey(k)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Annotations = map[string]string{kw.AnnotationRotate: "leak-1"}
		Expect(k8s.Patch(ctx, cur, patch)).To(Succeed())
		Eventually(reached).Should(BeClosed())
		h.stop()
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).NotTo(Equal(leaked.ID))
			g.Expect(rec.Versions()).NotTo(ContainElement(HaveField("ID", leaked.ID)), "a rotation without grace ends the old version at once")
			g.Expect(delivered(g, k).ID).To(Equal(leaked.ID), "the crash came before the delivery")
		}).Should(Succeed())

		h.stop = startManager(h.ns, h.opNS, h.clock, nil)
		poke(k)
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.Current.ID).NotTo(Equal(leaked.ID))
			g.Expect(delivered(g, k).ID).To(Equal(rec.Current.ID))
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(record(g, k).Versions()).NotTo(ContainElement(HaveField("ID", leaked.ID)), "the leaked key was adopted back")
		}, "2s", "100ms").Should(Succeed())
	})
})

var _ = Describe("secrecy", func() {
	var (
		h  *harness
		ns string
	)
	BeforeEach(func() { h = newHarness(); ns = h.ns })

	It("keeps key material out of every log line, event, condition and status", func() {
		id := newIdentity()
		var keys []keymaterial.Key
		var objs []*kw.APIKey
		for _, name := range []string{"s1", "s2", "s3"} {
			k := newKey(ns, name, withRotation(time.Hour, 5*time.Minute), withAge(id.Recipient().String()))
			Expect(k8s.Create(ctx, k)).To(Succeed())
			objs = append(objs, k)
		}
		collect := func() {
			for _, k := range objs {
				waitReady(k)
				Eventually(func(g Gomega) {
					keys = append(keys, delivered(g, k), decrypted(g, k, id))
				}).Should(Succeed())
			}
		}
		collect()
		h.clock.Step(time.Hour)
		for _, k := range objs {
			poke(k)
		}
		Eventually(func(g Gomega) {
			for _, k := range objs {
				g.Expect(getKey(k).Status.PreviousKeys).To(HaveLen(1))
			}
		}).Should(Succeed())
		collect()
		var statuses []string
		for _, k := range objs {
			raw, err := json.Marshal(getKey(k))
			Expect(err).NotTo(HaveOccurred())
			statuses = append(statuses, string(raw))
			Expect(k8s.Delete(ctx, getKey(k))).To(Succeed())
		}
		for _, k := range objs {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(k), &kw.APIKey{}))
			}).Should(BeTrue())
		}

		evs := &eventsv1.EventList{}
		Expect(k8s.List(ctx, evs, client.InNamespace(ns))).To(Succeed())
		rawEvents, err := json.Marshal(evs)
		Expect(err).NotTo(HaveOccurred())
		Expect(evs.Items).NotTo(BeEmpty())
		coreEvs := &corev1.EventList{}
		Expect(k8s.List(ctx, coreEvs, client.InNamespace(ns))).To(Succeed())
		rawCore, err := json.Marshal(coreEvs)
		Expect(err).NotTo(HaveOccurred())
		logText := logs.String()
		Expect(logText).To(ContainSubstring("reconciled"), "no debug logs were captured: the check would prove nothing")
		Expect(logText).To(ContainSubstring("Reconcile successful"), "controller-runtime's V(5) lines are missing: verbosity was not at its highest")
		// client-go logs API bodies at V(8): Secrets as hex-dumped protobuf,
		// which no substring search would catch. None may reach the log.
		Expect(logText).NotTo(ContainSubstring("Request Body"))
		Expect(logText).NotTo(ContainSubstring("Response Body"))

		Expect(len(keys)).To(BeNumerically(">=", 12))
		for _, key := range keys {
			for _, needle := range leakForms(key) {
				Expect(logText).NotTo(ContainSubstring(needle), "key material in the logs")
				Expect(string(rawEvents)).NotTo(ContainSubstring(needle), "key material in an event")
				Expect(string(rawCore)).NotTo(ContainSubstring(needle), "key material in an event")
				for _, st := range statuses {
					Expect(st).NotTo(ContainSubstring(needle), "key material in an APIKey's status or conditions")
				}
			}
		}
	})
})

var _ = Describe("a conflict storm", func() {
	It("leaves exactly one hash Secret per key, reflecting the last write, with one current version", func() {
		h := newHarness()
		const keys, writers, rounds = 4, 6, 15
		var objs []*kw.APIKey
		for i := range keys {
			k := newKey(h.ns, fmt.Sprintf("storm-%d", i), withRotation(time.Hour, time.Minute))
			Expect(k8s.Create(ctx, k)).To(Succeed())
			objs = append(objs, k)
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for r := range rounds {
					for _, k := range objs {
						// Merge patches without a resourceVersion: every writer wins
						// in turn, while the controller reconciles underneath.
						patch := fmt.Sprintf(`{"metadata":{"annotations":{"storm/%d":"%d","%s":"w%d-r%d"}},"spec":{"scopes":["s:%d-%d"]}}`,
							w, r, kw.AnnotationRotate, w, r%3, w, r)
						Expect(k8s.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}},
							client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
					}
				}
			}()
		}
		wg.Wait()
		for _, k := range objs {
			Eventually(func(g Gomega) {
				cur := &kw.APIKey{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(k), cur)).To(Succeed())
				g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
				rec := record(g, k)
				g.Expect(rec.Scopes).To(Equal(cur.Spec.Scopes), "a spec update was lost")
				g.Expect(rec.RotateRequest).To(Equal(cur.Annotations[kw.AnnotationRotate]))
				g.Expect(rec.Current.ID).To(Equal(cur.Status.KeyID))
				key := delivered(g, k)
				g.Expect(key.ID).To(Equal(rec.Current.ID))
				g.Expect(key.Verify(rec.Current.Hash)).To(BeTrue())
				for _, v := range rec.Previous {
					g.Expect(v.NotAfter).NotTo(BeNil())
				}
			}).Should(Succeed())
			Expect(managedSecrets(k)).To(ConsistOf(k.Spec.SecretName, hashsecret.Name(hashsecret.KindAPIKey, k.Namespace, k.Name)))
		}
	})
})

package apikey

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/kube"
)

// The tenant attacks of issue 12 that the APIKey controller stops on its
// own, without the admission webhook (which this suite does not run: an
// operator may run without it, and the webhook's failure policy must not be
// what keeps keys safe).

// tenant returns a client acting as user, a tenant of ns as DESIGN.md's
// threat model has it: it may create, edit and delete APIKeys and
// AccessKeyPairs in ns, and read no Secret.
func tenant(ns, user string) client.Client {
	GinkgoHelper()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keyward-tenant"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{kw.GroupVersion.Group}, Resources: []string{"apikeys", "accesskeypairs"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"},
		}},
	}
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, role))).To(Succeed())
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keyward-tenant-" + user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}))).To(Succeed())
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(as, client.Options{Scheme: kube.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error { return c.List(ctx, &kw.APIKeyList{}, client.InNamespace(ns)) }).Should(Succeed(), "the tenant's RBAC")
	return c
}

// indexOf builds the key server's index from every hash Secret of the
// operator namespace opNS, as the key server does from its cache.
func indexOf(g Gomega, opNS string) *keyindex.Index {
	list := &corev1.SecretList{}
	g.Expect(k8s.List(ctx, list, client.InNamespace(opNS), client.HasLabels{hashsecret.LabelKind})).To(Succeed())
	x := keyindex.New()
	for i := range list.Items {
		rec, err := hashsecret.Decode(&list.Items[i])
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(x.Upsert(list.Items[i].Name, rec)).To(Succeed())
	}
	return x
}

func readyOf(g Gomega, k *kw.APIKey) metav1.Condition {
	cur := &kw.APIKey{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(k), cur)).To(Succeed())
	c := meta.FindStatusCondition(cur.Status.Conditions, kw.ConditionReady)
	g.Expect(c).NotTo(BeNil())
	return *c
}

// eventNotes lists the notes of k's events with the given reason.
func eventNotes(k *kw.APIKey, reason string) []string {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(k8s.List(ctx, list, client.InNamespace(k.Namespace))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == k.Name && e.Regarding.Kind == "APIKey" && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

func withSuspended() keyOption { return func(k *kw.APIKey) { k.Spec.Suspended = true } }

var _ = Describe("attack 1: reading the key in use by editing its APIKey", func() {
	It("gives a tenant that adds its own age recipient a new version, never the one already delivered", func() {
		h := newHarness()
		k := newKey(h.ns, "payments", withRotation(24*time.Hour, time.Hour))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var inUse keymaterial.Key
		Eventually(func(g Gomega) { inUse = delivered(g, k) }).Should(Succeed())

		mallory := tenant(h.ns, "mallory")
		err := mallory.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: k.Spec.SecretName}, &corev1.Secret{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the tenant may not read the delivery Secret, got %v", err)

		id := newIdentity()
		patch := fmt.Sprintf(`{"spec":{"delivery":{"ageRecipients":[%q]}}}`, id.Recipient().String())
		Expect(mallory.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: k.Name}},
			client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())

		var got keymaterial.Key
		Eventually(func(g Gomega) {
			cur := &kw.APIKey{}
			g.Expect(mallory.Get(ctx, client.ObjectKeyFromObject(k), cur)).To(Succeed())
			g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
			g.Expect(cur.Status.AgeDelivery).NotTo(BeNil())
			g.Expect(cur.Status.AgeDelivery.Recipients).To(ContainElement(id.Recipient().String()))
			plain, err := agecrypt.Decrypt(cur.Status.AgeDelivery.EncryptedKey, id)
			g.Expect(err).NotTo(HaveOccurred())
			got, err = keymaterial.Parse(plain)
			g.Expect(err).NotTo(HaveOccurred())
		}).Should(Succeed())
		remember(got)
		Expect(got.ID).NotTo(Equal(inUse.ID), "the tenant decrypted the version in use, which it may not read")
		Expect(got.Equal(inUse)).To(BeFalse())

		// The new version is current and delivered to the Secret too; the
		// one in use keeps its grace period, so the workload is not cut off.
		Eventually(func(g Gomega) {
			cur := getKey(k)
			g.Expect(cur.Status.KeyID).To(Equal(got.ID))
			g.Expect(cur.Status.PreviousKeys).To(ConsistOf(kw.PreviousKey{KeyID: inUse.ID, ValidUntil: metav1.NewTime(h.clock.Now().Add(time.Hour))}))
			g.Expect(delivered(g, k).ID).To(Equal(got.ID))
			x := indexOf(g, h.opNS)
			g.Expect(x.ValidateAPIKey(inUse.String(), h.clock.Now()).Code).To(Equal(keyindex.Valid), "the key in use, within its grace")
			g.Expect(x.ValidateAPIKey(got.String(), h.clock.Now()).Code).To(Equal(keyindex.Valid))
		}).Should(Succeed())
		Eventually(func() []string { return eventReasons(k) }).Should(ContainElement(kw.EventRecipientsChanged))
	})

	It("keeps the version in use valid for a few minutes when recipients are added to a key without a grace period", func() {
		h := newHarness()
		k := newKey(h.ns, "no-grace")
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var inUse keymaterial.Key
		Eventually(func(g Gomega) { inUse = delivered(g, k) }).Should(Succeed())
		cur := getKey(k)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Delivery = &kw.Delivery{AgeRecipients: []string{newIdentity().Recipient().String()}}
		Expect(k8s.Patch(ctx, cur, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getKey(k)
			g.Expect(got.Status.KeyID).NotTo(Equal(inUse.ID))
			g.Expect(got.Status.PreviousKeys).To(ConsistOf(kw.PreviousKey{KeyID: inUse.ID, ValidUntil: metav1.NewTime(h.clock.Now().Add(MinRecipientsGrace))}))
		}).Should(Succeed())
	})

	It("encrypts the version in use again when recipients are only removed: each of them already holds it", func() {
		h := newHarness()
		alice, bob := newIdentity(), newIdentity()
		k := newKey(h.ns, "shared", withAge(alice.Recipient().String(), bob.Recipient().String()))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		waitReady(k)
		var inUse keymaterial.Key
		Eventually(func(g Gomega) { inUse = delivered(g, k) }).Should(Succeed())

		cur := getKey(k)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Delivery.AgeRecipients = []string{alice.Recipient().String()}
		Expect(k8s.Patch(ctx, cur, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getKey(k)
			g.Expect(got.Status.AgeDelivery).NotTo(BeNil())
			g.Expect(got.Status.AgeDelivery.Recipients).To(Equal([]string{alice.Recipient().String()}))
			g.Expect(decrypted(g, k, alice).Equal(inUse)).To(BeTrue())
			_, err := agecrypt.Decrypt(got.Status.AgeDelivery.EncryptedKey, bob)
			g.Expect(err).To(HaveOccurred(), "a removed recipient can still decrypt")
		}).Should(Succeed())
		Expect(getKey(k).Status.KeyID).To(Equal(inUse.ID))
	})
})

var _ = Describe("attack 2: shadowing another key through importFrom", func() {
	It("refuses to import another key's delivery Secret; that key keeps validating exactly as before", func() {
		h := newHarness()
		victim := newKey(h.ns, "victim")
		Expect(k8s.Create(ctx, victim)).To(Succeed())
		waitReady(victim)
		var victimKey keymaterial.Key
		var before *hashsecret.Record
		Eventually(func(g Gomega) { victimKey, before = delivered(g, victim), record(g, victim) }).Should(Succeed())

		mallory := tenant(h.ns, "mallory")
		shadow := newKey(h.ns, "shadow", withImport(victim.Spec.SecretName), withSuspended())
		Expect(mallory.Create(ctx, shadow)).To(Succeed())
		Eventually(func(g Gomega) string { return readyReason(g, shadow) }).Should(Equal(kw.ReasonImportConflict))
		Expect(readyOf(Default, shadow).Message).To(ContainSubstring("Keyward writes"))
		Eventually(func() []string { return eventReasons(shadow) }).Should(ContainElement(kw.ReasonImportConflict))
		Expect(getKey(shadow).Status.KeyID).To(BeEmpty())
		Consistently(func() []string { return managedSecrets(shadow) }, "1s").Should(BeEmpty(), "the shadow got a hash Secret")

		Eventually(func(g Gomega) {
			g.Expect(hashsecret.Equal(record(g, victim), before)).To(BeTrue(), "the victim's record changed")
			res := indexOf(g, h.opNS).ValidateAPIKey(victimKey.String(), h.clock.Now())
			g.Expect(res.Code).To(Equal(keyindex.Valid))
			g.Expect(res.Name).To(Equal("victim"))
		}).Should(Succeed())
	})

	It("makes a shadow bound before this check let go, on its next reconcile", func() {
		h := newHarness()
		victim := newKey(h.ns, "victim")
		Expect(k8s.Create(ctx, victim)).To(Succeed())
		waitReady(victim)
		var victimKey keymaterial.Key
		Eventually(func(g Gomega) { victimKey = delivered(g, victim) }).Should(Succeed())

		// The shadow and its record as an earlier Keyward wrote them, a
		// minute later: the victim's key under its own id, suspended.
		h.stop()
		h.stop = func() {}
		h.clock.Step(time.Minute)
		shadow := newKey(h.ns, "shadow", withImport(victim.Spec.SecretName), withSuspended())
		Expect(k8s.Create(ctx, shadow)).To(Succeed())
		rec := &hashsecret.Record{Kind: hashsecret.KindAPIKey, Namespace: h.ns, Name: "shadow", Subject: "shadow", Suspended: true,
			Current: &hashsecret.Version{ID: victimKey.ID, Hash: victimKey.SecretHash(), NotBefore: h.clock.Now(), Hint: hashsecret.HintImported}}
		raw, err := hashsecret.Encode(rec)
		Expect(err).NotTo(HaveOccurred())
		hk := hashSecretKey(shadow)
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: hk.Namespace, Name: hk.Name,
				Labels: map[string]string{hashsecret.LabelManagedBy: hashsecret.ManagedBy, hashsecret.LabelKind: hashsecret.KindAPIKey,
					hashsecret.LabelOwner: "shadow", hashsecret.LabelOwnerNamespace: h.ns, hashsecret.LabelOwnerUID: string(shadow.UID)},
				Annotations: map[string]string{hashsecret.AnnotationOwner: h.ns + "/shadow"}},
			Type: hashsecret.SecretType, Data: map[string][]byte{hashsecret.DataRecord: raw},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			res := indexOf(g, h.opNS).ValidateAPIKey(victimKey.String(), h.clock.Now())
			g.Expect(res.Code).To(Equal(keyindex.Valid), "the key server answers for the key bound first")
			g.Expect(res.Name).To(Equal("victim"))
		}).Should(Succeed())

		h.stop = startManager(h.ns, h.opNS, h.clock, nil)
		Eventually(func(g Gomega) string { return readyReason(g, shadow) }).Should(Equal(kw.ReasonImportConflict))
		Eventually(func(g Gomega) { g.Expect(record(g, shadow).Versions()).To(BeEmpty()) }).Should(Succeed())
		Expect(getKey(shadow).Status.KeyID).To(BeEmpty())
		Eventually(func(g Gomega) {
			g.Expect(indexOf(g, h.opNS).ValidateAPIKey(victimKey.String(), h.clock.Now()).Name).To(Equal("victim"))
		}).Should(Succeed())
	})

	It("never binds a key already bound to another APIKey to a second one", func() {
		h := newHarness()
		const legacy = "Lg7-Zq2xP9rT4mW8vK1nB6yH3cJ5sD0fA_eU"
		seen.Store(legacy, true)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "legacy"},
			StringData: map[string]string{"key": legacy}})).To(Succeed())
		first := newKey(h.ns, "first", withImport("legacy"))
		Expect(k8s.Create(ctx, first)).To(Succeed())
		firstID := waitReady(first).Status.KeyID
		var before *hashsecret.Record
		Eventually(func(g Gomega) { before = record(g, first) }).Should(Succeed())

		second := newKey(h.ns, "second", withImport("legacy"), withLifetime(time.Minute))
		Expect(k8s.Create(ctx, second)).To(Succeed())
		Eventually(func(g Gomega) string { return readyReason(g, second) }).Should(Equal(kw.ReasonImportConflict))
		Expect(readyOf(Default, second).Message).To(ContainSubstring(`already bound to APIKey "first"`))
		Eventually(func() []string { return eventReasons(second) }).Should(ContainElement(kw.ReasonImportConflict))
		Consistently(func() []string { return managedSecrets(second) }, "1s").Should(BeEmpty())

		h.clock.Step(2 * time.Minute) // past the second key's lifetime
		poke(first)
		poke(second)
		Eventually(func(g Gomega) {
			g.Expect(getKey(first).Status.KeyID).To(Equal(firstID))
			g.Expect(hashsecret.Equal(record(g, first), before)).To(BeTrue(), "the first key's record changed")
			res := indexOf(g, h.opNS).ValidateAPIKey(legacy, h.clock.Now())
			g.Expect(res.Code).To(Equal(keyindex.Valid))
			g.Expect(res.Name).To(Equal("first"))
		}).Should(Succeed())
	})
})

// derivedImportID is how Keyward derived an imported key's public id before
// issue 12 (a function of the key itself).
func derivedImportID(s string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	sum := sha256.Sum256([]byte("keyward-import-id:" + s))
	const pow6 = 62 * 62 * 62 * 62 * 62 * 62
	var id [12]byte
	for half, v := range []uint64{binary.BigEndian.Uint64(sum[0:8]) % pow6, binary.BigEndian.Uint64(sum[8:16]) % pow6} {
		for i := 5; i >= 0; i-- {
			id[half*6+i] = alphabet[v%62]
			v /= 62
		}
	}
	return string(id[:])
}

var _ = Describe("attack 3: hash oracle through importFrom", func() {
	It("gives an imported key a random public id, never one derived from the key", func() {
		h := newHarness()
		const legacy = "Lg7-Zq2xP9rT4mW8vK1nB6yH3cJ5sD0fA_eU"
		seen.Store(legacy, true)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "legacy"},
			StringData: map[string]string{"key": legacy}})).To(Succeed())
		k := newKey(h.ns, "imported", withImport("legacy"))
		Expect(k8s.Create(ctx, k)).To(Succeed())
		firstID := waitReady(k).Status.KeyID
		Expect(firstID).NotTo(Equal(derivedImportID(legacy)), "the public id is derived from the key")
		Expect(firstID).To(MatchRegexp(`^[0-9A-Za-z]{12}$`))
		Eventually(func(g Gomega) {
			res := indexOf(g, h.opNS).ValidateAPIKey(legacy, h.clock.Now())
			g.Expect(res.Code).To(Equal(keyindex.Valid))
			g.Expect(res.KeyID).To(Equal(firstID))
		}).Should(Succeed())

		// Imported again (the first APIKey deleted): another id.
		Expect(k8s.Delete(ctx, getKey(k))).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(k), &kw.APIKey{})) }).Should(BeTrue())
		again := newKey(h.ns, "imported", withImport("legacy"))
		Expect(k8s.Create(ctx, again)).To(Succeed())
		Expect(waitReady(again).Status.KeyID).NotTo(Equal(firstID), "the same key got the same public id twice")
	})

	It("refuses a weak import without telling what is weak about it", func() {
		h := newHarness()
		var messages, notes []string
		for i, weak := range []string{"Sh0rt-but-Varied-Key!", strings.Repeat("ab", 20), strings.Repeat("0123456789", 3) + "01"} {
			seen.Store(weak, true)
			src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: fmt.Sprintf("weak-%d", i)}, StringData: map[string]string{"key": weak}}
			Expect(k8s.Create(ctx, src)).To(Succeed())
			k := newKey(h.ns, fmt.Sprintf("weak-%d", i), withImport(src.Name))
			Expect(k8s.Create(ctx, k)).To(Succeed())
			Eventually(func(g Gomega) string { return readyReason(g, k) }).Should(Equal(kw.ReasonImportRefused))
			Expect(managedSecrets(k)).To(BeEmpty())
			c := readyOf(Default, k)
			Expect(c.Message).NotTo(ContainSubstring(weak))
			messages = append(messages, strings.ReplaceAll(c.Message, src.Name, "SECRET"))
			var got []string
			Eventually(func() []string { got = eventNotes(k, kw.ReasonImportRefused); return got }).ShouldNot(BeEmpty())
			notes = append(notes, strings.ReplaceAll(got[0], src.Name, "SECRET"))
		}
		// Three keys, each weak in its own way (length, variety, classes):
		// one message, the rules, whatever the key.
		Expect(messages).To(HaveEach(Equal(messages[0])), "the condition tells which rule the key broke")
		Expect(notes).To(HaveEach(Equal(notes[0])), "the event tells which rule the key broke")
		Expect(messages[0]).To(ContainSubstring("at least 32"))
	})
})

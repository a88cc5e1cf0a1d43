package accesskeypair

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/testenv"
)

func TestAccessKeyPairController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "AccessKeyPair controller suite (envtest)")
}

var (
	cfg *rest.Config
	k8s client.Client
	ctx = context.Background()
)

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	s := testenv.StartSuite(GinkgoT(), testenv.Start)
	cfg, k8s = s.Config, s.Client
})

type hook func(context.Context, client.ObjectKey, Step) error

// harness runs the controller for one spec: keys in ns, hash Secrets in
// opNS (the spec's operator namespace).
type harness struct {
	ns, opNS string
	clock    *clocktesting.FakeClock
	stop     func()
}

func (h *harness) start(afterWrite hook) {
	stop, err := testenv.StartManager(cfg, h.ns, h.opNS, func(mgr ctrl.Manager) error {
		return (&Reconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: h.clock,
			Recorder: mgr.GetEventRecorder("keyward-accesskeypair"), ExpiringSoonWindow: 30 * time.Minute,
			HashNamespace: h.opNS, Resync: time.Second, AfterWrite: afterWrite,
		}).SetupWithManager(mgr)
	})
	Expect(err).NotTo(HaveOccurred())
	h.stop = func() { Expect(stop()).To(Succeed()) }
}

func newHarness() *harness {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "akp-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	op := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "akp-operator-"}}
	Expect(k8s.Create(ctx, op)).To(Succeed())
	h := &harness{ns: ns.Name, opNS: op.Name, clock: clocktesting.NewFakeClock(time.Now().Truncate(time.Second))}
	operatorNamespaceOf.Store(h.ns, h.opNS)
	h.start(nil)
	DeferCleanup(func() { h.stop() })
	return h
}

func newPair(ns, name, subject string) *kw.AccessKeyPair {
	return &kw.AccessKeyPair{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kw.AccessKeyPairSpec{
			Subject: subject, SecretName: name + "-keys", Scopes: []string{"reports:read"},
			Tokens: &kw.TokenPolicy{MaxLifetime: &metav1.Duration{Duration: 24 * time.Hour}},
		},
	}
}

func get(p *kw.AccessKeyPair) *kw.AccessKeyPair {
	GinkgoHelper()
	out := &kw.AccessKeyPair{}
	Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), out)).To(Succeed())
	return out
}

func readyReason(g Gomega, p *kw.AccessKeyPair) string {
	cur := &kw.AccessKeyPair{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), cur)).To(Succeed())
	c := meta.FindStatusCondition(cur.Status.Conditions, kw.ConditionReady)
	if c == nil || c.ObservedGeneration != cur.Generation {
		return ""
	}
	return c.Reason
}

// operatorNamespaceOf maps a spec's namespace to its operator namespace.
var operatorNamespaceOf sync.Map

// hashSecretKey names p's hash Secret, in its harness's operator namespace.
func hashSecretKey(p *kw.AccessKeyPair) types.NamespacedName {
	op, _ := operatorNamespaceOf.Load(p.Namespace)
	return types.NamespacedName{Namespace: op.(string), Name: hashsecret.Name(hashsecret.KindAccessKeyPair, p.Namespace, p.Name)}
}

func record(g Gomega, p *kw.AccessKeyPair) *hashsecret.Record {
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, hashSecretKey(p), sec)).To(Succeed())
	rec, err := hashsecret.Decode(sec)
	g.Expect(err).NotTo(HaveOccurred())
	return rec
}

func delivered(g Gomega, p *kw.AccessKeyPair) (id, sk string) {
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.SecretName}, sec)).To(Succeed())
	return string(sec.Data[kw.DeliveryDataAccessKeyID]), string(sec.Data[kw.DeliveryDataSecretKey])
}

// issued waits until the pair is Ready and its delivered secret key
// verifies against the hash Secret; it returns the access key id.
func issued(p *kw.AccessKeyPair) string {
	GinkgoHelper()
	var id string
	Eventually(func(g Gomega) {
		g.Expect(readyReason(g, p)).To(Equal(kw.ReasonIssued))
		var sk string
		id, sk = delivered(g, p)
		rec := record(g, p)
		g.Expect(rec.Current).NotTo(BeNil())
		g.Expect(rec.Current.ID).To(Equal(id))
		g.Expect(keymaterial.Verify(rec.Current.Hash, sk)).To(BeTrue())
		g.Expect(get(p).Status.AccessKeyID).To(Equal(id))
	}).Should(Succeed())
	return id
}

var _ = Describe("AccessKeyPair", func() {
	var h *harness
	BeforeEach(func() { h = newHarness() })

	It("delivers the access key id and secret key, and keeps only the secret key's hash", func() {
		p := newPair(h.ns, "alice-1", "alice")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		id := issued(p)
		Expect(id).To(HavePrefix("KWAK"))
		Eventually(func(g Gomega) {
			_, sk := delivered(g, p)
			sec := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: h.opNS, Name: get(p).Status.HashSecretName}, sec)).To(Succeed())
			g.Expect(string(sec.Data[hashsecret.DataRecord])).NotTo(ContainSubstring(sk))
			rec := record(g, p)
			g.Expect(rec.Kind).To(Equal(hashsecret.KindAccessKeyPair))
			g.Expect(rec.Subject).To(Equal("alice"))
			g.Expect(rec.Tokens.MaxLifetime).To(Equal(24 * time.Hour))
			g.Expect(rec.Tokens.DefaultLifetime).To(Equal(24*time.Hour), "the 72h default is capped by maxLifetime")
		}).Should(Succeed())
		Expect(get(p).Status.Subject).To(Equal("alice"))
	})

	It("is suspended in the hash Secret and restored with the same keys", func() {
		p := newPair(h.ns, "bob-1", "bob")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		id := issued(p)
		cur := get(p)
		cur.Spec.Suspended = true
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		Eventually(func(g Gomega) string { return readyReason(g, p) }).Should(Equal(kw.ReasonSuspended))
		Eventually(func(g Gomega) { g.Expect(record(g, p).Suspended).To(BeTrue()) }).Should(Succeed())
		cur = get(p)
		cur.Spec.Suspended = false
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		Expect(issued(p)).To(Equal(id))
	})

	It("expires at its expiresAt, in the hash Secret too", func() {
		p := newPair(h.ns, "carol-1", "carol")
		end := metav1.NewTime(h.clock.Now().Add(time.Hour))
		p.Spec.ExpiresAt = &end
		Expect(k8s.Create(ctx, p)).To(Succeed())
		issuedFor := func(g Gomega) string { return readyReason(g, p) }
		Eventually(issuedFor).Should(Equal(kw.ReasonIssued))
		Eventually(func(g Gomega) { g.Expect(*record(g, p).Current.NotAfter).To(BeTemporally("==", end.Time)) }).Should(Succeed())
		h.clock.SetTime(end.Time)
		// RequeueAfter runs on the real clock; make the controller look now.
		cur := get(p)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Groups = []string{"touched"}
		Expect(k8s.Patch(ctx, cur, patch)).To(Succeed())
		Eventually(issuedFor).Should(Equal(kw.ReasonExpired))
		Expect(meta.IsStatusConditionTrue(get(p).Status.Conditions, kw.ConditionExpired)).To(BeTrue())
	})

	It("marks a pair beyond the per-subject limit LimitExceeded, and issues it once a place frees up", func() {
		// Created at once with no webhook in front: the controller is the
		// second line of defence.
		pairs := []*kw.AccessKeyPair{newPair(h.ns, "dave-1", "dave"), newPair(h.ns, "dave-2", "dave"), newPair(h.ns, "dave-3", "dave")}
		var wg sync.WaitGroup
		for _, p := range pairs {
			wg.Add(1)
			go func() { defer GinkgoRecover(); defer wg.Done(); Expect(k8s.Create(ctx, p)).To(Succeed()) }()
		}
		wg.Wait()
		// The two oldest (ties broken by name) win.
		byAge := func(g Gomega) []string {
			var ready, over []string
			for _, p := range pairs {
				switch readyReason(g, p) {
				case kw.ReasonIssued:
					ready = append(ready, p.Name)
				case kw.ReasonLimitExceeded:
					over = append(over, p.Name)
				}
			}
			g.Expect(ready).To(HaveLen(2))
			g.Expect(over).To(HaveLen(1))
			return over
		}
		var loser []string
		Eventually(func(g Gomega) { loser = byAge(g) }).Should(Succeed())
		var over *kw.AccessKeyPair
		for _, p := range pairs {
			if p.Name == loser[0] {
				over = p
			}
		}
		c := meta.FindStatusCondition(get(over).Status.Conditions, kw.ConditionReady)
		Expect(c.Message).To(ContainSubstring(`subject "dave" already holds 2 access key pairs`))
		Eventually(func(g Gomega) { g.Expect(record(g, over).Current).To(BeNil()) }).Should(Succeed())

		for _, p := range pairs {
			if p.Name != over.Name {
				Expect(k8s.Delete(ctx, get(p))).To(Succeed())
				break
			}
		}
		issued(over)
	})

	It("deletes its Secrets on deletion", func() {
		p := newPair(h.ns, "erin-1", "erin")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		issued(p)
		Expect(k8s.Delete(ctx, get(p))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(p), &kw.AccessKeyPair{}))
		}).Should(BeTrue())
		for _, key := range []types.NamespacedName{{Namespace: h.ns, Name: p.Spec.SecretName}, hashSecretKey(p)} {
			Expect(apierrors.IsNotFound(k8s.Get(ctx, key, &corev1.Secret{}))).To(BeTrue(), key.String())
		}
	})

	It("adopts a pair delivered before a crash instead of issuing another", func() {
		reached := make(chan struct{})
		var once sync.Once
		h.stop()
		h.start(func(ctx context.Context, key client.ObjectKey, s Step) error {
			once.Do(func() { close(reached) })
			<-ctx.Done()
			return ctx.Err()
		})
		p := newPair(h.ns, "frank-1", "frank")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		Eventually(reached).Should(BeClosed())
		h.stop()
		var id string
		Eventually(func(g Gomega) { id, _ = delivered(g, p) }).Should(Succeed())
		h.start(nil)
		Expect(issued(p)).To(Equal(id))
	})

	It("rebuilds a deleted hash Secret from the delivered pair", func() {
		p := newPair(h.ns, "gina-1", "gina")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		id := issued(p)
		key := hashSecretKey(p)
		Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})).To(Succeed())
		Expect(issued(p)).To(Equal(id))
	})
})

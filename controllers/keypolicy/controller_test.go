package keypolicy

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
)

func TestKeyPolicyController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "KeyPolicy controller suite (envtest)")
}

var (
	cfg  *rest.Config
	k8s  client.Client
	ctx  = context.Background()
	stop context.CancelFunc
	// clk stamps condition transitions: a whole second, as the API server
	// stores them.
	clk = clocktesting.NewFakePassiveClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
)

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	s := testenv.StartSuite(GinkgoT(), testenv.Start)
	cfg, k8s = s.Config, s.Client
	// Conflicts span namespaces, so the manager watches all of them (as
	// the real one does for KeyPolicies); each spec uses its own hosts.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 kube.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(Setup(mgr, Options{Clock: clk})).To(Succeed())
	var mctx context.Context
	mctx, stop = context.WithCancel(ctx)
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
})

// The manager stops here, before the environment (StartSuite's cleanup).
var _ = AfterSuite(func() {
	if stop != nil {
		stop()
	}
})

// namespace creates a namespace whose name starts with prefix: policies
// created in the same second are ordered by namespace, so specs choose
// prefixes in the order they create policies.
func namespace(prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func create(ns, name string, spec kw.KeyPolicySpec) *kw.KeyPolicy {
	GinkgoHelper()
	p := &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	return p
}

func hostSpec(h ...kw.Hostname) kw.KeyPolicySpec { return kw.KeyPolicySpec{Hosts: h} }

// condition fetches p and returns one of its conditions and its status.
func condition(g Gomega, p *kw.KeyPolicy, typ string) (*metav1.Condition, kw.KeyPolicyStatus) {
	got := &kw.KeyPolicy{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
	c := meta.FindStatusCondition(got.Status.Conditions, typ)
	g.Expect(c).NotTo(BeNil(), "no %s condition yet on %s", typ, p.Name)
	g.Expect(c.ObservedGeneration).To(Equal(got.Generation))
	g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
	return c, got.Status
}

// expectAccepted waits for p to be Accepted and in force on n hosts.
func expectAccepted(p *kw.KeyPolicy, n int32) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		a, st := condition(g, p, kw.ConditionAccepted)
		g.Expect(a.Status).To(Equal(metav1.ConditionTrue), a.Message)
		g.Expect(a.Reason).To(Equal(kw.ReasonAccepted))
		r, _ := condition(g, p, kw.ConditionReady)
		g.Expect(r.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(r.Reason).To(Equal(kw.ReasonInForce))
		g.Expect(st.MatchedHosts).To(Equal(ptr.To(n)))
	}).Should(Succeed())
}

var _ = Describe("KeyPolicy status", func() {
	It("accepts a policy whose hosts no one else holds, stamping the injected clock and the generation", func() {
		ns := namespace("kp-accept-")
		p := create(ns, "api", hostSpec("accept.example.com", "*.accept.example.com"))
		expectAccepted(p, 2)
		Eventually(func(g Gomega) {
			a, _ := condition(g, p, kw.ConditionAccepted)
			g.Expect(a.LastTransitionTime.Time).To(BeTemporally("==", clk.Now()))
		}).Should(Succeed())

		// A new generation is observed.
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		p.Spec.Hosts = append(p.Spec.Hosts, "accept.example.net")
		Expect(k8s.Update(ctx, p)).To(Succeed())
		Expect(p.Generation).To(Equal(int64(2)))
		expectAccepted(p, 3)
	})

	It("lets the older policy keep a host, reports the newer Conflicted naming it, and hands the host over once the older is deleted", func() {
		// "kp-a-" sorts before "kp-b-": team A is older even within a second.
		teamA, tenant := namespace("kp-a-"), namespace("kp-b-")
		winner := create(teamA, "api", hostSpec("conflict.example.com"))
		expectAccepted(winner, 1)
		// The tenant names team A's host, and one of its own.
		loser := create(tenant, "grab", hostSpec("conflict.example.com", "tenant.example.com"))
		Eventually(func(g Gomega) {
			a, st := condition(g, loser, kw.ConditionAccepted)
			g.Expect(a.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(a.Reason).To(Equal(kw.ReasonConflicted))
			g.Expect(a.Message).To(ContainSubstring("conflict.example.com by " + teamA + "/api"))
			r, _ := condition(g, loser, kw.ConditionReady)
			g.Expect(r.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(r.Reason).To(Equal(kw.ReasonPartiallyInForce))
			g.Expect(st.MatchedHosts).To(Equal(ptr.To(int32(1))))
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			a, _ := condition(g, winner, kw.ConditionAccepted)
			g.Expect(a.Status).To(Equal(metav1.ConditionTrue))
		}, "1s").Should(Succeed())

		// A carve-out of a path on team A's host is no better.
		carve := create(tenant, "carve", kw.KeyPolicySpec{Hosts: []kw.Hostname{"conflict.example.com"},
			Rules: []kw.KeyPolicyRule{{PathPrefix: "/admin"}}})
		Eventually(func(g Gomega) {
			a, st := condition(g, carve, kw.ConditionAccepted)
			g.Expect(a.Reason).To(Equal(kw.ReasonConflicted))
			g.Expect(a.Message).To(ContainSubstring(teamA + "/api"))
			r, _ := condition(g, carve, kw.ConditionReady)
			g.Expect(r.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(st.MatchedHosts).To(Equal(ptr.To(int32(0))))
		}).Should(Succeed())
		Expect(k8s.Delete(ctx, carve)).To(Succeed())

		Expect(k8s.Delete(ctx, winner)).To(Succeed())
		expectAccepted(loser, 2)
	})

	It("applies the same rule within a namespace: the same host and path prefix conflict, other prefixes do not", func() {
		ns := namespace("kp-same-")
		v1 := create(ns, "a-v1", kw.KeyPolicySpec{Hosts: []kw.Hostname{"same.example.com"}, Rules: []kw.KeyPolicyRule{{PathPrefix: "/v1"}}})
		expectAccepted(v1, 1)
		v2 := create(ns, "b-v2", kw.KeyPolicySpec{Hosts: []kw.Hostname{"same.example.com"}, Rules: []kw.KeyPolicyRule{{PathPrefix: "/v2"}}})
		expectAccepted(v2, 1)
		again := create(ns, "c-v1-again", kw.KeyPolicySpec{Hosts: []kw.Hostname{"same.example.com"}, Rules: []kw.KeyPolicyRule{{PathPrefix: "/v1/"}}})
		Eventually(func(g Gomega) {
			a, _ := condition(g, again, kw.ConditionAccepted)
			g.Expect(a.Reason).To(Equal(kw.ReasonConflicted))
			g.Expect(a.Message).To(ContainSubstring("same.example.com by " + ns + "/a-v1"))
		}).Should(Succeed())
	})

	DescribeTable("reports what the API server cannot check alone as Invalid, and keeps the host from others",
		func(spec kw.KeyPolicySpec, message string) {
			owner, other := namespace("kp-inv-a-"), namespace("kp-inv-b-")
			p := create(owner, "api", spec)
			Eventually(func(g Gomega) {
				a, st := condition(g, p, kw.ConditionAccepted)
				g.Expect(a.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(a.Reason).To(Equal(kw.ReasonInvalid))
				g.Expect(a.Message).To(ContainSubstring(message))
				r, _ := condition(g, p, kw.ConditionReady)
				g.Expect(r.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(r.Reason).To(Equal(kw.ReasonInvalid))
				g.Expect(st.MatchedHosts).To(Equal(ptr.To(int32(1))))
			}).Should(Succeed())
			// Fixing a typo must not hand the host to another namespace.
			grab := create(other, "grab", hostSpec(spec.Hosts[0]))
			Eventually(func(g Gomega) {
				a, _ := condition(g, grab, kw.ConditionAccepted)
				g.Expect(a.Reason).To(Equal(kw.ReasonConflicted))
				g.Expect(a.Message).To(ContainSubstring(owner + "/api"))
			}).Should(Succeed())
			// Fixed, it is accepted at its new generation.
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
			p.Spec.Rules, p.Spec.Keys = nil, nil
			Expect(k8s.Update(ctx, p)).To(Succeed())
			expectAccepted(p, 1)
		},
		Entry("a rule never used, shadowed by an earlier one", kw.KeyPolicySpec{
			Hosts: []kw.Hostname{"shadow.example.com"},
			Rules: []kw.KeyPolicyRule{{PathPrefix: "/"}, {PathPrefix: "/admin", RequiredScopes: []string{"admin"}}},
		}, "spec.rules[1] is never used: spec.rules[0] matches every request it would"),
		Entry("a subject of a namespace whose keys are not accepted", kw.KeyPolicySpec{
			Hosts: []kw.Hostname{"subject.example.com"},
			Rules: []kw.KeyPolicyRule{{Subjects: []kw.KeyPolicySubject{{Namespace: "elsewhere", Name: "admin"}}}},
		}, "namespace elsewhere is not one whose keys this policy accepts"),
		Entry("a namespace selector the API server stores but cannot parse", kw.KeyPolicySpec{
			Hosts: []kw.Hostname{"selector.example.com"},
			Keys: &kw.KeyPolicyKeys{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "team", Operator: metav1.LabelSelectorOpIn},
			}}},
		}, "spec.keys.namespaceSelector"),
	)
})

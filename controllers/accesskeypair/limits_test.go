package accesskeypair

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

var _ = Describe("AccessKeyPair rate limit and allow-list", func() {
	var h *harness
	BeforeEach(func() { h = newHarness() })

	It("are copied into the hash Secret, and a change rewrites the record, never the pair", func() {
		p := newPair(h.ns, "carol-1", "carol")
		p.Spec.RateLimit = &kw.RateLimit{Requests: 10, Period: metav1.Duration{Duration: time.Hour}}
		p.Spec.AllowedCIDRs = []kw.CIDR{"2001:db8::/32"}
		Expect(k8s.Create(ctx, p)).To(Succeed())
		id := issued(p)
		Eventually(func(g Gomega) {
			rec := record(g, p)
			g.Expect(rec.RateLimit).To(Equal(&hashsecret.RateLimit{Requests: 10, Period: time.Hour}))
			g.Expect(rec.AllowedCIDRs).To(Equal([]string{"2001:db8::/32"}))
		}).Should(Succeed())

		cur := get(p)
		cur.Spec.RateLimit = nil
		cur.Spec.AllowedCIDRs = []kw.CIDR{"10.0.0.0/8"}
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		Eventually(func(g Gomega) {
			rec := record(g, p)
			g.Expect(rec.RateLimit).To(BeNil())
			g.Expect(rec.AllowedCIDRs).To(Equal([]string{"10.0.0.0/8"}))
			g.Expect(rec.Current.ID).To(Equal(id))
		}).Should(Succeed())
		Expect(issued(p)).To(Equal(id))
	})
})

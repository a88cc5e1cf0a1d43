package apikey

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

var _ = Describe("rate limit and allow-list", func() {
	var ns string
	BeforeEach(func() { ns = newHarness().ns })

	It("are copied into the hash Secret, and a change rewrites the record, never the key", func() {
		k := newKey(ns, "limited")
		k.Spec.RateLimit = &kw.RateLimit{Requests: 100, Period: metav1.Duration{Duration: time.Minute}, Burst: 10}
		k.Spec.AllowedCIDRs = []kw.CIDR{"10.0.0.0/8", "192.0.2.7"}
		Expect(k8s.Create(ctx, k)).To(Succeed())
		before := waitReady(k).Status.KeyID
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.RateLimit).To(Equal(&hashsecret.RateLimit{Requests: 100, Period: time.Minute, Burst: 10}))
			g.Expect(rec.AllowedCIDRs).To(Equal([]string{"10.0.0.0/8", "192.0.2.7"}))
		}).Should(Succeed())

		cur := getKey(k)
		cur.Spec.RateLimit = &kw.RateLimit{Requests: 5, Period: metav1.Duration{Duration: time.Second}}
		cur.Spec.AllowedCIDRs = nil
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		Eventually(func(g Gomega) {
			rec := record(g, k)
			g.Expect(rec.RateLimit).To(Equal(&hashsecret.RateLimit{Requests: 5, Period: time.Second}))
			g.Expect(rec.AllowedCIDRs).To(BeEmpty())
			g.Expect(rec.Current.ID).To(Equal(before))
			g.Expect(rec.Previous).To(BeEmpty(), "a limit change must not rotate the key")
		}).Should(Succeed())
		Expect(waitReady(k).Status.KeyID).To(Equal(before))
		Eventually(func(g Gomega) { g.Expect(delivered(g, k).ID).To(Equal(before)) }).Should(Succeed())
	})
})

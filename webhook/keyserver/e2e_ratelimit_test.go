package keyserver_test

import (
	"net/http"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

// The key server as installed with --rate-limit-store=redis://… against a
// real Redis: a limited key is counted there, and when Redis stops the key
// server's Pod gets one Warning event (and one Normal when it is back),
// while requests go on by --rate-limit-store-failure (open here).
var _ = Describe("the key server on a Redis rate-limit store", Ordered, func() {
	var (
		s      *stack
		redis  *testenv.RedisServer
		podNS  string
		plain  string
		reason = func(r string) func(g Gomega) {
			return func(g Gomega) {
				list := &eventsv1.EventList{}
				g.Expect(s.k8s.List(ctx, list, client.InNamespace(podNS))).To(Succeed())
				var found []string
				for _, e := range list.Items {
					if e.Regarding.Kind == "Pod" && e.Regarding.Name == "key-server-0" {
						found = append(found, e.Reason)
					}
				}
				g.Expect(found).To(ContainElement(r))
			}
		}
	)
	BeforeAll(func() {
		redis = testenv.StartRedis(ginkgoTB{g: GinkgoT()})
		s = newStack(nil)
		podNS = newNS(s)
		for k, v := range map[string]string{"POD_NAME": "key-server-0", "POD_NAMESPACE": podNS, "POD_UID": "5e0c1b52-0000-4000-8000-000000000001"} {
			old, had := os.LookupEnv(k)
			Expect(os.Setenv(k, v)).To(Succeed())
			DeferCleanup(func() {
				if had {
					_ = os.Setenv(k, old)
				} else {
					_ = os.Unsetenv(k)
				}
			})
		}
		startOperatorWith(s, freePort(), nil, func(o *operator.Options) { o.RateLimitStore = redis.URL })
		DeferCleanup(func() { s.stop(); Expect(s.env.Stop()).To(Succeed()) })
		ns := newNS(s)
		Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "limited"}, Spec: kw.APIKeySpec{
			SecretName: "limited", RateLimit: &kw.RateLimit{Requests: 1000, Period: metav1.Duration{Duration: time.Hour}}}})).To(Succeed())
		plain = secretData(s, ns, "limited", kw.DeliveryDataKey)
	})

	It("counts a limited key in Redis, and reports Redis stopping and coming back on the Pod", func() {
		Eventually(func(g Gomega) {
			r := get(s, "/v1/authz", map[string]string{"Authorization": "Bearer " + plain})
			g.Expect(r.status).To(Equal(http.StatusOK))
			g.Expect(r.header.Get("RateLimit")).To(HavePrefix(`"key";r=`))
		}, 20*time.Second).Should(Succeed())

		redis.Stop()
		for range 3 {
			start := time.Now()
			r := get(s, "/v1/authz", map[string]string{"Authorization": "Bearer " + plain})
			Expect(time.Since(start)).To(BeNumerically("<", time.Second), "a request waited for a stopped Redis")
			Expect(r.status).To(Equal(http.StatusOK), "--rate-limit-store-failure=open")
			Expect(r.header.Get("RateLimit")).To(BeEmpty(), "nothing counted the request")
		}
		Eventually(reason(kw.EventRateLimitStoreUnavailable), 20*time.Second).Should(Succeed())

		redis.Start()
		Eventually(func() string {
			return get(s, "/v1/authz", map[string]string{"Authorization": "Bearer " + plain}).header.Get("RateLimit")
		}, 20*time.Second, 200*time.Millisecond).Should(HavePrefix(`"key";r=`))
		Eventually(reason(kw.EventRateLimitStoreAvailable), 20*time.Second).Should(Succeed())
	})
})

// ginkgoTB is GinkgoT as a testing.TB, for helpers that take one
// (testenv.StartRedis). The embedded TB is nil: only the methods below,
// GinkgoT's, may be called.
type ginkgoTB struct {
	testing.TB
	g FullGinkgoTInterface
}

func (t ginkgoTB) Helper()                        { t.g.Helper() }
func (t ginkgoTB) Cleanup(f func())               { t.g.Cleanup(f) }
func (t ginkgoTB) Failed() bool                   { return t.g.Failed() }
func (t ginkgoTB) Fatal(args ...any)              { t.g.Fatal(args...) }
func (t ginkgoTB) Fatalf(format string, a ...any) { t.g.Fatalf(format, a...) }
func (t ginkgoTB) Errorf(format string, a ...any) { t.g.Errorf(format, a...) }
func (t ginkgoTB) Logf(format string, a ...any)   { t.g.Logf(format, a...) }
func (t ginkgoTB) Skip(args ...any)               { t.g.Skip(args...) }
func (t ginkgoTB) TempDir() string                { return t.g.TempDir() }

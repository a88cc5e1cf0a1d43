package keyserver_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/apikey"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/webhook/keyserver"
)

// tenantClient acts as user in ns with what a tenant has there: APIKeys and
// AccessKeyPairs, no Secret.
func tenantClient(s *stack, ns, user string) client.Client {
	GinkgoHelper()
	Expect(s.k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keyward-tenant"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{kw.GroupVersion.Group}, Resources: []string{"apikeys", "accesskeypairs"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}})).To(Succeed())
	Expect(s.k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keyward-tenant"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "keyward-tenant"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}})).To(Succeed())
	cfg := rest.CopyConfig(s.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func verifyCode(s *stack, key string) string {
	body, _ := json.Marshal(wire.VerifyRequest{Key: key})
	r := do(s, http.MethodPost, "/v1/verify", bytes.NewReader(body), map[string]string{"Content-Type": "application/json"})
	var out wire.VerifyResponse
	_ = json.Unmarshal(r.body, &out)
	return out.Code
}

// counts tallies answers by status.
type counts struct {
	mu sync.Mutex
	by map[int]int
	// noRetryAfter counts 429s without a Retry-After header.
	noRetryAfter int
}

func (c *counts) add(r response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[int]int{}
	}
	c.by[r.status]++
	if r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") == "" {
		c.noRetryAfter++
	}
}

func (c *counts) get(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by[status]
}

// Attack 10: a key holder rotating its key and minting tokens in loops,
// and a tenant rotating its keys by annotation as fast as it can, must not
// delay another tenant's revocations beyond the target (a deleted key is
// refused within a second).
var _ = Describe("attack 10: work amplification by a key holder", Ordered, func() {
	var s *stack
	BeforeAll(func() {
		s = newStack(nil)
		startOperator(s, freePort())
		DeferCleanup(func() { s.stop(); Expect(s.env.Stop()).To(Succeed()) })
	})

	It("attack 10: work amplification by a key holder", func() {
		// quiet deletions measure this machine's revocation floor in this
		// run, before the burst; victims are deleted under it.
		const selfRotating, annotated, quiet, victims = 6, 4, 10, 20
		nsA, nsB := newNS(s), newNS(s)
		tenantA := tenantClient(s, nsA, "tenant-a")

		By("tenant A may not ask for a rotation every minute")
		err := tenantA.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "every-minute"},
			Spec: kw.APIKeySpec{SecretName: "every-minute", Rotation: &kw.RotationPolicy{Period: metav1.Duration{Duration: time.Minute}}}})
		Expect(err).To(MatchError(ContainSubstring("rotation.period must be between 1h and 87600h")))

		By("tenant A's keys and pair, held by its workloads; tenant B's keys, valid")
		for i := range selfRotating + annotated {
			Expect(tenantA.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: fmt.Sprintf("a-%d", i)},
				Spec: kw.APIKeySpec{SecretName: fmt.Sprintf("a-%d", i)}})).To(Succeed())
		}
		Expect(tenantA.Create(ctx, &kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "a-pair"},
			Spec: kw.AccessKeyPairSpec{Subject: "a-bot", SecretName: "a-pair"}})).To(Succeed())
		for i := range quiet + victims {
			Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: fmt.Sprintf("b-%d", i)},
				Spec: kw.APIKeySpec{SecretName: fmt.Sprintf("b-%d", i)}})).To(Succeed())
		}
		held := make([]string, selfRotating)
		for i := range held {
			held[i] = secretData(s, nsA, fmt.Sprintf("a-%d", i), kw.DeliveryDataKey)
			Eventually(func() string { return verifyCode(s, held[i]) }, 10*time.Second).Should(Equal("VALID"))
		}
		ak := secretData(s, nsA, "a-pair", kw.DeliveryDataAccessKeyID)
		sk := secretData(s, nsA, "a-pair", kw.DeliveryDataSecretKey)
		victimKeys := make([]string, quiet+victims)
		for i := range victimKeys {
			victimKeys[i] = secretData(s, nsB, fmt.Sprintf("b-%d", i), kw.DeliveryDataKey)
			Eventually(func() string { return verifyCode(s, victimKeys[i]) }, 10*time.Second).Should(Equal("VALID"))
		}

		// revoke deletes tenant B's key i and returns how long until the key
		// server refuses it.
		revoke := func(i int) time.Duration {
			start := time.Now()
			Expect(s.k8s.Delete(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: fmt.Sprintf("b-%d", i)}})).To(Succeed())
			Eventually(func() string { return verifyCode(s, victimKeys[i]) }).
				WithTimeout(10 * time.Second).WithPolling(5 * time.Millisecond).Should(Equal("NOT_FOUND"))
			return time.Since(start)
		}
		By("the floor: tenant B deletes keys while nobody bursts")
		floor := make([]time.Duration, 0, quiet)
		for i := range quiet {
			floor = append(floor, revoke(i))
		}
		slices.Sort(floor)
		floorP99 := floor[len(floor)-1] // nearest rank of 10 samples

		By("tenant A bursts: self-rotations, token mints and annotation rotations")
		var stop atomic.Bool
		var wg sync.WaitGroup
		var rotations, mints counts
		var annotations atomic.Int64
		// Each HTTP loop asks 100 times a second, ignoring Retry-After: far
		// above every limit (600 self-rotations and 400 tokens a second). A
		// flood as such is for the gateway and the failure limit; unpaced,
		// this one process would spend on 429s the CPU it shares with the
		// controllers, which a key server replica does not.
		paced := func(loop func()) {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for !stop.Load() {
				loop()
				<-tick.C
			}
		}
		burstStart := time.Now()
		for i := range selfRotating {
			wg.Go(func() {
				defer GinkgoRecover()
				key := held[i]
				paced(func() {
					r := do(s, http.MethodPost, "/v1/keys/current/rotate", nil, map[string]string{"Authorization": "Bearer " + key})
					rotations.add(r)
					if r.status == http.StatusOK {
						var out struct{ Key string }
						_ = json.Unmarshal(r.body, &out)
						key = out.Key
					}
				})
			})
		}
		tokenBody, _ := json.Marshal(map[string]string{"accessKeyID": ak, "secretKey": sk})
		for range 4 {
			wg.Go(func() {
				defer GinkgoRecover()
				paced(func() {
					mints.add(do(s, http.MethodPost, "/v1/tokens", bytes.NewReader(tokenBody), map[string]string{"Content-Type": "application/json"}))
				})
			})
		}
		// Rotate-annotation changes as fast as the API server takes them:
		// the controller acts on 2 per key, then one a minute.
		for i := range annotated {
			wg.Go(func() {
				defer GinkgoRecover()
				ref := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: fmt.Sprintf("a-%d", selfRotating+i)}}
				for n := 0; !stop.Load(); n++ {
					patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"burst-%d"}}}`, kw.AnnotationRotate, n)
					if tenantA.Patch(ctx, ref, client.RawPatch(types.MergePatchType, patch)) == nil {
						annotations.Add(1)
					}
				}
			})
		}
		defer func() { stop.Store(true); wg.Wait() }()
		// The burst is under way before the first deletion.
		Eventually(func() int { return rotations.get(http.StatusOK) + rotations.get(http.StatusTooManyRequests) }, 20*time.Second).
			Should(BeNumerically(">=", selfRotating))

		By("tenant B deletes its keys one after another; each is refused within a second")
		took := make([]time.Duration, 0, victims)
		for i := range victims {
			took = append(took, revoke(quiet+i))
		}
		stop.Store(true)
		wg.Wait()
		elapsed := time.Since(burstStart)

		slices.Sort(took)
		p50, p99 := took[len(took)/2], took[(len(took)*99+99)/100-1] // nearest rank
		report := fmt.Sprintf("attack 10: floor (no burst) p99 %v; %d deletions under the burst: p50 %v, p99 %v, max %v; burst of %v: self-rotations %d rotated, %d limited (429), %d other; tokens %d minted, %d limited; %d rotate-annotation changes",
			floorP99.Round(time.Millisecond), victims, p50.Round(time.Millisecond), p99.Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), elapsed.Round(time.Millisecond),
			rotations.get(200), rotations.get(429), totalOther(&rotations), mints.get(200), mints.get(429), annotations.Load())
		GinkgoWriter.Println(report)
		AddReportEntry("attack 10", report)

		// The target is 1 s p99. A machine whose own floor is slow (CI's two
		// cores running other suites beside this one) is judged against
		// that floor instead, measured in this run: three times it.
		Expect(p99).To(BeNumerically("<=", max(time.Second, 3*floorP99)), "another tenant's deletion was delayed beyond the revocation target")
		// The limits held: per key, a burst of 2 then one a minute; per pair,
		// a burst of 20 then 10 a second; every 429 said when to retry.
		minutes := int(elapsed/time.Minute) + 1
		Expect(rotations.get(200)).To(BeNumerically("<=", selfRotating*(keyserver.DefaultSelfRotationBurst+minutes)))
		Expect(rotations.get(429)).To(BeNumerically(">", 0))
		Expect(mints.get(200)).To(BeNumerically("<=", keyserver.DefaultTokenBurst+int(elapsed/keyserver.DefaultTokenRefill)+1))
		Expect(mints.get(429)).To(BeNumerically(">", 0))
		Expect(rotations.noRetryAfter + mints.noRetryAfter).To(BeZero())
		// The controller acted on 2 annotation changes per key, then one a
		// minute (the record lists every version retired).
		for i := range annotated {
			sec := &corev1.Secret{}
			Expect(s.k8s.Get(ctx, types.NamespacedName{Namespace: s.keys,
				Name: hashsecret.Name(hashsecret.KindAPIKey, nsA, fmt.Sprintf("a-%d", selfRotating+i))}, sec)).To(Succeed())
			rec, err := hashsecret.Decode(sec)
			Expect(err).NotTo(HaveOccurred())
			Expect(len(rec.Retired)).To(BeNumerically("<=", apikey.DefaultRequestedRotationBurst+minutes))
		}
	})
})

func totalOther(c *counts) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for status, k := range c.by {
		if status != http.StatusOK && status != http.StatusTooManyRequests {
			n += k
		}
	}
	return n
}

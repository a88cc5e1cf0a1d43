package admission

import (
	"context"
	"errors"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// limitCap is APIKeyLimit with a cap each spec sets (0 outside them, so the
// suite's other specs create keys freely).
type limitCap struct {
	reader client.Reader
	max    atomic.Int64
}

var limitHook *limitCap

func (l *limitCap) limit() *APIKeyLimit {
	return &APIKeyLimit{Reader: l.reader, Max: int(l.max.Load())}
}

func (l *limitCap) ValidateCreate(ctx context.Context, key *kw.APIKey) (admission.Warnings, error) {
	return l.limit().ValidateCreate(ctx, key)
}

func (l *limitCap) ValidateUpdate(ctx context.Context, old, key *kw.APIKey) (admission.Warnings, error) {
	return l.limit().ValidateUpdate(ctx, old, key)
}

func (l *limitCap) ValidateDelete(ctx context.Context, key *kw.APIKey) (admission.Warnings, error) {
	return l.limit().ValidateDelete(ctx, key)
}

func apiKey(ns, name string) *kw.APIKey {
	return &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kw.APIKeySpec{SecretName: name + "-key"}}
}

// failingReader fails every read: a cap of 0 must not list at all.
type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("listed")
}

var _ = Describe("the APIKey cap per namespace", func() {
	var ns string
	newNS := func() string {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cap-"}}
		Expect(k8s.Create(context.Background(), n)).To(Succeed())
		return n.Name
	}
	BeforeEach(func() { ns = newNS() })
	capAt := func(n int64) {
		limitHook.max.Store(n)
		DeferCleanup(func() { limitHook.max.Store(0) })
	}

	It("refuses a third key when the cap is 2, naming the cap and the keys held", func() {
		capAt(2)
		ctx := context.Background()
		Expect(k8s.Create(ctx, apiKey(ns, "k1"))).To(Succeed())
		Expect(k8s.Create(ctx, apiKey(ns, "k2"))).To(Succeed())
		err := k8s.Create(ctx, apiKey(ns, "k3"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`namespace "` + ns + `" already holds 2 API keys, the most allowed (2): k1, k2; delete one first`))

		other := newNS()
		Expect(k8s.Create(ctx, apiKey(other, "k3"))).To(Succeed(), "another namespace has its own cap")

		Expect(k8s.Delete(ctx, apiKey(ns, "k1"))).To(Succeed())
		Eventually(func() error { return k8s.Create(ctx, apiKey(ns, "k3")) }).Should(Succeed(), "a deleted key frees its place")
	})

	It("has no cap at 0", func() {
		ctx := context.Background()
		for _, name := range []string{"k1", "k2", "k3", "k4"} {
			Expect(k8s.Create(ctx, apiKey(ns, name))).To(Succeed())
		}
	})

	It("does not list the keys when there is no cap", func() {
		_, err := (&APIKeyLimit{Reader: failingReader{}}).ValidateCreate(context.Background(), apiKey(ns, "k"))
		Expect(err).NotTo(HaveOccurred())
		_, err = (&APIKeyLimit{Reader: failingReader{}, Max: 1}).ValidateCreate(context.Background(), apiKey(ns, "k"))
		Expect(err).To(MatchError(ContainSubstring("listed")), "the reader is used once there is a cap")
	})
})

package admission

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
)

// The webhook is registered with the real API server (envtest's webhook
// install options), which calls it over TLS for every create.
func TestAdmission(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "admission webhooks suite (envtest)")
}

var (
	cfg  *rest.Config
	k8s  client.Client
	stop context.CancelFunc
)

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	s := testenv.StartSuite(GinkgoT(), testenv.StartWithWebhooks)
	cfg, k8s = s.Config, s.Client

	wh := s.Env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: kube.Scheme(), Metrics: metricsOff(), HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir}),
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(SetupPairLimit(mgr, 2)).To(Succeed())
	Expect(SetupAPIKeyReferences(mgr)).To(Succeed())
	// SetupAPIKeyAccess's webhook, counting the requests that reach it.
	accessHook = &accessCalls{APIKeyAccess: &APIKeyAccess{Reader: mgr.GetAPIReader(), Reviews: mgr.GetClient()}}
	Expect(ctrl.NewWebhookManagedBy(mgr, &kw.APIKey{}).WithValidator(accessHook).WithValidatorCustomPath(APIKeyAccessPath).Complete()).To(Succeed())
	// SetupAPIKeyLimit's webhook, with a cap each spec sets.
	limitHook = &limitCap{reader: mgr.GetAPIReader()}
	Expect(ctrl.NewWebhookManagedBy(mgr, &kw.APIKey{}).WithValidator(limitHook).WithValidatorCustomPath(APIKeyLimitPath).Complete()).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	stop = cancel
	go func() { defer GinkgoRecover(); Expect(mgr.Start(ctx)).To(Succeed()) }()
	Eventually(func() error { return mgr.GetWebhookServer().StartedChecker()(nil) }).Should(Succeed())
})

// The manager stops here, before the environment (StartSuite's cleanup).
var _ = AfterSuite(func() {
	if stop != nil {
		stop()
	}
})

func pair(ns, name, subject string) *kw.AccessKeyPair {
	return &kw.AccessKeyPair{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kw.AccessKeyPairSpec{Subject: subject, SecretName: name + "-keys"},
	}
}

var _ = Describe("the access key pair limit", func() {
	var ns string
	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "limit-"}}
		Expect(k8s.Create(context.Background(), n)).To(Succeed())
		ns = n.Name
	})

	It("refuses a third pair for a subject, naming the limit and the pairs it holds", func() {
		ctx := context.Background()
		Expect(k8s.Create(ctx, pair(ns, "alice-1", "alice"))).To(Succeed())
		Expect(k8s.Create(ctx, pair(ns, "alice-2", "alice"))).To(Succeed())
		err := k8s.Create(ctx, pair(ns, "alice-3", "alice"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`subject "alice" already holds 2 access key pairs`))
		Expect(err.Error()).To(ContainSubstring("the most allowed (2): alice-1, alice-2"))
	})

	It("counts per subject and per namespace", func() {
		ctx := context.Background()
		Expect(k8s.Create(ctx, pair(ns, "bob-1", "bob"))).To(Succeed())
		Expect(k8s.Create(ctx, pair(ns, "bob-2", "bob"))).To(Succeed())
		Expect(k8s.Create(ctx, pair(ns, "carol-1", "carol"))).To(Succeed(), "another subject has its own limit")
		other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "limit-"}}
		Expect(k8s.Create(ctx, other)).To(Succeed())
		Expect(k8s.Create(ctx, pair(other.Name, "bob-3", "bob"))).To(Succeed(), "another namespace has its own limit")
	})

	It("uses the pair's name as its subject when none is set", func() {
		ctx := context.Background()
		Expect(k8s.Create(ctx, pair(ns, "dave", ""))).To(Succeed())
		Expect(k8s.Create(ctx, pair(ns, "dave-2", "dave"))).To(Succeed())
		err := k8s.Create(ctx, pair(ns, "dave-3", "dave"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	})
})

func metricsOff() metricsserver.Options { return metricsserver.Options{BindAddress: "0"} }

var _ = Describe("an APIKey's references", func() {
	var ns string
	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "refs-"}}
		Expect(k8s.Create(context.Background(), n)).To(Succeed())
		ns = n.Name
	})

	It("refuses a delivery Secret that belongs to someone else", func() {
		ctx := context.Background()
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "theirs"}})).To(Succeed())
		err := k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "k"}, Spec: kw.APIKeySpec{SecretName: "theirs"}})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.secretName "theirs" names an existing Secret that Keyward does not manage`))
		Expect(k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "k"}, Spec: kw.APIKeySpec{SecretName: "free"}})).To(Succeed())
	})

	It("warns, and still accepts, when the import Secret does not exist yet", func() {
		ctx := context.Background()
		warned := &warningCollector{}
		wcfg := rest.CopyConfig(cfg)
		wcfg.WarningHandler = warned
		wc, err := client.New(wcfg, client.Options{Scheme: kube.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		Expect(wc.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "imp"},
			Spec: kw.APIKeySpec{ImportFrom: &kw.SecretKeyRef{Name: "later"}}})).To(Succeed())
		Expect(warned.messages).To(ContainElement(ContainSubstring(`spec.importFrom: Secret "later" does not exist (yet)`)))
	})
})

type warningCollector struct{ messages []string }

func (w *warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	w.messages = append(w.messages, text)
}

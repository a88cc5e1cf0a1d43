package operator_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

func freePort(g Gomega) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// With --cert-provisioning=self the operator creates a CA and serving
// certificates, injects the CA into the webhook configuration, and both TLS
// servers serve the certificate once it is in their cert dirs (which, in a
// cluster, the kubelet fills from the Secret; here the test plays kubelet).
func TestSelfProvisionedCertificates(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	env, cfg, err := testenv.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	k8s, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "keyward-system-"}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	// The installed configuration, as config/webhook renders it, without a CA.
	webhookCfg := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: operator.WebhookConfigName},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "vaccesskeypair.keys.keyward.dev", AdmissionReviewVersions: []string{"v1"},
			SideEffects: ptr.To(admissionv1.SideEffectClassNone), FailurePolicy: ptr.To(admissionv1.Ignore),
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{
				Namespace: ns.Name, Name: operator.WebhookService, Path: ptr.To("/validate-keys-keyward-dev-v1alpha1-accesskeypair")}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{"keys.keyward.dev"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"accesskeypairs"}}}},
		}},
	}
	g.Expect(k8s.Create(ctx, webhookCfg)).To(Succeed())

	dir := t.TempDir()
	webhookDir, keyServerDir := filepath.Join(dir, "webhook"), filepath.Join(dir, "key-server")
	whPort, ksPort := freePort(g), freePort(g)
	mgr, err := operator.NewManager(cfg, operator.Options{
		EnableControllers: true, EnableKeyServer: true, EnableAdmissionWebhooks: true,
		CertProvisioning: operator.CertsSelf, OperatorNamespace: ns.Name,
		WebhookHost: "127.0.0.1", WebhookPort: whPort, WebhookCertDir: webhookDir,
		KeyServerBindAddress: fmt.Sprintf("127.0.0.1:%d", ksPort), KeyServerCertDir: keyServerDir,
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", MaxPairsPerSubject: 2,
		SigningKeyPeriod: time.Hour, MaxTokenLifetime: time.Hour, SkipControllerNameValidation: true,
	})
	g.Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, c := range []struct {
		secret, dir, service string
		port                 int
		path                 string
	}{
		{operator.KeyServerCertSecret, keyServerDir, operator.KeyServerService, ksPort, "/healthz"},
		{operator.WebhookCertSecret, webhookDir, operator.WebhookService, whPort, "/readyz"},
	} {
		var ca []byte
		g.Eventually(func(g Gomega) {
			sec := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: c.secret}, sec)).To(Succeed())
			g.Expect(sec.Data["tls.crt"]).NotTo(BeEmpty())
			ca = sec.Data["ca.crt"]
			// Play kubelet: project the Secret into the cert dir.
			g.Expect(os.MkdirAll(c.dir, 0o700)).To(Succeed())
			for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
				g.Expect(os.WriteFile(filepath.Join(c.dir, k), sec.Data[k], 0o600)).To(Succeed())
			}
		}).Should(Succeed())

		pool := x509.NewCertPool()
		g.Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
		hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, ServerName: c.service + "." + ns.Name + ".svc", MinVersion: tls.VersionTLS12}}}
		g.Eventually(func(g Gomega) {
			resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d%s", c.port, c.path))
			g.Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
		}).Should(Succeed(), "%s does not serve the self-provisioned certificate", c.service)
	}

	g.Eventually(func(g Gomega) {
		got := &admissionv1.ValidatingWebhookConfiguration{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: operator.WebhookConfigName}, got)).To(Succeed())
		sec := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: operator.WebhookCertSecret}, sec)).To(Succeed())
		g.Expect(got.Webhooks[0].ClientConfig.CABundle).To(Equal(sec.Data["ca.crt"]), "the CA was not injected")
	}).Should(Succeed())

	// Re-applying the install empties the CA bundle; it is injected again.
	got := &admissionv1.ValidatingWebhookConfiguration{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: operator.WebhookConfigName}, got)).To(Succeed())
	ca := got.Webhooks[0].ClientConfig.CABundle
	got.Webhooks[0].ClientConfig.CABundle = nil
	g.Expect(k8s.Update(ctx, got)).To(Succeed())
	g.Eventually(func(g Gomega) []byte {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: operator.WebhookConfigName}, got)).To(Succeed())
		return got.Webhooks[0].ClientConfig.CABundle
	}).Should(Equal(ca), "the CA was not injected again")
}

// Package rbac runs Keyward under the RBAC it ships: the controllers and the
// key server each as their own ServiceAccount, impersonated against a real
// API server that enforces the rendered Roles and ClusterRoles. Every part
// must work with those rights alone, and neither identity may read a Secret
// that delivers plaintext beyond what its job needs (docs/security.md).
package rbac

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

const (
	opNS          = "keyward-system"
	keysNS        = "keyward-keys"
	controllerSA  = "keyward-controller-manager"
	keyServerSA   = "keyward-key-server"
	userNamespace = "team-a"
)

func TestKeywardWorksWithTheRBACItShipsAndNoMore(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	logs := &bytes.Buffer{}
	ctrl.SetLogger(zap.New(zap.WriteTo(&lockedWriter{w: logs})))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("operator logs:\n%s", logs.String())
		}
	})

	env, admin, err := testenv.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	k8s, err := client.New(admin, client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())

	// The identities, their RBAC and the certificate Secrets, as rendered
	// for `make deploy`.
	installIdentities(t, g, ctx, k8s, filepath.Join(env.BinaryAssetsDirectory, "kubectl"))

	// The controller Deployment as shipped: leader election, admission
	// webhooks, and its own serving certificate injected into the webhook
	// configuration (--cert-provisioning=self).
	webhookCertDir := t.TempDir()
	controllers := startManager(t, g, ctx, as(admin, controllerSA), operator.Options{
		EnableControllers: true, LeaderElect: true, LeaderElectionID: "keyward-controllers.keys.keyward.dev",
		EnableAdmissionWebhooks: true, WebhookHost: "127.0.0.1", WebhookPort: freePort(g), WebhookCertDir: webhookCertDir,
		CertProvisioning: operator.CertsSelf,
	})
	keyServerAddr := freeAddr(g)
	certDir := t.TempDir()
	keyServer := startManager(t, g, ctx, as(admin, keyServerSA), operator.Options{
		EnableKeyServer: true, KeyServerBindAddress: keyServerAddr, KeyServerCertDir: certDir,
		CertProvisioning: operator.CertsSelf,
	})
	_, _ = controllers, keyServer
	project(g, ctx, k8s, operator.WebhookCertSecret, webhookCertDir)
	g.Eventually(func(g Gomega) {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: operator.WebhookConfigName}, vwc)).To(Succeed())
		for _, wh := range vwc.Webhooks {
			g.Expect(wh.ClientConfig.CABundle).NotTo(BeEmpty(), "the CA was not injected into webhook %s", wh.Name)
		}
	}).Should(Succeed())

	// A cluster admin grants the namespace its host (the installer's
	// keypolicy-hosts admission policy checks it).
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: userNamespace,
		Annotations: map[string]string{"keys.keyward.dev/hosts": "api.team-a.example.com"}}})).To(Succeed())
	imported := "imported-" + strings.Repeat("x7Kq", 10)
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "legacy-source"},
		StringData: map[string]string{"key": imported},
	})).To(Succeed())
	svc := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "svc"},
		Spec: kw.APIKeySpec{SecretName: "svc-key"}}
	legacy := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "legacy"},
		Spec: kw.APIKeySpec{ImportFrom: &kw.SecretKeyRef{Name: "legacy-source"}}}
	pair := &kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "deployer"},
		Spec: kw.AccessKeyPairSpec{Subject: "deployer", SecretName: "deployer-keys"}}
	for _, obj := range []client.Object{svc, legacy, pair} {
		g.Expect(k8s.Create(ctx, obj)).To(Succeed())
	}
	for _, obj := range []client.Object{svc, legacy, pair} {
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
			var conds []metav1.Condition
			switch o := obj.(type) {
			case *kw.APIKey:
				conds = o.Status.Conditions
			case *kw.AccessKeyPair:
				conds = o.Status.Conditions
			}
			g.Expect(meta.IsStatusConditionTrue(conds, kw.ConditionReady)).To(BeTrue(), "%s is not Ready: %v", obj.GetName(), conds)
		}).Should(Succeed())
	}

	ks := keyServerClient(g, ctx, k8s, keyServerAddr, certDir)
	key := secretValue(g, ctx, k8s, "svc-key", kw.DeliveryDataKey)
	g.Eventually(func() bool { return ks.verify(g, key) }).Should(BeTrue(), "the generated key")
	// Its caches of KeyPolicies and Namespaces sync under its RBAC (readiness
	// waits for both), and it decides by a policy.
	g.Eventually(func() int { status, _ := ks.get(g, "/readyz"); return status }).Should(Equal(http.StatusOK), "the key server's caches sync")
	g.Expect(k8s.Create(ctx, &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "api"},
		Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{"api.team-a.example.com"}}})).To(Succeed())
	g.Eventually(func(g Gomega) {
		status, body := ks.post(g, "/v1/verify", map[string]string{"key": key, "host": "api.team-a.example.com"}, "")
		g.Expect(status).To(Equal(http.StatusOK))
		g.Expect(string(body)).To(And(ContainSubstring(`"valid":true`), ContainSubstring(`"policy":"team-a/api"`)))
	}).Should(Succeed(), "the key server decides by the KeyPolicy")
	g.Eventually(func() bool { return ks.verify(g, imported) }).Should(BeTrue(), "the imported key")
	ak, sk := secretValue(g, ctx, k8s, "deployer-keys", kw.DeliveryDataAccessKeyID), secretValue(g, ctx, k8s, "deployer-keys", kw.DeliveryDataSecretKey)
	g.Eventually(func() int { return ks.token(g, ak, sk) }).Should(Equal(http.StatusOK), "a token for the pair")

	// Self-rotation: the key server writes no Secret, the controller does.
	status, body := ks.post(g, "/v1/keys/current/rotate", nil, "Token "+key)
	g.Expect(status).To(Equal(http.StatusOK), "self-rotation: %s", body)
	var rotated struct{ Key, KeyID string }
	g.Expect(json.Unmarshal(body, &rotated)).To(Succeed())
	g.Expect(rotated.Key).NotTo(Equal(key))
	g.Eventually(func() bool { return ks.verify(g, rotated.Key) }).Should(BeTrue(), "the self-rotated key")
	g.Eventually(func() string { return secretValue(g, ctx, k8s, "svc-key", kw.DeliveryDataKey) }).Should(Equal(rotated.Key),
		"the delivery Secret holds the new key")
	g.Expect(ks.verify(g, key)).To(BeTrue(), "the old key keeps its grace period")

	g.Expect(k8s.Delete(ctx, svc)).To(Succeed())
	g.Eventually(func() bool { return ks.verify(g, rotated.Key) }).Should(BeFalse(), "a deleted key is refused")

	// What RBAC must refuse, asked of the API server that enforces it.
	for _, c := range []struct {
		sa      string
		attr    authzv1.ResourceAttributes
		allowed bool
	}{
		{keyServerSA, secrets("get", userNamespace), false},        // a delivery Secret
		{keyServerSA, secrets("list", ""), false},                  // every Secret
		{keyServerSA, secrets("watch", userNamespace), false},      // a user namespace's Secrets
		{keyServerSA, secrets("create", opNS), false},              // writes no Secret ...
		{keyServerSA, secrets("update", opNS), false},              // ... but its certificate
		{keyServerSA, secrets("delete", opNS), false},              //
		{keyServerSA, secrets("list", opNS), true},                 // hash Secrets, signing keys
		{keyServerSA, apikeys("update", ""), false},                // no spec writes
		{keyServerSA, apikeys("patch", ""), false},                 //
		{keyServerSA, apikeys("patch", "status"), true},            // self-rotation, lastUsedAt
		{controllerSA, secrets("list", ""), false},                 // every Secret
		{controllerSA, secrets("list", userNamespace), false},      // a user namespace's Secrets
		{controllerSA, secrets("watch", userNamespace), false},     //
		{controllerSA, secrets("get", userNamespace), true},        // importFrom, its delivery Secrets
		{controllerSA, secrets("list", opNS), true},                // hash Secrets in its cache
		{keyServerSA, leases("update"), false},                     // not a leader candidate
		{keyServerSA, keypolicies("list", ""), true},               // its own cache of every KeyPolicy
		{keyServerSA, keypolicies("watch", ""), true},              //
		{keyServerSA, keypolicies("get", userNamespace), true},     //
		{keyServerSA, keypolicies("create", userNamespace), false}, // decides by them, never writes one
		{keyServerSA, keypolicies("update", userNamespace), false}, //
		{keyServerSA, keypolicies("delete", userNamespace), false}, //
		{keyServerSA, authzv1.ResourceAttributes{Verb: "patch", Group: kw.GroupVersion.Group, Resource: "keypolicies", Subresource: "status", Namespace: userNamespace}, false}, // their status is the controllers'
		{keyServerSA, namespaces("list"), true},   // labels, for namespaceSelector
		{keyServerSA, namespaces("watch"), true},  //
		{keyServerSA, namespaces("patch"), false}, // labelling a namespace into a selector
		{keyServerSA, namespaces("update"), false},
		{keyServerSA, namespaces("create"), false},
		{controllerSA, authzv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, true}, // admission asks for the requester
	} {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + opNS + ":" + c.sa, Groups: saGroups, ResourceAttributes: &c.attr,
		}}
		g.Expect(k8s.Create(ctx, sar)).To(Succeed())
		g.Expect(sar.Status.Allowed).To(Equal(c.allowed), "%s may %s %s%s in %q", c.sa, c.attr.Verb, c.attr.Resource,
			map[bool]string{true: "/" + c.attr.Subresource, false: ""}[c.attr.Subresource != ""], c.attr.Namespace)
	}
	// The key server's certificate was written under its narrow rule.
	cert := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: opNS, Name: operator.KeyServerCertSecret}, cert)).To(Succeed())
	g.Expect(cert.Data).To(HaveKey("tls.crt"))
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: "system:serviceaccount:" + opNS + ":" + keyServerSA, Groups: saGroups,
		ResourceAttributes: &authzv1.ResourceAttributes{Verb: "update", Resource: "secrets", Namespace: opNS, Name: operator.KeyServerCertSecret},
	}}
	g.Expect(k8s.Create(ctx, sar)).To(Succeed())
	g.Expect(sar.Status.Allowed).To(BeTrue())
}

var saGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + opNS, "system:authenticated"}

func secrets(verb, ns string) authzv1.ResourceAttributes {
	return authzv1.ResourceAttributes{Verb: verb, Resource: "secrets", Namespace: ns}
}

func apikeys(verb, sub string) authzv1.ResourceAttributes {
	return authzv1.ResourceAttributes{Verb: verb, Group: kw.GroupVersion.Group, Resource: "apikeys", Subresource: sub, Namespace: userNamespace}
}

func keypolicies(verb, ns string) authzv1.ResourceAttributes {
	return authzv1.ResourceAttributes{Verb: verb, Group: kw.GroupVersion.Group, Resource: "keypolicies", Namespace: ns}
}

func namespaces(verb string) authzv1.ResourceAttributes {
	a := authzv1.ResourceAttributes{Verb: verb, Resource: "namespaces"}
	if verb != "list" && verb != "watch" && verb != "create" {
		a.Name = userNamespace
	}
	return a
}

func leases(verb string) authzv1.ResourceAttributes {
	return authzv1.ResourceAttributes{Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Namespace: opNS}
}

// as impersonates a ServiceAccount of the operator namespace.
func as(admin *rest.Config, sa string) *rest.Config {
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + opNS + ":" + sa, Groups: saGroups}
	return cfg
}

// installIdentities creates what config/default renders for the operator's
// identities: the namespace, ServiceAccounts, (Cluster)Roles and bindings,
// and the certificate Secrets.
func installIdentities(t *testing.T, g *WithT, ctx context.Context, k8s client.Client, kubectl string) {
	t.Helper()
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(testenv.RepoRoot(), "config", "default")).Output()
	g.Expect(err).NotTo(HaveOccurred())
	want := map[string]bool{"Namespace": true, "ServiceAccount": true, "Role": true, "RoleBinding": true,
		"ClusterRole": true, "ClusterRoleBinding": true, "Secret": true, "ValidatingWebhookConfiguration": true,
		"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true}
	var sas []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil || u.Object == nil || !want[u.GetKind()] {
			continue
		}
		if u.GetKind() == "ServiceAccount" {
			sas = append(sas, u.GetName())
		}
		if u.GetKind() == "ValidatingWebhookConfiguration" {
			// Its Service has no endpoints here: the API server's calls
			// fail, and must not block the test's writes.
			hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
			for _, h := range hooks {
				h.(map[string]any)["failurePolicy"] = "Ignore"
			}
			g.Expect(unstructured.SetNestedSlice(u.Object, hooks, "webhooks")).To(Succeed())
		}
		g.Expect(k8s.Create(ctx, u)).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
	}
	g.Expect(sas).To(ConsistOf(controllerSA, keyServerSA), "the rendered ServiceAccounts are the ones this test impersonates")
}

func startManager(t *testing.T, g *WithT, ctx context.Context, cfg *rest.Config, o operator.Options) context.CancelFunc {
	t.Helper()
	o.OperatorNamespace, o.KeysNamespace = opNS, keysNS
	o.MetricsBindAddress, o.HealthProbeBindAddress = "0", "0"
	o.SkipControllerNameValidation = true
	o.FailureBurst, o.FailureRefill = 1000, time.Millisecond
	mgr, err := operator.NewManager(cfg, o)
	g.Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return cancel
}

func freePort(g *WithT) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func freeAddr(g *WithT) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

func secretValue(g Gomega, ctx context.Context, k8s client.Client, name, key string) string {
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: userNamespace, Name: name}, sec)).To(Succeed())
	return string(sec.Data[key])
}

type keyServer struct {
	base string
	http *http.Client
}

// project writes a certificate Secret into dir once it is filled, as
// kubelet projects a mounted Secret; it returns the Secret's CA.
func project(g *WithT, ctx context.Context, k8s client.Client, secret, dir string) []byte {
	var ca []byte
	g.Eventually(func(g Gomega) {
		sec := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: opNS, Name: secret}, sec)).To(Succeed())
		g.Expect(sec.Data["tls.crt"]).NotTo(BeEmpty())
		for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
			g.Expect(os.WriteFile(filepath.Join(dir, k), sec.Data[k], 0o600)).To(Succeed())
		}
		ca = sec.Data["ca.crt"]
	}).Should(Succeed())
	return ca
}

// keyServerClient trusts the CA the key server provisioned for itself,
// after projecting its certificate Secret into certDir.
func keyServerClient(g *WithT, ctx context.Context, k8s client.Client, addr, certDir string) *keyServer {
	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(project(g, ctx, k8s, operator.KeyServerCertSecret, certDir))).To(BeTrue())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: operator.KeyServerService + "." + opNS + ".svc"}}
	return &keyServer{base: "https://" + addr, http: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

func (ks *keyServer) get(g Gomega, path string) (int, []byte) {
	resp, err := ks.http.Get(ks.base + path)
	if err != nil {
		return 0, []byte(fmt.Sprint(err))
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out
}

func (ks *keyServer) post(g Gomega, path string, body any, auth string) (int, []byte) {
	var rd io.Reader = http.NoBody
	if body != nil {
		raw, err := json.Marshal(body)
		g.Expect(err).NotTo(HaveOccurred())
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(http.MethodPost, ks.base+path, rd)
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := ks.http.Do(req)
	if err != nil {
		return 0, []byte(fmt.Sprint(err))
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out
}

// lockedWriter serialises the managers' log writes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (ks *keyServer) verify(g Gomega, key string) bool {
	status, body := ks.post(g, "/v1/verify", map[string]string{"key": key}, "")
	if status != http.StatusOK {
		return false
	}
	var out struct{ Valid bool }
	g.Expect(json.Unmarshal(body, &out)).To(Succeed())
	return out.Valid
}

func (ks *keyServer) token(g Gomega, accessKeyID, secretKey string) int {
	status, _ := ks.post(g, "/v1/tokens", map[string]string{"accessKeyID": accessKeyID, "secretKey": secretKey}, "")
	return status
}

// The name config/default gives the policy that bounds the controllers'
// Secret writes, and what its refusals say.
const (
	secretsPolicy = "keyward-controller-secrets"
	webhookPolicy = "keyward-controller-webhook-configuration"
)

// A compromised controller (its ServiceAccount's token, or its process)
// tries to turn its rights into cluster-admin's: a token Secret for a
// kube-system account, a write to a Secret that is not Keyward's, another
// admission webhook switched off, or its own webhook configuration turned
// into a tap on every Secret. RBAC and the ValidatingAdmissionPolicy the
// install ships refuse each; the controllers' own work goes on under them.
func TestAttack8TurningTheControllersIdentityIntoClusterAdmin(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &bytes.Buffer{}
	ctrl.SetLogger(zap.New(zap.WriteTo(&lockedWriter{w: logs})))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("operator logs:\n%s", logs.String())
		}
	})

	env, admin, err := testenv.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	k8s, err := client.New(admin, client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	installIdentities(t, g, ctx, k8s, filepath.Join(env.BinaryAssetsDirectory, "kubectl"))
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: userNamespace}})).To(Succeed())
	ctl, err := client.New(as(admin, controllerSA), client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())

	saToken := func(labelled bool) *corev1.Secret {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "admin-token",
			Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}}, Type: corev1.SecretTypeServiceAccountToken}
		if labelled {
			sec.Labels = map[string]string{"app.kubernetes.io/managed-by": "keyward"}
		}
		return sec
	}
	// The API server loads a new policy asynchronously: wait until it
	// refuses a dry run of the attack, then try it for real.
	g.Eventually(func() error { return ctl.Create(ctx, saToken(false), client.DryRunAll) }).
		Should(MatchError(ContainSubstring(secretsPolicy)), "a token Secret for a kube-system account")
	for _, labelled := range []bool{false, true} {
		err := ctl.Create(ctx, saToken(labelled))
		g.Expect(err).To(MatchError(ContainSubstring(secretsPolicy)), "a token Secret for a kube-system account (labelled: %v)", labelled)
		g.Expect(err).To(MatchError(ContainSubstring("only Opaque Secrets")))
	}

	// A Secret in a tenant namespace that is not Keyward's: not created, not
	// written, not taken over by adding the label, not deleted.
	unlabelled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "planted"},
		Type: corev1.SecretTypeOpaque, StringData: map[string]string{"config": "x"}}
	g.Expect(ctl.Create(ctx, unlabelled)).To(MatchError(ContainSubstring(secretsPolicy)), "an unlabelled Opaque Secret")
	labelledOnly := unlabelled.DeepCopy()
	labelledOnly.Labels = map[string]string{"app.kubernetes.io/managed-by": "keyward"}
	g.Expect(ctl.Create(ctx, labelledOnly)).To(MatchError(ContainSubstring(secretsPolicy)),
		"a labelled Opaque Secret that no APIKey or AccessKeyPair controls")

	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "db-password"},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte("hunter2")}}
	g.Expect(k8s.Create(ctx, foreign)).To(Succeed())
	overwritten := foreign.DeepCopy()
	overwritten.Data["password"] = []byte("attacker")
	g.Expect(ctl.Update(ctx, overwritten)).To(MatchError(ContainSubstring(secretsPolicy)), "overwriting a foreign Secret")
	takenOver := overwritten.DeepCopy()
	takenOver.Labels = map[string]string{"app.kubernetes.io/managed-by": "keyward"}
	g.Expect(ctl.Update(ctx, takenOver)).To(MatchError(ContainSubstring(secretsPolicy)), "labelling a foreign Secret Keyward's")
	g.Expect(ctl.Delete(ctx, foreign)).To(MatchError(ContainSubstring(secretsPolicy)), "deleting a foreign Secret")
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
	g.Expect(foreign.Data["password"]).To(Equal([]byte("hunter2")), "the foreign Secret lost nothing")
	g.Expect(foreign.Labels).To(BeEmpty())

	// Another admission webhook: not readable, not writable.
	other := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "other-policy-engine"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "pods.policy.example.com", AdmissionReviewVersions: []string{"v1"},
			SideEffects:   ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy: ptr.To(admissionregistrationv1.Ignore),
			ClientConfig:  admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://policy.example.com/validate")},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}},
	}
	g.Expect(k8s.Create(ctx, other)).To(Succeed())
	switchedOff := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/webhooks/0/rules/0/operations","value":["CONNECT"]}]`))
	g.Expect(ctl.Patch(ctx, other.DeepCopy(), switchedOff)).To(Satisfy(apierrors.IsForbidden), "switching off another webhook")
	g.Expect(ctl.List(ctx, &admissionregistrationv1.ValidatingWebhookConfigurationList{})).To(Satisfy(apierrors.IsForbidden),
		"listing every webhook configuration")
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(other), other)).To(Succeed())
	g.Expect(other.Webhooks[0].Rules[0].Operations).To(Equal([]admissionregistrationv1.OperationType{admissionregistrationv1.Create}))
	vwc := func(verb, name string) authzv1.ResourceAttributes {
		return authzv1.ResourceAttributes{Verb: verb, Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: name}
	}
	for _, c := range []struct {
		attr    authzv1.ResourceAttributes
		allowed bool
	}{
		{vwc("patch", other.Name), false},
		{vwc("update", other.Name), false},
		{vwc("delete", other.Name), false},
		{vwc("create", ""), false},
		{vwc("list", ""), false},
		{vwc("watch", ""), false},
		{vwc("get", operator.WebhookConfigName), true},  // the CA injection: by name, and
		{vwc("list", operator.WebhookConfigName), true}, // list and watch with a metadata.name field selector
		{vwc("watch", operator.WebhookConfigName), true},
		{vwc("update", operator.WebhookConfigName), true},
		{vwc("delete", operator.WebhookConfigName), false},
		{authzv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingadmissionpolicies", Name: secretsPolicy}, false},
		{authzv1.ResourceAttributes{Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "validatingadmissionpolicybindings", Name: secretsPolicy}, false},
	} {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + opNS + ":" + controllerSA, Groups: saGroups, ResourceAttributes: &c.attr,
		}}
		g.Expect(k8s.Create(ctx, sar)).To(Succeed())
		g.Expect(sar.Status.Allowed).To(Equal(c.allowed), "the controllers may %s %s %q", c.attr.Verb, c.attr.Resource, c.attr.Name)
	}

	// Keyward's own webhook configuration: the controllers write its CA,
	// and nothing else — not a rule that would send them every Secret.
	own := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(ctl.Get(ctx, types.NamespacedName{Name: operator.WebhookConfigName}, own)).To(Succeed())
	everything := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	for what, change := range map[string]func(w *admissionregistrationv1.ValidatingWebhookConfiguration){
		"every Secret sent to Keyward's webhook": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].Rules = append(w.Webhooks[0].Rules, admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}}})
		},
		"Keyward's webhook sent elsewhere": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://attacker.example.com/")}
		},
		"another Service": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].ClientConfig.Service.Namespace = userNamespace
		},
		"a webhook added": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks = append(w.Webhooks, other.Webhooks[0])
		},
		"a webhook removed": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) { w.Webhooks = w.Webhooks[1:] },
		"the failure policy": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
			w.Webhooks[1].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		},
		"the namespace selector": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].NamespaceSelector = everything
		},
		"the object selector": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].ObjectSelector = everything
		},
		"a match condition": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "never", Expression: "false"}}
		},
		"the match policy": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].MatchPolicy = ptr.To(admissionregistrationv1.Exact)
		},
		"the timeout": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].TimeoutSeconds = ptr.To[int32](1)
		},
		"side effects": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].SideEffects = ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun)
		},
		"review version": func(w *admissionregistrationv1.ValidatingWebhookConfiguration) {
			w.Webhooks[0].AdmissionReviewVersions = []string{"v1beta1"}
		},
	} {
		tap := own.DeepCopy()
		change(tap)
		g.Expect(ctl.Update(ctx, tap)).To(MatchError(ContainSubstring(webhookPolicy)), what)
	}
	injected := own.DeepCopy()
	for i := range injected.Webhooks {
		injected.Webhooks[i].ClientConfig.CABundle = []byte("-----BEGIN CERTIFICATE-----\n")
	}
	g.Expect(ctl.Update(ctx, injected)).To(Succeed(), "the CA is the controllers' to write")

	// The controllers' work under the policy: issue, rotate and delete a key
	// and a pair with delivery Secrets.
	startManager(t, g, ctx, as(admin, controllerSA), operator.Options{EnableControllers: true})
	key := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "svc"}, Spec: kw.APIKeySpec{SecretName: "svc-key"}}
	pair := &kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Namespace: userNamespace, Name: "deployer"},
		Spec: kw.AccessKeyPairSpec{Subject: "deployer", SecretName: "deployer-keys"}}
	g.Expect(k8s.Create(ctx, key)).To(Succeed())
	g.Expect(k8s.Create(ctx, pair)).To(Succeed())
	delivered := func(name string) *corev1.Secret {
		sec := &corev1.Secret{}
		g.Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: userNamespace, Name: name}, sec)
		}).Should(Succeed(), "the delivery Secret %s", name)
		g.Expect(sec.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "keyward"))
		g.Expect(sec.Type).To(Equal(corev1.SecretTypeOpaque))
		return sec
	}
	first := delivered("svc-key")
	delivered("deployer-keys")

	// A delivery Secret written before the label, or stripped of it by
	// hand, is still the controllers' to rotate: its controller reference
	// says so, and the rotation puts the label back.
	delete(first.Labels, "app.kubernetes.io/managed-by")
	g.Expect(k8s.Update(ctx, first)).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
	key.Annotations = map[string]string{kw.AnnotationRotate: "now"}
	g.Expect(k8s.Update(ctx, key)).To(Succeed())
	g.Eventually(func() string { return secretValue(g, ctx, k8s, "svc-key", kw.DeliveryDataKey) }).
		ShouldNot(Equal(string(first.Data[kw.DeliveryDataKey])), "the rotated key is delivered")
	delivered("svc-key")

	g.Expect(k8s.Delete(ctx, key)).To(Succeed())
	g.Expect(k8s.Delete(ctx, pair)).To(Succeed())
	for _, name := range []string{"svc-key", "deployer-keys"} {
		g.Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: userNamespace, Name: name}, &corev1.Secret{}))
		}).Should(BeTrue(), "the delivery Secret %s is deleted with its owner", name)
	}
	g.Expect(logs.String()).NotTo(ContainSubstring(secretsPolicy), "no write of the controllers was refused")
}

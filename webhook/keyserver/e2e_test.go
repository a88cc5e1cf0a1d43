package keyserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/keyward/keyward/api/wire"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/logging"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
	"github.com/keyward/keyward/webhook/keyserver"
	"github.com/keyward/keyward/webhook/keyserver/feed"
)

// The key server wired as main.go wires it (operator.NewManager), against a
// real API server: keys declared as objects, checked over HTTP.
func TestKeyServerEndToEnd(t *testing.T) {
	RegisterFailHandler(Fail)
	ctrl.SetLogger(logging.Capped(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true))))
	RunSpecs(t, "key server suite (envtest)")
}

var ctx = context.Background()

// stack is one control plane with the whole operator running against it.
type stack struct {
	env  *envtest.Environment
	cfg  *rest.Config
	k8s  client.Client
	base string // the key server's URL
	web  *http.Client
	opNS string // the operator namespace of the last startOperator
	keys string // and its keys namespace (hash Secrets)
	stop func()
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// startOperator runs controllers and key server (no admission webhooks)
// against env on the given key server port.
func startOperator(s *stack, port int) { startOperatorWith(s, port, nil, nil) }

// startOperatorWith takes a client for the key server (TLS) and changes to
// the options.
func startOperatorWith(s *stack, port int, web *http.Client, mut func(*operator.Options)) {
	opNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "keyward-system-"}}
	Expect(s.k8s.Create(ctx, opNS)).To(Succeed())
	keysNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "keyward-keys-"}}
	Expect(s.k8s.Create(ctx, keysNS)).To(Succeed())
	scheme := "http"
	if web != nil {
		scheme = "https"
	}
	s.base, s.web, s.opNS, s.keys = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), web, opNS.Name, keysNS.Name
	o := operator.Options{
		EnableControllers: true, EnableKeyServer: true,
		KeyServerBindAddress: fmt.Sprintf("127.0.0.1:%d", port), OperatorNamespace: opNS.Name, KeysNamespace: keysNS.Name,
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		TokenIssuer: s.base, MaxTokenLifetime: 24 * time.Hour, SigningKeyPeriod: 24 * time.Hour,
		ExpiringSoonWindow: time.Hour, MaxPairsPerSubject: 2,
		// Every request comes from 127.0.0.1; the limit has its own tests.
		FailureBurst: 1 << 20, FailureRefill: time.Millisecond,
		// These specs are about keys: any valid key passes where no
		// KeyPolicy names the host (the two-team spec runs deny).
		DefaultPolicy:                keypolicy.ModeAllowValidKey,
		SkipControllerNameValidation: true,
	}
	if mut != nil {
		mut(&o)
	}
	mgr, err := operator.NewManager(s.cfg, o)
	Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			GinkgoWriter.Printf("the manager stopped: %v\n", err)
		}
	}()
	s.stop = func() { cancel(); <-done }
	Eventually(func() int { return get(s, "/readyz", nil).status }, 30*time.Second).Should(Equal(200))
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(s *stack, method, path string, body io.Reader, hdr map[string]string) response {
	GinkgoHelper()
	req, err := http.NewRequest(method, s.base+path, body)
	Expect(err).NotTo(HaveOccurred())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	web := http.DefaultClient
	if s.web != nil {
		web = s.web
	}
	resp, err := web.Do(req)
	if err != nil {
		return response{status: -1}
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func get(s *stack, path string, hdr map[string]string) response {
	return do(s, http.MethodGet, path, nil, hdr)
}

func authz(s *stack, key string) int {
	return get(s, "/v1/authz", map[string]string{"Authorization": "Bearer " + key}).status
}

func newNS(s *stack) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ks-"}}
	Expect(s.k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func secretData(s *stack, ns, name, key string) string {
	GinkgoHelper()
	var out string
	Eventually(func(g Gomega) {
		sec := &corev1.Secret{}
		g.Expect(s.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sec)).To(Succeed())
		out = string(sec.Data[key])
		g.Expect(out).NotTo(BeEmpty())
	}, 20*time.Second).Should(Succeed())
	return out
}

// untilRefused polls every 5ms and returns how long the refusal took.
func untilRefused(check func() int) time.Duration {
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if check() == http.StatusUnauthorized {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func newStack(configure func(*envtest.Environment)) *stack {
	env, err := testenv.New()
	Expect(err).NotTo(HaveOccurred())
	if configure != nil {
		configure(env)
	}
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return &stack{env: env, cfg: cfg, k8s: k8s}
}

var _ = Describe("the key server", Ordered, func() {
	var s *stack
	BeforeAll(func() {
		s = newStack(nil)
		startOperator(s, freePort())
		DeferCleanup(func() { s.stop(); Expect(s.env.Stop()).To(Succeed()) })
	})

	It("takes a key from kubectl apply to a working request, and records its last use and usage", func() {
		ns := newNS(s)
		key := &kw.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-reporter"},
			Spec:       kw.APIKeySpec{Scopes: []string{"invoices:read"}, SecretName: "billing-reporter-key", Access: kw.AccessReadOnly},
		}
		Expect(s.k8s.Create(ctx, key)).To(Succeed())
		plain := secretData(s, ns, "billing-reporter-key", kw.DeliveryDataKey)
		Eventually(func() int { return authz(s, plain) }, 10*time.Second).Should(Equal(200))
		r := get(s, "/v1/authz?scope=invoices:read", map[string]string{"Authorization": "apk " + plain})
		Expect(r.status).To(Equal(200))
		Expect(r.header.Get("X-Keyward-Subject")).To(Equal("billing-reporter"))
		r = get(s, "/v1/authz", map[string]string{"X-API-Key": plain, "X-Forwarded-Method": "POST"})
		Expect(r.status).To(Equal(403), "a ReadOnly key must not pass a POST")

		Eventually(func(g Gomega) {
			cur := &kw.APIKey{}
			g.Expect(s.k8s.Get(ctx, client.ObjectKeyFromObject(key), cur)).To(Succeed())
			g.Expect(cur.Status.LastUsedAt).NotTo(BeNil())
			// status.usage with it, in the same batch (the refused POST
			// may fall in the next one, a minute later).
			g.Expect(cur.Status.Usage).NotTo(BeNil())
			g.Expect(cur.Status.Usage.Accepted).To(BeNumerically(">=", 1))
			g.Expect(cur.Status.Usage.Hours).NotTo(BeEmpty())
		}, 30*time.Second).Should(Succeed())
	})

	It("applies a key's allowedCIDRs and rateLimit from its spec, and their changes, without a new key version", func() {
		ns := newNS(s)
		key := &kw.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "limited"},
			Spec:       kw.APIKeySpec{SecretName: "limited-key", AllowedCIDRs: []kw.CIDR{"10.0.0.0/8"}},
		}
		Expect(s.k8s.Create(ctx, key)).To(Succeed())
		plain := secretData(s, ns, "limited-key", kw.DeliveryDataKey)
		// Every request here comes from 127.0.0.1.
		Eventually(func(g Gomega) {
			r := get(s, "/v1/authz", map[string]string{"Authorization": "Bearer " + plain})
			g.Expect(r.status).To(Equal(403))
			g.Expect(r.header.Get("X-Keyward-Code")).To(Equal("CIDR_NOT_ALLOWED"))
		}, 10*time.Second).Should(Succeed())
		cur := &kw.APIKey{}
		Eventually(func(g Gomega) {
			g.Expect(s.k8s.Get(ctx, client.ObjectKeyFromObject(key), cur)).To(Succeed())
			g.Expect(cur.Status.KeyID).NotTo(BeEmpty())
		}, 10*time.Second).Should(Succeed())
		version := cur.Status.KeyID

		cur.Spec.AllowedCIDRs = []kw.CIDR{"127.0.0.0/8"}
		cur.Spec.RateLimit = &kw.RateLimit{Requests: 3, Period: metav1.Duration{Duration: time.Hour}}
		Expect(s.k8s.Update(ctx, cur)).To(Succeed())
		Eventually(func(g Gomega) {
			r := get(s, "/v1/authz", map[string]string{"Authorization": "Bearer " + plain})
			g.Expect(r.status).To(Equal(200))
			g.Expect(r.header.Get("RateLimit-Policy")).To(Equal(`"key";q=3;w=3600`))
		}, 10*time.Second).Should(Succeed())
		Eventually(func() int { return authz(s, plain) }, 10*time.Second).Should(Equal(http.StatusTooManyRequests))
		r := get(s, "/v1/authz", map[string]string{"Authorization": "Bearer " + plain})
		Expect(r.header.Get("X-Keyward-Code")).To(Equal("RATE_LIMITED"))
		Expect(r.header.Get("Retry-After")).NotTo(BeEmpty())

		Expect(s.k8s.Get(ctx, client.ObjectKeyFromObject(key), cur)).To(Succeed())
		cur.Spec.RateLimit = nil
		Expect(s.k8s.Update(ctx, cur)).To(Succeed())
		Eventually(func() int { return authz(s, plain) }, 10*time.Second).Should(Equal(200))
		Expect(s.k8s.Get(ctx, client.ObjectKeyFromObject(key), cur)).To(Succeed())
		Expect(cur.Status.KeyID).To(Equal(version), "a change of limits must not issue a new key version")
		Expect(cur.Status.PreviousKeys).To(BeEmpty())
	})

	It("refuses a key within a second of its deletion or suspension", func() {
		ns := newNS(s)
		for _, name := range []string{"to-delete", "to-suspend"} {
			Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kw.APIKeySpec{SecretName: name}})).To(Succeed())
		}
		del := secretData(s, ns, "to-delete", kw.DeliveryDataKey)
		sus := secretData(s, ns, "to-suspend", kw.DeliveryDataKey)
		Eventually(func() int { return authz(s, del) }, 10*time.Second).Should(Equal(200))
		Eventually(func() int { return authz(s, sus) }, 10*time.Second).Should(Equal(200))

		Expect(s.k8s.Delete(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-delete"}})).To(Succeed())
		took := untilRefused(func() int { return authz(s, del) })
		GinkgoWriter.Printf("deletion took effect after %v\n", took)
		Expect(took).To(BeNumerically("<", time.Second))

		patch := []byte(`{"spec":{"suspended":true}}`)
		Expect(s.k8s.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-suspend"}}, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		took = untilRefused(func() int { return authz(s, sus) })
		GinkgoWriter.Printf("suspension took effect after %v\n", took)
		Expect(took).To(BeNumerically("<", time.Second))
	})

	It("exchanges an access key pair for a token that a service outside verifies with the published documents alone", func() {
		ns := newNS(s)
		pair := &kw.AccessKeyPair{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice-1"},
			Spec:       kw.AccessKeyPairSpec{Subject: "alice", SecretName: "alice-1-keys", Scopes: []string{"reports:read"}},
		}
		Expect(s.k8s.Create(ctx, pair)).To(Succeed())
		ak := secretData(s, ns, "alice-1-keys", kw.DeliveryDataAccessKeyID)
		sk := secretData(s, ns, "alice-1-keys", kw.DeliveryDataSecretKey)

		var tok struct {
			Token     string    `json:"token"`
			TokenType string    `json:"tokenType"`
			ExpiresAt time.Time `json:"expiresAt"`
		}
		Eventually(func(g Gomega) {
			body, _ := json.Marshal(map[string]string{"accessKeyID": ak, "secretKey": sk, "lifetime": "1h"})
			r := do(s, http.MethodPost, "/v1/tokens", bytes.NewReader(body), map[string]string{"Content-Type": "application/json"})
			g.Expect(r.status).To(Equal(200), string(r.body))
			g.Expect(json.Unmarshal(r.body, &tok)).To(Succeed())
		}, 20*time.Second).Should(Succeed())
		Expect(tok.TokenType).To(Equal("Bearer"))

		// Outside the cluster: discovery → jwks_uri → verify with go-jose.
		var disc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		Expect(json.Unmarshal(get(s, "/.well-known/openid-configuration", nil).body, &disc)).To(Succeed())
		resp, err := http.Get(disc.JWKSURI)
		Expect(err).NotTo(HaveOccurred())
		var set jose.JSONWebKeySet
		Expect(json.NewDecoder(resp.Body).Decode(&set)).To(Succeed())
		_ = resp.Body.Close()
		parsed, err := jwt.ParseSigned(tok.Token, []jose.SignatureAlgorithm{jose.ES256})
		Expect(err).NotTo(HaveOccurred())
		keys := set.Key(parsed.Headers[0].KeyID)
		Expect(keys).To(HaveLen(1))
		var claims jwt.Claims
		var custom struct {
			AccessKeyID string   `json:"akid"`
			Scopes      []string `json:"scopes"`
		}
		Expect(parsed.Claims(keys[0].Key, &claims, &custom)).To(Succeed())
		Expect(claims.ValidateWithLeeway(jwt.Expected{Issuer: disc.Issuer, AnyAudience: []string{"keyward"}, Time: time.Now()}, 0)).To(Succeed())
		Expect(claims.Subject).To(Equal("alice"))
		Expect(custom.AccessKeyID).To(Equal(ak))
		Expect(custom.Scopes).To(Equal([]string{"reports:read"}))

		Expect(authz(s, tok.Token)).To(Equal(200))
		Expect(s.k8s.Delete(ctx, pair)).To(Succeed())
		took := untilRefused(func() int { return authz(s, tok.Token) })
		GinkgoWriter.Printf("a deleted pair's token was refused after %v\n", took)
		Expect(took).To(BeNumerically("<", time.Second))
	})

	It("rotates the key it is called with, once, keeping the old one for its grace", func() {
		ns := newNS(s)
		key := &kw.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "self-rotating"},
			Spec: kw.APIKeySpec{SecretName: "self-rotating", Rotation: &kw.RotationPolicy{
				Period: metav1.Duration{Duration: 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour}}},
		}
		Expect(s.k8s.Create(ctx, key)).To(Succeed())
		old := secretData(s, ns, "self-rotating", kw.DeliveryDataKey)
		Eventually(func() int { return authz(s, old) }, 10*time.Second).Should(Equal(200))

		// 503 means "retry": a racing reconcile won; nothing was lost.
		var r response
		Eventually(func() int {
			r = do(s, http.MethodPost, "/v1/keys/current/rotate", nil, map[string]string{"Authorization": "Token " + old})
			return r.status
		}, 10*time.Second).ShouldNot(Equal(http.StatusServiceUnavailable))
		Expect(r.status).To(Equal(200), string(r.body))
		var out struct{ Key, KeyID, PreviousKeyID, Warning string }
		Expect(json.Unmarshal(r.body, &out)).To(Succeed())
		Expect(out.Key).NotTo(Equal(old))
		Expect(out.Warning).To(ContainSubstring("not shown again"))
		Eventually(func() int { return authz(s, out.Key) }, 5*time.Second).Should(Equal(200))
		Expect(authz(s, old)).To(Equal(200), "the old key must work through its grace period")
		r = do(s, http.MethodPost, "/v1/keys/current/rotate", nil, map[string]string{"Authorization": "Token " + old})
		Expect(r.status).To(Equal(http.StatusConflict), "a key in its grace period must not rotate its successor away: %s", r.body)
		Expect(secretData(s, ns, "self-rotating", kw.DeliveryDataKey)).To(Equal(out.Key))
		Eventually(func(g Gomega) {
			cur := &kw.APIKey{}
			g.Expect(s.k8s.Get(ctx, client.ObjectKeyFromObject(key), cur)).To(Succeed())
			g.Expect(cur.Status.KeyID).To(Equal(out.KeyID))
			g.Expect(cur.Status.PreviousKeys).To(ContainElement(HaveField("KeyID", out.PreviousKeyID)))
		}).Should(Succeed())
	})
})

var _ = Describe("kube-apiserver with the TokenReview webhook", Ordered, func() {
	const platformNS = "platform-team" // allow-listed for the cluster-wide group keyward:admins
	var (
		s        *stack
		serverCA *keyserver.TestCA
		trURL    string // the TokenReview listener
	)
	BeforeAll(func() {
		port, trPort := freePort(), freePort()
		for trPort == port {
			trPort = freePort()
		}
		dir := GinkgoT().TempDir()
		// The key server's serving certificate, and a CA of its own that
		// signs kube-apiserver's webhook client certificate only.
		var err error
		serverCA, err = keyserver.NewTestCA("keyward serving")
		Expect(err).NotTo(HaveOccurred())
		clientCA, err := keyserver.NewTestCA("kube-apiserver webhook clients")
		Expect(err).NotTo(HaveOccurred())
		certDir := filepath.Join(dir, "certs")
		Expect(os.Mkdir(certDir, 0o700)).To(Succeed())
		crt, key, err := serverCA.Issue("keyward-key-server", "127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(certDir, "tls.crt"), crt, 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(certDir, "tls.key"), key, 0o600)).To(Succeed())
		clientCAFile := filepath.Join(dir, "client-ca.crt")
		Expect(os.WriteFile(clientCAFile, clientCA.PEM, 0o600)).To(Succeed())
		apiCrt, apiKey, err := clientCA.Issue("kube-apiserver")
		Expect(err).NotTo(HaveOccurred())

		trURL = fmt.Sprintf("https://127.0.0.1:%d%s", trPort, keyserver.TokenReviewPath)
		webhookConfig := filepath.Join(dir, "webhook.kubeconfig")
		b64 := base64.StdEncoding.EncodeToString
		Expect(os.WriteFile(webhookConfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: keyward
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: kube-apiserver
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: webhook
  context: {cluster: keyward, user: kube-apiserver}
current-context: webhook
`, trURL, b64(serverCA.PEM), b64(apiCrt), b64(apiKey)), 0o600)).To(Succeed())
		s = newStack(func(env *envtest.Environment) {
			env.ControlPlane.GetAPIServer().Configure().
				Set("authentication-token-webhook-config-file", webhookConfig).
				Set("authentication-token-webhook-version", "v1").
				Set("authentication-token-webhook-cache-ttl", "100ms")
		})
		Expect(s.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: platformNS}})).To(Succeed())
		startOperatorWith(s, port, httpsClient(serverCA), func(o *operator.Options) {
			o.KeyServerCertDir = certDir
			o.TokenReviewBindAddress = fmt.Sprintf("127.0.0.1:%d", trPort)
			o.TokenReviewClientCA = clientCAFile
			o.TokenReviewClusterGroups = []string{platformNS + "/admins"}
		})
		DeferCleanup(func() { s.stop(); Expect(s.env.Stop()).To(Succeed()) })
	})

	// asKey is a clientset authenticating with a Keyward key alone.
	asKey := func(key string) *kubernetes.Clientset {
		cfg := rest.AnonymousClientConfig(s.cfg)
		cfg.BearerToken = key
		return kubernetes.NewForConfigOrDie(cfg)
	}
	whoami := func(key string) (authnv1.UserInfo, error) {
		r, err := asKey(key).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return authnv1.UserInfo{}, err
		}
		return r.Status.UserInfo, nil
	}
	newKey := func(ns, name string, groups ...string) string {
		Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: kw.APIKeySpec{Groups: groups, SecretName: name}})).To(Succeed())
		return secretData(s, ns, name, kw.DeliveryDataKey)
	}

	It("attack 5: guessing keys online through TokenReview", func() {
		ns := newNS(s)
		plain := newKey(ns, "target")
		// kube-apiserver presents its client certificate and is answered.
		Eventually(func(g Gomega) {
			u, err := whoami(plain)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(u.Username).To(Equal("keyward:" + ns + ":target"))
		}, 20*time.Second).Should(Succeed())

		// A direct caller that trusts the key server but has no client
		// certificate is refused at the handshake.
		body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + plain + `"}}`
		resp, err := httpsClient(serverCA).Post(trURL, "application/json", strings.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			Fail(fmt.Sprintf("a caller without a client certificate was answered: %d %s", resp.StatusCode, b))
		}
		Expect(err.Error()).To(ContainSubstring("tls: certificate required"))
		// And the key server's public port does not serve TokenReview at all.
		r := do(s, http.MethodPost, keyserver.TokenReviewPath, strings.NewReader(body), nil)
		Expect(r.status).To(Equal(http.StatusNotFound), "a caller without a client certificate was answered: %s", r.body)
	})

	It("attack 6: joining another team's RBAC group", func() {
		Expect(s.k8s.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "namespace-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}}}})).To(Succeed())
		Expect(s.k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "keyward-admins"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "namespace-reader"},
			Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "keyward:admins"}}})).To(Succeed())
		tenantNS := newNS(s)
		tenant := newKey(tenantNS, "intruder", "admins")
		platform := newKey(platformNS, "ops", "admins")

		// The allow-listed namespace's key holds the cluster-wide group.
		Eventually(func() error {
			_, err := asKey(platform).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		}, 20*time.Second).Should(Succeed())

		// The tenant's key authenticates, in its own namespace's group only.
		var u authnv1.UserInfo
		Eventually(func() (err error) { u, err = whoami(tenant); return err }, 20*time.Second).Should(Succeed())
		Expect(u.Groups).To(ConsistOf("keyward:"+tenantNS+":admins", "keyward:authenticated", "system:authenticated"))
		_, err := asKey(tenant).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a tenant's key joined keyward:admins: %v", err)
	})

	It("authenticates requests bearing an API key as its subject, for RBAC to decide, until the key is deleted", func() {
		ns := newNS(s)
		Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci-bot"},
			Spec: kw.APIKeySpec{Subject: "ci-bot", Groups: []string{"ci"}, SecretName: "ci-bot-key"}})).To(Succeed())
		plain := secretData(s, ns, "ci-bot-key", kw.DeliveryDataKey)
		Expect(s.k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pod-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}}})).To(Succeed())
		Expect(s.k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci-bot"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
			Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "keyward:" + ns + ":ci-bot"}}})).To(Succeed())

		cs := asKey(plain)
		Eventually(func() error {
			_, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return err
		}, 20*time.Second).Should(Succeed())
		_, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "RBAC bound only %s; got %v", ns, err)
		Expect(err.Error()).To(ContainSubstring(`User "keyward:` + ns + `:ci-bot"`))

		Expect(s.k8s.Delete(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci-bot"}})).To(Succeed())
		Eventually(func() error {
			_, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			if apierrors.IsUnauthorized(err) {
				return nil
			}
			return fmt.Errorf("still answered %v after the key's deletion", err)
		}, 30*time.Second).Should(Succeed())
	})

	It("keeps answering from its cache while the API server is down, and converges when it is back", func() {
		ns := newNS(s)
		Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "steady"}, Spec: kw.APIKeySpec{SecretName: "steady"}})).To(Succeed())
		plain := secretData(s, ns, "steady", kw.DeliveryDataKey)
		Eventually(func() int { return authz(s, plain) }, 10*time.Second).Should(Equal(200))

		// Freeze kube-apiserver (SIGSTOP): to its clients it is simply gone.
		pid := apiServerPID(s.env)
		Expect(syscall.Kill(pid, syscall.SIGSTOP)).To(Succeed())
		DeferCleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		probe := rest.CopyConfig(s.cfg)
		probe.Timeout = 500 * time.Millisecond
		_, err := kubernetes.NewForConfigOrDie(probe).CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		Expect(err).To(HaveOccurred(), "the API server is still up")
		for range 20 {
			Expect(authz(s, plain)).To(Equal(200))
			body := strings.NewReader(`{"key":"` + plain + `"}`)
			Expect(string(do(s, http.MethodPost, "/v1/verify", body, nil).body)).To(ContainSubstring(`"valid":true`))
			Expect(authz(s, plain+"x")).To(Equal(401))
			time.Sleep(100 * time.Millisecond)
		}

		// It comes back: the controllers, which backed off, converge.
		Expect(syscall.Kill(pid, syscall.SIGCONT)).To(Succeed())
		Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "after-outage"}, Spec: kw.APIKeySpec{SecretName: "after-outage"}})).To(Succeed())
		fresh := secretData(s, ns, "after-outage", kw.DeliveryDataKey)
		Eventually(func() int { return authz(s, fresh) }, 20*time.Second).Should(Equal(200))
		Expect(authz(s, plain)).To(Equal(200))
	})
})

// httpsClient trusts ca and presents certs.
func httpsClient(ca *keyserver.TestCA, certs ...tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(ca.PEM)).To(BeTrue())
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
}

// apiServerPID finds the envtest kube-apiserver by its secure port.
func apiServerPID(env *envtest.Environment) int {
	GinkgoHelper()
	want := fmt.Sprintf("--secure-port=%d", env.ControlPlane.APIServer.SecurePort)
	entries, err := os.ReadDir("/proc")
	Expect(err).NotTo(HaveOccurred())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte("kube-apiserver")) && bytes.Contains(cmd, []byte(want)) {
			return pid
		}
	}
	Fail("kube-apiserver process not found")
	return 0
}

var _ = Describe("a key expiring while every controller is stopped", Ordered, func() {
	It("is refused by the key server at the instant of expiry, from the hash Secret alone", func() {
		s := newStack(nil)
		DeferCleanup(func() { Expect(s.env.Stop()).To(Succeed()) })
		startOperator(s, freePort())
		ns := newNS(s)
		expiry := time.Now().Add(24 * time.Hour).Truncate(time.Second)
		Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mortal"},
			Spec: kw.APIKeySpec{SecretName: "mortal", ExpiresAt: &metav1.Time{Time: expiry}}})).To(Succeed())
		plain := secretData(s, ns, "mortal", kw.DeliveryDataKey)
		Eventually(func() int { return authz(s, plain) }, 10*time.Second).Should(Equal(200))
		s.stop() // no controller runs from here on

		// A key-server-only manager whose clock the test moves.
		clk := clocktesting.NewFakeClock(expiry.Add(-time.Minute))
		mgr, err := ctrl.NewManager(s.cfg, ctrl.Options{Scheme: kube.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
		Expect(err).NotTo(HaveOccurred())
		port := freePort()
		srv := keyserver.New(keyserver.Options{BindAddress: fmt.Sprintf("127.0.0.1:%d", port), Clock: clk, Issuer: "http://127.0.0.1",
			DefaultPolicy: keypolicy.ModeAllowValidKey})
		Expect(feed.Add(mgr, srv, s.opNS, s.keys)).To(Succeed())
		Expect(mgr.Add(srv)).To(Succeed())
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = mgr.Start(mctx) }()
		DeferCleanup(func() { cancel(); <-done })
		s.base = fmt.Sprintf("http://127.0.0.1:%d", port)
		Eventually(srv.Ready, 20*time.Second).Should(BeTrue())

		Expect(authz(s, plain)).To(Equal(200), "a minute before expiry")
		clk.SetTime(expiry.Add(-time.Nanosecond))
		Expect(authz(s, plain)).To(Equal(200), "a nanosecond before expiry")
		clk.SetTime(expiry)
		Expect(authz(s, plain)).To(Equal(401), "at the instant of expiry")
		body := strings.NewReader(`{"key":"` + plain + `"}`)
		Expect(string(do(s, http.MethodPost, "/v1/verify", body, nil).body)).To(ContainSubstring(`"code":"EXPIRED"`))
	})
})

var _ = Describe("two teams, two KeyPolicies, one key server (issue 14)", Ordered, func() {
	const (
		hostA = "api.team-a.example.com"
		hostB = "api.team-b.example.com"
	)
	var (
		s                *stack
		nsA, nsB, nsSbx  string
		keyA, keyB, keyS string
		grpcAddr         string // the gRPC ext_authz listener, plaintext
	)
	// check asks forward-auth as Envoy does (the original method, the path
	// appended, Host the client's) and returns the status, code and policy.
	check := func(host, path, key string) (int, string, string) {
		GinkgoHelper()
		req, err := http.NewRequest(http.MethodGet, s.base+"/v1/authz"+path, nil)
		Expect(err).NotTo(HaveOccurred())
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(wire.HeaderCode), resp.Header.Get(wire.HeaderPolicy)
	}
	answer := func(host, path, key string) func() []any {
		return func() []any { st, code, pol := check(host, path, key); return []any{st, code, pol} }
	}
	newKey := func(ns, name string) string {
		Expect(s.k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kw.APIKeySpec{SecretName: name}})).To(Succeed())
		return secretData(s, ns, name, kw.DeliveryDataKey)
	}

	BeforeAll(func() {
		s = newStack(nil)
		// As installed: a host no KeyPolicy names is refused.
		grpcAddr = fmt.Sprintf("127.0.0.1:%d", freePort())
		startOperatorWith(s, freePort(), nil, func(o *operator.Options) {
			o.DefaultPolicy = keypolicy.ModeDeny
			o.ExtAuthzGRPCBindAddress = grpcAddr
		})
		DeferCleanup(func() { s.stop(); Expect(s.env.Stop()).To(Succeed()) })
		nsA, nsB, nsSbx = newNS(s), newNS(s), newNS(s)
		Expect(s.k8s.Create(ctx, &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "api"},
			Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{hostA}}})).To(Succeed())
		Expect(s.k8s.Create(ctx, &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "api"},
			Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{hostB}}})).To(Succeed())
		keyA, keyB, keyS = newKey(nsA, "client"), newKey(nsB, "client"), newKey(nsSbx, "client")
	})

	It("opens team-a's host to team-a's key and refuses it on team-b's with WRONG_NAMESPACE", func() {
		Eventually(answer(hostA, "/orders", keyA), 20*time.Second).Should(Equal([]any{200, "", nsA + "/api"}))
		Eventually(answer(hostB, "/orders", keyA), 20*time.Second).Should(Equal([]any{403, "WRONG_NAMESPACE", nsB + "/api"}))
		Expect(answer(hostA, "/", keyB)()).To(Equal([]any{403, "WRONG_NAMESPACE", nsA + "/api"}))
		Expect(answer(hostB, "/", keyB)()).To(Equal([]any{200, "", nsB + "/api"}))
	})

	It("refuses a host without a policy with NO_POLICY", func() {
		Expect(answer("unclaimed.example.com", "/", keyA)()).To(Equal([]any{403, "NO_POLICY", ""}))
		Expect(answer("127.0.0.1", "/", keyA)()).To(Equal([]any{403, "NO_POLICY", ""}))
	})

	It("lets team-a's key through once team-b's policy lists team-a's namespace", func() {
		kp := &kw.KeyPolicy{}
		Expect(s.k8s.Get(ctx, types.NamespacedName{Namespace: nsB, Name: "api"}, kp)).To(Succeed())
		kp.Spec.Keys = &kw.KeyPolicyKeys{Namespaces: []string{nsA}}
		Expect(s.k8s.Update(ctx, kp)).To(Succeed())
		Eventually(answer(hostB, "/orders", keyA), 20*time.Second).Should(Equal([]any{200, "", nsB + "/api"}))
		Expect(answer(hostB, "/orders", keyS)()).To(Equal([]any{403, "WRONG_NAMESPACE", nsB + "/api"}))
	})

	It("accepts the keys of a namespace a selector matches, as soon as it is labelled", func() {
		const hostP = "partners.team-b.example.com"
		Expect(s.k8s.Create(ctx, &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "partners"},
			Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{hostP}, Keys: &kw.KeyPolicyKeys{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"partner.example.com/team-b": "yes"}}}}})).To(Succeed())
		Eventually(answer(hostP, "/", keyS), 20*time.Second).Should(Equal([]any{403, "WRONG_NAMESPACE", nsB + "/partners"}))
		ns := &corev1.Namespace{}
		Expect(s.k8s.Get(ctx, types.NamespacedName{Name: nsSbx}, ns)).To(Succeed())
		ns.Labels = map[string]string{"partner.example.com/team-b": "yes"}
		Expect(s.k8s.Update(ctx, ns)).To(Succeed())
		Eventually(answer(hostP, "/", keyS), 20*time.Second).Should(Equal([]any{200, "", nsB + "/partners"}))
	})

	It("conflict: a newer policy of another namespace naming team-a's host is not applied there", func() {
		const hostS = "sandbox.example.com"
		// Creation times have one-second resolution, and a tie goes to the
		// first namespace/name: let the squatter be newer by the clock.
		older := &kw.KeyPolicy{}
		Expect(s.k8s.Get(ctx, types.NamespacedName{Namespace: nsA, Name: "api"}, older)).To(Succeed())
		Eventually(func() bool { return time.Now().After(older.CreationTimestamp.Add(time.Second)) }, 5*time.Second).Should(BeTrue())
		Expect(s.k8s.Create(ctx, &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: nsSbx, Name: "squatter"},
			Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{hostA, hostS}}})).To(Succeed())
		// Its other host shows the key server has it …
		Eventually(answer(hostS, "/", keyS), 20*time.Second).Should(Equal([]any{200, "", nsSbx + "/squatter"}))
		// … and team-a's host is still decided by team-a's policy.
		Expect(answer(hostA, "/", keyS)()).To(Equal([]any{403, "WRONG_NAMESPACE", nsA + "/api"}))
		Expect(answer(hostA, "/", keyA)()).To(Equal([]any{200, "", nsA + "/api"}))
	})

	It("answers Envoy's gRPC Check with the same codes, from the composition root's listener", func() {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = conn.Close() }()
		Eventually(func() healthpb.HealthCheckResponse_ServingStatus {
			r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: keyserver.ExtAuthzService})
			if err != nil {
				return healthpb.HealthCheckResponse_UNKNOWN
			}
			return r.GetStatus()
		}, 10*time.Second).Should(Equal(healthpb.HealthCheckResponse_SERVING))
		grpcAnswer := func(host, key string) []any {
			resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: http.MethodGet, Path: "/orders", Host: host,
					Headers: map[string]string{":authority": host, ":method": "GET", ":path": "/orders", "authorization": "Bearer " + key},
				}},
			}})
			Expect(err).NotTo(HaveOccurred())
			status, h := 200, map[string]string{}
			opts := resp.GetOkResponse().GetHeaders()
			if d := resp.GetDeniedResponse(); d != nil {
				status, opts = int(d.GetStatus().GetCode()), d.GetHeaders()
			}
			for _, o := range opts {
				h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
			}
			return []any{status, h[wire.HeaderCode], h[wire.HeaderPolicy]}
		}
		for _, c := range []struct{ host, key string }{{hostA, keyA}, {hostB, keyA}, {hostA, keyB}, {"unclaimed.example.com", keyA}, {hostA, "kw_unknown"}} {
			Expect(grpcAnswer(c.host, c.key)).To(Equal(answer(c.host, "/orders", c.key)()), "host %s", c.host)
		}
		Expect(grpcAnswer(hostA, keyA)).To(Equal([]any{200, "", nsA + "/api"}))
	})

	It("answers verify with the same codes, by host or by policy", func() {
		v := func(body map[string]string) wire.VerifyResponse {
			raw, _ := json.Marshal(body)
			r := do(s, http.MethodPost, "/v1/verify", bytes.NewReader(raw), map[string]string{"Content-Type": "application/json"})
			Expect(r.status).To(Equal(200), string(r.body))
			var out wire.VerifyResponse
			Expect(json.Unmarshal(r.body, &out)).To(Succeed())
			return out
		}
		got := v(map[string]string{"key": keyB, "host": hostA, "path": "/orders", "method": "POST"})
		Expect([]any{got.Valid, got.Code, got.Policy}).To(Equal([]any{false, "WRONG_NAMESPACE", nsA + "/api"}))
		got = v(map[string]string{"key": keyA, "policy": nsA + "/api"})
		Expect([]any{got.Valid, got.Code, got.Policy}).To(Equal([]any{true, "VALID", nsA + "/api"}))
		got = v(map[string]string{"key": keyA, "host": "unclaimed.example.com"})
		Expect([]any{got.Valid, got.Code, got.Policy}).To(Equal([]any{false, "NO_POLICY", ""}))
	})
})

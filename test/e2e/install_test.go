//go:build e2e

package e2e

import (
	"bufio"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/testenv"
)

const (
	opNS     = "keyward-system"
	keysNS   = "keyward-keys"
	tenantNS = "e2e-tenant"
	helmNS   = "keyward-helm"
	// The image dist/install.yaml names (make build-installer's default IMG).
	releaseImage = "ghcr.io/keyward/keyward:latest"
)

var restricted = map[string]string{
	"pod-security.kubernetes.io/enforce":         "restricted",
	"pod-security.kubernetes.io/enforce-version": "latest",
}

// installYAML is dist/install.yaml with its image retagged to the one the
// node has (no registry is reachable), as a user pointing it at a mirror would.
func installYAML() string {
	GinkgoHelper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "dist", "install.yaml"))
	Expect(err).NotTo(HaveOccurred(), "dist/install.yaml: run `make build-installer` (hack/e2e/run.sh does)")
	Expect(string(raw)).To(ContainSubstring("image: "+releaseImage), "dist/install.yaml names another image")
	return strings.ReplaceAll(string(raw), "image: "+releaseImage, "image: "+e.image)
}

func installSpecs() {
	Describe("installed from dist/install.yaml", Ordered, func() {
		var ks *keyServer

		It("applies as a user applies it, and both Deployments become Available", func() {
			kubectl(installYAML(), "apply", "--server-side", "-f", "-")
			waitDeploymentAvailable(opNS, "keyward-controller-manager")
			waitDeploymentAvailable(opNS, "keyward-key-server")
		})

		It("runs every pod Ready through its probes, as uid 65532 on a read-only root filesystem", func() {
			checkPods(opNS)
		})

		It("provisions its serving certificates itself and injects the CA into its webhook configuration", func() {
			checkCertificates(opNS)
		})

		It("labels its namespaces for the restricted Pod Security profile, which admitted its pods and refuses others", func() {
			checkPodSecurity(opNS)
			var ns corev1.Namespace
			Expect(k8s.Get(ctx, types.NamespacedName{Name: keysNS}, &ns)).To(Succeed())
			Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
		})

		It("refuses an AccessKeyPair over the per-subject limit at admission, through the webhook Service", func() {
			createNamespace(tenantNS, nil)
			refusesPairOverLimit(tenantNS, "bot")
		})

		It("verifies a key at the key server's ClusterIP over TLS", func() {
			ks = newKeyServer(opNS)
			verifiesAKey(ks, tenantNS, "first")
		})

		It("creates a key shown once and verifies it with the kubectl plugin, against this cluster", func() {
			hosts := filepath.Join(e.dir, "plugin-hosts")
			// The plugin resolves the key server's Service name as a client in
			// the cluster would; this host has no cluster DNS, so the name is
			// mapped to the ClusterIP in a private mount namespace (nothing on
			// the host changes).
			Expect(os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"+ks.clusterIP+" "+ks.host+"\n"), 0o644)).To(Succeed())
			caFile := filepath.Join(e.dir, "key-server-ca.crt")
			Expect(os.WriteFile(caFile, ks.ca, 0o644)).To(Succeed())
			plugin := func(stdin string, args ...string) (string, string, error) {
				all := append([]string{"-m", "--propagation", "private", "sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`, hosts, e.plugin}, args...)
				return tryRun(stdin, "unshare", all...)
			}
			out, errOut, err := plugin("", "create", "apikey", "shown-once", "-n", tenantNS, "--scope", "e2e:read")
			Expect(err).NotTo(HaveOccurred(), "stdout %s\nstderr %s", out, errOut)
			Expect(errOut).To(ContainSubstring("the only time the key is shown"))
			key := strings.TrimSpace(out)
			Expect(strings.Count(key, "\n")).To(BeZero(), "create prints the key alone on stdout")

			var k kw.APIKey
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: tenantNS, Name: "shown-once"}, &k)).To(Succeed())
			Expect(k.Spec.SecretName).To(BeEmpty(), "a shown-once key is delivered to no Secret")
			var secrets corev1.SecretList
			Expect(k8s.List(ctx, &secrets)).To(Succeed())
			for _, s := range secrets.Items {
				for name, v := range s.Data {
					Expect(string(v)).NotTo(ContainSubstring(key), "the plaintext is in Secret %s/%s key %s", s.Namespace, s.Name, name)
				}
			}

			server := []string{"--server", ks.url(""), "--server-ca", caFile}
			out, errOut, err = plugin(key+"\n", append([]string{"verify", "--scope", "e2e:read"}, server...)...)
			Expect(err).NotTo(HaveOccurred(), "stdout %s\nstderr %s", out, errOut)
			Expect(out).To(HavePrefix("valid\n"))
			Expect(out).To(ContainSubstring(k.Status.KeyID))
			out, _, err = plugin(key[:len(key)-4]+"AAAA\n", append([]string{"verify"}, server...)...)
			Expect(err).To(HaveOccurred(), "a wrong key verified: %s", out)
			Expect(out).To(HavePrefix("invalid: "))
		})

		It("authenticates a key to kube-apiserver through the TokenReview webhook at the Service", func() {
			// docs/kube-apiserver.md, as an operator follows it: the client CA's
			// ConfigMap, the key server's CA, a webhook kubeconfig naming the
			// ClusterIP with the Service's name for TLS, kube-apiserver restarted
			// with the flags.
			caPEM, err := os.ReadFile(filepath.Join(e.dir, "pki", "token-review-client-ca.crt"))
			Expect(err).NotTo(HaveOccurred())
			Expect(k8s.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: opNS, Name: "keyward-token-review-client-ca"},
				Data:       map[string]string{"ca.crt": string(caPEM)},
			})).To(Succeed())
			kubectl("", "-n", opNS, "rollout", "restart", "deployment/keyward-key-server")
			waitDeploymentAvailable(opNS, "keyward-key-server")

			dir := filepath.Join(e.dir, "token-review")
			Expect(os.MkdirAll(dir, 0o700)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(dir, "ca.crt"), ks.ca, 0o644)).To(Succeed())
			kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: keyward
    cluster:
      server: https://%s:8444/apis/authentication.k8s.io/v1/tokenreviews
      certificate-authority: %s/ca.crt
      tls-server-name: %s
users:
  - name: kube-apiserver
    user:
      client-certificate: %s/pki/token-review-webhook-client.crt
      client-key: %s/pki/token-review-webhook-client.key
contexts:
  - name: keyward
    context: {cluster: keyward, user: kube-apiserver}
current-context: keyward
`, ks.clusterIP, dir, ks.host, e.dir, e.dir)
			Expect(os.WriteFile(filepath.Join(dir, "webhook.kubeconfig"), []byte(kubeconfig), 0o600)).To(Succeed())
			run("", e.cluster, "restart-apiserver",
				"--authentication-token-webhook-config-file="+filepath.Join(dir, "webhook.kubeconfig"),
				"--authentication-token-webhook-version=v1",
				"--authentication-token-webhook-cache-ttl=1s")

			Expect(k8s.Create(ctx, &kw.APIKey{
				ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "deploy-bot"},
				Spec:       kw.APIKeySpec{Subject: "deploy-bot", Groups: []string{"deployers"}, SecretName: "deploy-bot-key"},
			})).To(Succeed())
			Expect(k8s.Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "configmap-reader"},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}},
			})).To(Succeed())
			Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "deploy-bot"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "configmap-reader"},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "keyward:" + tenantNS + ":deploy-bot"}},
			})).To(Succeed())
			waitIssued(tenantNS, "deploy-bot")
			key, _ := deliveredKey(tenantNS, "deploy-bot-key")

			bearer := func(token string) *kubernetes.Clientset {
				c := &rest.Config{Host: cfg.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: cfg.CAFile}}
				return kubernetes.NewForConfigOrDie(c)
			}
			as := bearer(key)
			Eventually(func(g Gomega) {
				r, err := as.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(r.Status.UserInfo.Username).To(Equal("keyward:" + tenantNS + ":deploy-bot"))
				g.Expect(r.Status.UserInfo.Groups).To(ContainElements("keyward:"+tenantNS+":deployers", "keyward:authenticated", "system:authenticated"))
			}).Should(Succeed())
			_, err = as.CoreV1().ConfigMaps(tenantNS).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			_, err = as.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "listing in default: %v", err)
			_, err = bearer(key[:len(key)-4]+"AAAA").CoreV1().ConfigMaps(tenantNS).List(ctx, metav1.ListOptions{})
			Expect(apierrors.IsUnauthorized(err)).To(BeTrue(), "a wrong key: %v", err)
		})

		It("fails over: the leading controller pod deleted mid-burst of rotations, every key converges to one current version and none is lost", func() {
			waitDeploymentAvailable(opNS, "keyward-controller-manager")
			const n = 12
			name := func(i int) string { return fmt.Sprintf("fo-%d", i) }
			grace := metav1.Duration{Duration: time.Hour}
			for i := range n {
				Expect(k8s.Create(ctx, &kw.APIKey{
					ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: name(i)},
					Spec: kw.APIKeySpec{SecretName: name(i) + "-key",
						Rotation: &kw.RotationPolicy{Period: metav1.Duration{Duration: 720 * time.Hour}, GracePeriod: &grace}},
				})).To(Succeed())
			}
			first := make([]string, n)
			for i := range n {
				k := waitIssued(tenantNS, name(i))
				Eventually(func() string { _, id := deliveredKey(tenantNS, name(i)+"-key"); return id }).Should(Equal(k.Status.KeyID))
				first[i], _ = deliveredKey(tenantNS, name(i)+"-key")
			}

			leader := leaderPod()
			rotate := func(i int, v string) {
				patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kw.AnnotationRotate, v)
				Expect(k8s.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: name(i)}},
					client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
			}
			for i := range n {
				rotate(i, "r1")
				if i == n/2 {
					By("deleting the leader " + leader)
					Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: opNS, Name: leader}})).To(Succeed())
				}
			}
			for i := range n {
				rotate(i, "r2")
			}

			Eventually(func(g Gomega) {
				now := leaderPodG(g)
				g.Expect(now).NotTo(Equal(leader))
			}).Should(Succeed(), "another controller pod leads")
			seen := map[string]bool{}
			for i := range n {
				Eventually(func(g Gomega) {
					var k kw.APIKey
					g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: tenantNS, Name: name(i)}, &k)).To(Succeed())
					g.Expect(k.Status.RotateRequest).To(Equal("r2"))
					g.Expect(meta(k.Status.Conditions, kw.ConditionReady)).To(Equal(metav1.ConditionTrue))
					key, id := deliveredKey(tenantNS, name(i)+"-key")
					g.Expect(id).To(Equal(k.Status.KeyID), "the delivered version is the current one")
					for _, p := range k.Status.PreviousKeys {
						g.Expect(p.KeyID).NotTo(Equal(k.Status.KeyID))
					}
					res, err := ks.verify(key)
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(res.Valid).To(BeTrue(), "the current key of %s: %s", name(i), res.Code)
					g.Expect(res.KeyID).To(Equal(k.Status.KeyID))
					g.Expect(seen[k.Status.KeyID]).To(BeFalse(), "key id %s twice", k.Status.KeyID)
					seen[k.Status.KeyID] = true
				}).Should(Succeed(), name(i))
				res, err := ks.verify(first[i])
				Expect(err).NotTo(HaveOccurred())
				Expect(res.Valid).To(BeTrue(), "the version %s held before the burst was lost (%s)", name(i), res.Code)
			}
			waitDeploymentAvailable(opNS, "keyward-controller-manager")
		})

		It("restarts the key server (3 replicas, the shipped PodDisruptionBudget) under validation load without refusing a valid key", func() {
			var pdb policyv1.PodDisruptionBudget
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: opNS, Name: "keyward-key-server"}, &pdb)).To(Succeed())
			kubectl("", "-n", opNS, "scale", "deployment/keyward-key-server", "--replicas=3")
			waitDeploymentAvailable(opNS, "keyward-key-server")
			keys := make([]string, 12)
			for i := range keys {
				keys[i], _ = deliveredKey(tenantNS, fmt.Sprintf("fo-%d-key", i))
			}
			st := loadDuring(ks, keys, func() {
				kubectl("", "-n", opNS, "rollout", "restart", "deployment/keyward-key-server")
				kubectl("", "-n", opNS, "rollout", "status", "deployment/keyward-key-server", "--timeout=5m")
				waitDeploymentAvailable(opNS, "keyward-key-server")
			})
			report := st.String()
			AddReportEntry("key server rolling restart under load", report)
			fmt.Fprintln(GinkgoWriter, "rolling restart:", report)
			Expect(st.ok.Load()).To(BeNumerically(">", 100), report)
			Expect(st.refused.Load()).To(BeZero(), "valid keys refused during the rollout: "+report)
			Expect(st.failed.Load()).To(BeZero(), "requests that failed even after one retry: "+report)

			By("evicting every key server pod: the PodDisruptionBudget keeps one")
			var pods corev1.PodList
			Expect(k8s.List(ctx, &pods, client.InNamespace(opNS), client.MatchingLabels{"app.kubernetes.io/component": "key-server"})).To(Succeed())
			refused := 0
			for _, p := range pods.Items {
				err := k8s.SubResource("eviction").Create(ctx, &p, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}})
				if apierrors.IsTooManyRequests(err) {
					refused++
					continue
				}
				Expect(err).NotTo(HaveOccurred())
			}
			Expect(refused).To(BeNumerically(">=", 1), "the PodDisruptionBudget let every key server pod be evicted at once")
			waitDeploymentAvailable(opNS, "keyward-key-server")
		})

		It("uninstalls as docs/operations.md says, leaving no key valid and no Keyward object", func() {
			keys := []string{}
			for _, s := range []string{"fo-0-key", "deploy-bot-key"} {
				k, _ := deliveredKey(tenantNS, s)
				keys = append(keys, k)
			}
			kubectl("", "delete", "apikeys,accesskeypairs", "--all", "-A", "--timeout=3m")
			for _, k := range keys {
				Eventually(func(g Gomega) {
					res, err := ks.verify(k)
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(res.Valid).To(BeFalse())
				}).Should(Succeed(), "a key still valid after its APIKey was deleted")
			}
			kubectl(installYAML(), "delete", "-f", "-", "--timeout=5m")
			expectKeywardObjects(nil)
		})
	})
}

func helmSpecs() {
	Describe("installed with the Helm chart", Ordered, func() {
		var ks *keyServer

		It("installs into a fresh namespace labelled restricted, with the same result", func() {
			createNamespace(helmNS, restricted)
			if err := k8s.Get(ctx, types.NamespacedName{Name: tenantNS}, &corev1.Namespace{}); apierrors.IsNotFound(err) {
				createNamespace(tenantNS, nil)
			}
			repo, tag, _ := strings.Cut(e.image, ":")
			run("", e.helm, "install", "keyward", "charts/keyward", "-n", helmNS,
				"--set", "image.repository="+repo, "--set", "image.tag="+tag)
			waitDeploymentAvailable(helmNS, "keyward-controller-manager")
			waitDeploymentAvailable(helmNS, "keyward-key-server")
			checkPods(helmNS)
			checkCertificates(helmNS)
			checkPodSecurity(helmNS)
			refusesPairOverLimit(tenantNS, "helm-bot")
			ks = newKeyServer(helmNS)
			verifiesAKey(ks, tenantNS, "helm-first")
		})

		It("uninstalls leaving no key valid; what helm uninstall leaves goes with the namespace and the CRDs", func() {
			key, _ := deliveredKey(tenantNS, "helm-first-key")
			kubectl("", "delete", "apikeys,accesskeypairs", "--all", "-A", "--timeout=3m")
			Eventually(func(g Gomega) {
				res, err := ks.verify(key)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(res.Valid).To(BeFalse())
			}).Should(Succeed(), "a key still valid after its APIKey was deleted")
			run("", e.helm, "uninstall", "keyward", "-n", helmNS, "--wait", "--timeout=5m")
			// Helm deletes what it rendered. It keeps the CRDs (crds/, by
			// design), and the release namespace, which holds what the
			// operator created at run time: the key server's signing keys and
			// the leader Lease.
			left := []string{"namespace/" + helmNS,
				"Secret/" + helmNS + "/keyward-signing-keys",
				"Lease/" + helmNS + "/keyward-controllers.keys.keyward.dev"}
			for _, k := range []string{"apikeys", "accesskeypairs", "keypolicies"} {
				left = append(left, "customresourcedefinition.apiextensions.k8s.io/"+k+".keys.keyward.dev")
			}
			expectKeywardObjects(left)
			kubectl("", "delete", "namespace", helmNS, "--timeout=3m")
			kubectl("", "delete", "crd", "apikeys.keys.keyward.dev", "accesskeypairs.keys.keyward.dev", "keypolicies.keys.keyward.dev")
			expectKeywardObjects(nil)
		})
	})
}

// checkPods: every Keyward pod Ready, each container with liveness and
// readiness probes, running (as its processes on this host show) as uid
// 65532 on a read-only root filesystem.
func checkPods(ns string) {
	GinkgoHelper()
	var pods corev1.PodList
	Expect(k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "keyward"})).To(Succeed())
	Expect(len(pods.Items)).To(BeNumerically(">=", 4))
	var restarts []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		Expect(meta2(p.Status.Conditions)).To(Equal(corev1.ConditionTrue), "pod %s not Ready", p.Name)
		for _, c := range p.Spec.Containers {
			Expect(c.ReadinessProbe).NotTo(BeNil(), "%s/%s", p.Name, c.Name)
			Expect(c.LivenessProbe).NotTo(BeNil(), "%s/%s", p.Name, c.Name)
		}
		for _, cs := range p.Status.ContainerStatuses {
			Expect(cs.Ready).To(BeTrue())
			restarts = append(restarts, fmt.Sprintf("%s: %d", p.Name, cs.RestartCount))
			pid := containerPid(strings.TrimPrefix(cs.ContainerID, "containerd://"))
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(status)).To(MatchRegexp(`(?m)^Uid:\s+65532\s+65532\s+65532\s+65532$`), "%s runs as another user", p.Name)
			Expect(rootMountOptions(pid)).To(ContainElement("ro"), "%s: root filesystem writable", p.Name)
		}
	}
	AddReportEntry("restarts in "+ns, strings.Join(restarts, ", "))
}

func meta2(conds []corev1.PodCondition) corev1.ConditionStatus {
	for _, c := range conds {
		if c.Type == corev1.PodReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// containerPid finds a container's first process through its cgroup
// (kubelet's cgroupfs layout: …/kubepods/…/pod<uid>/<container id>).
func containerPid(id string) int {
	GinkgoHelper()
	Expect(id).NotTo(BeEmpty())
	var pid int
	err := filepath.WalkDir("/sys/fs/cgroup/pids/kubepods", func(path string, d os.DirEntry, err error) error {
		if err != nil || pid != 0 || !d.IsDir() || filepath.Base(path) != id {
			return err
		}
		raw, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return err
		}
		_, err = fmt.Sscan(string(raw), &pid)
		return err
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(pid).NotTo(BeZero(), "no process of container %s", id)
	return pid
}

func rootMountOptions(pid int) []string {
	GinkgoHelper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 5 && fields[4] == "/" {
			return strings.Split(fields[5], ",")
		}
	}
	Fail("no root mount")
	return nil
}

func checkCertificates(ns string) {
	GinkgoHelper()
	var webhookCA []byte
	for _, c := range []struct{ secret, service string }{
		{"keyward-webhook-server-cert", "keyward-webhook-service"},
		{"keyward-key-server-cert", "keyward-key-server"},
	} {
		var s corev1.Secret
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: c.secret}, &s)).To(Succeed())
			g.Expect(s.Data).To(HaveKey("tls.crt"))
			g.Expect(s.Data).To(HaveKey("ca.crt"))
		}).Should(Succeed())
		block, _ := pem.Decode(s.Data["tls.crt"])
		Expect(block).NotTo(BeNil())
		cert, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM(s.Data["ca.crt"])).To(BeTrue())
		_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: c.service + "." + ns + ".svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		Expect(err).NotTo(HaveOccurred(), "%s does not serve %s.%s.svc under its CA", c.secret, c.service, ns)
		if c.secret == "keyward-webhook-server-cert" {
			webhookCA = s.Data["ca.crt"]
		}
	}
	Eventually(func(g Gomega) {
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "keyward-validating-webhook-configuration"}, &vwc)).To(Succeed())
		g.Expect(vwc.Webhooks).NotTo(BeEmpty())
		for _, w := range vwc.Webhooks {
			g.Expect(w.ClientConfig.Service).NotTo(BeNil())
			g.Expect(w.ClientConfig.Service.Namespace).To(Equal(ns))
			g.Expect(string(w.ClientConfig.CABundle)).To(ContainSubstring(strings.TrimSpace(string(webhookCA))), "webhook %s lacks the CA", w.Name)
		}
	}).Should(Succeed())
}

func checkPodSecurity(ns string) {
	GinkgoHelper()
	var n corev1.Namespace
	Expect(k8s.Get(ctx, types.NamespacedName{Name: ns}, &n)).To(Succeed())
	Expect(n.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
	// The pods above were admitted; a pod breaking the profile is not.
	bad := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-restricted"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: e.image}}},
	}
	err := k8s.Create(ctx, bad, client.DryRunAll)
	Expect(err).To(HaveOccurred())
	Expect(err.Error()).To(ContainSubstring(`violates PodSecurity "restricted:latest"`))
}

func refusesPairOverLimit(ns, subject string) {
	GinkgoHelper()
	pair := func(i int) *kw.AccessKeyPair {
		return &kw.AccessKeyPair{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", subject, i)},
			Spec:       kw.AccessKeyPairSpec{Subject: subject, SecretName: fmt.Sprintf("%s-%d-pair", subject, i)},
		}
	}
	// The webhook's CA may be injected a moment after the pods are Ready.
	Eventually(func() error { return k8s.Create(ctx, pair(0)) }).Should(Succeed())
	Expect(k8s.Create(ctx, pair(1))).To(Succeed())
	err := k8s.Create(ctx, pair(2))
	Expect(err).To(HaveOccurred(), "a third pair for one subject was admitted")
	Expect(err.Error()).To(ContainSubstring("admission webhook"))
	Expect(err.Error()).To(ContainSubstring("denied the request"))
	AddReportEntry("per-subject limit refusal", err.Error())
}

func verifiesAKey(ks *keyServer, ns, name string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &kw.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kw.APIKeySpec{Scopes: []string{"e2e:read"}, SecretName: name + "-key"},
	})).To(Succeed())
	k := waitIssued(ns, name)
	var key, id string
	Eventually(func() string { key, id = deliveredKey(ns, name+"-key"); return id }).Should(Equal(k.Status.KeyID))
	Eventually(func(g Gomega) {
		res, err := ks.verify(key)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Valid).To(BeTrue(), res.Code)
		g.Expect(res.KeyID).To(Equal(k.Status.KeyID))
		g.Expect(res.Namespace).To(Equal(ns))
	}).Should(Succeed())
	res, err := ks.verify(key[:len(key)-4] + "AAAA")
	Expect(err).NotTo(HaveOccurred())
	Expect(res.Valid).To(BeFalse())
}

func leaderPod() string {
	GinkgoHelper()
	var name string
	Eventually(func(g Gomega) { name = leaderPodG(g) }).Should(Succeed())
	return name
}

func leaderPodG(g Gomega) string {
	var l coordinationv1.Lease
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: opNS, Name: "keyward-controllers.keys.keyward.dev"}, &l)).To(Succeed())
	g.Expect(l.Spec.HolderIdentity).NotTo(BeNil())
	pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	g.Expect(pod).NotTo(BeEmpty())
	var p corev1.Pod
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: opNS, Name: pod}, &p)).To(Succeed(), "the lease names %s", pod)
	return pod
}

// loadStats counts a validation load's answers.
type loadStats struct {
	ok, refused, retried, failed atomic.Int64
	mu                           sync.Mutex
	codes, errs                  []string
	elapsed                      time.Duration
}

func (s *loadStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d valid answers in %s (%.0f/s), %d valid keys refused %v, %d transport errors retried once successfully, %d failed after the retry %v",
		s.ok.Load(), s.elapsed.Round(time.Second), float64(s.ok.Load())/s.elapsed.Seconds(), s.refused.Load(), s.codes, s.retried.Load(), s.failed.Load(), firstN(s.errs, 5))
}

func firstN(l []string, n int) []string { return l[:min(n, len(l))] }

// loadDuring verifies valid keys from 4 clients (new connections now and
// then, as many clients would open) while during runs, and 3 s after.
func loadDuring(ks *keyServer, keys []string, during func()) *loadStats {
	GinkgoHelper()
	st := &loadStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%50 == 0 {
					ks.http.CloseIdleConnections()
				}
				key := keys[(w+i)%len(keys)]
				res, err := ks.verify(key)
				if err != nil {
					res, err = ks.verify(key)
					if err != nil {
						st.failed.Add(1)
						st.mu.Lock()
						st.errs = append(st.errs, err.Error())
						st.mu.Unlock()
						continue
					}
					st.retried.Add(1)
				}
				if res.Valid {
					st.ok.Add(1)
				} else {
					st.refused.Add(1)
					st.mu.Lock()
					st.codes = append(st.codes, res.Code)
					st.mu.Unlock()
				}
			}
		}()
	}
	during()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	st.elapsed = time.Since(start)
	return st
}

// expectKeywardObjects waits until the objects of Keyward's left in the
// cluster are exactly want: anything named keyward-* (or, cluster-wide,
// naming keyward) or labelled app.kubernetes.io/name=keyward, any
// keys.keyward.dev CRD, any Secret carrying a Keyward key id.
func expectKeywardObjects(want []string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		out, errOut, err := tryRun("", e.kubectl, "get",
			"customresourcedefinitions,clusterroles,clusterrolebindings,validatingwebhookconfigurations,mutatingwebhookconfigurations,validatingadmissionpolicies,validatingadmissionpolicybindings,namespaces",
			"-o", "name")
		g.Expect(err).NotTo(HaveOccurred(), errOut)
		left := []string{}
		for _, l := range strings.Fields(out) {
			if strings.Contains(l, "keyward") {
				left = append(left, l)
			}
		}
		out, errOut, err = tryRun("", e.kubectl, "get",
			"all,secrets,configmaps,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets,leases",
			"-A", "-o", "custom-columns=KIND:.kind,NS:.metadata.namespace,NAME:.metadata.name,LABEL:.metadata.labels.app\\.kubernetes\\.io/name,KEYID:.metadata.annotations.keys\\.keyward\\.dev/key-id", "--no-headers")
		g.Expect(err).NotTo(HaveOccurred(), errOut)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			if len(f) < 5 {
				continue
			}
			if strings.HasPrefix(f[2], "keyward") || f[3] == "keyward" || f[4] != "<none>" {
				left = append(left, strings.Join(f[:3], "/"))
			}
		}
		if len(want) == 0 {
			g.Expect(left).To(BeEmpty())
		} else {
			g.Expect(left).To(ConsistOf(want))
		}
	}).WithTimeout(5 * time.Minute).Should(Succeed())
}

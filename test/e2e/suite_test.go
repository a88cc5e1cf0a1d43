//go:build e2e

package e2e

import (
	"archive/tar"
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
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/hack/e2e/dockerbuild"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(3 * time.Minute)
	SetDefaultEventuallyPollingInterval(time.Second)
	RunSpecs(t, "Keyward on a real single-node cluster")
}

// e is what hack/e2e/run.sh tells the suite.
var e struct {
	dir, kubectl, helm, image, imageTar, plugin, cluster string
}

var (
	ctx = context.Background()
	cfg *rest.Config
	k8s client.Client
)

var _ = BeforeSuite(func() {
	for name, dst := range map[string]*string{
		"KEYWARD_E2E_DIR": &e.dir, "KEYWARD_E2E_KUBECTL": &e.kubectl, "KEYWARD_E2E_HELM": &e.helm,
		"KEYWARD_E2E_IMAGE": &e.image, "KEYWARD_E2E_IMAGE_TAR": &e.imageTar, "KEYWARD_E2E_PLUGIN": &e.plugin,
		"KEYWARD_E2E_CLUSTER": &e.cluster,
	} {
		*dst = os.Getenv(name)
		if *dst == "" {
			Fail(name + " is not set: run this suite with `make test-e2e` (hack/e2e/run.sh), which brings the node up")
		}
	}
	var err error
	cfg, err = clientcmd.BuildConfigFromFlags("", filepath.Join(e.dir, "admin.kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS, cfg.Burst = 200, 400
	k8s, err = client.New(cfg, client.Options{Scheme: kube.Scheme()})
	Expect(err).NotTo(HaveOccurred())
})

// One ordered run: the image, then the install from dist/install.yaml,
// then (after it is uninstalled) the Helm chart, whose objects have the
// same cluster-wide names.
var _ = Describe("Keyward on a real single-node cluster", Ordered, func() {
	imageSpecs()
	installSpecs()
	helmSpecs()
})

// The image users build is the Dockerfile's; this suite runs an image built
// without Docker. Its binary must be the one the Dockerfile would ship.
func imageSpecs() {
	Describe("the image under test", func() {
		It("holds /keyward built with the Dockerfile's go build flags", func() {
			df, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
			Expect(err).NotTo(HaveOccurred())
			build, err := dockerbuild.Parse(df, dockerbuild.HostArch())
			Expect(err).NotTo(HaveOccurred())
			bin, cfgJSON := imageContents(e.imageTar, "keyward")
			Expect(build.Check(bin)).To(Succeed())
			got, err := dockerbuild.SettingsOf(bin)
			Expect(err).NotTo(HaveOccurred())
			AddReportEntry("image binary build settings", fmt.Sprint(got))
			var c struct {
				Config struct {
					User       string
					Entrypoint []string
				} `json:"config"`
			}
			Expect(json.Unmarshal(cfgJSON, &c)).To(Succeed())
			Expect(c.Config.User).To(Equal("65532:65532"), "the Dockerfile's USER")
			Expect(c.Config.Entrypoint).To(Equal([]string{"/keyward"}), "the Dockerfile's ENTRYPOINT")
		})
	})
}

// imageContents reads an OCI archive written by hack/e2e/image: the file
// name from its one layer and the image config.
func imageContents(archive, name string) (file, config []byte) {
	blobs := map[string][]byte{}
	f, err := os.Open(archive)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		b, err := io.ReadAll(tr)
		Expect(err).NotTo(HaveOccurred())
		blobs[h.Name] = b
	}
	var index struct{ Manifests []struct{ Digest string } }
	Expect(json.Unmarshal(blobs["index.json"], &index)).To(Succeed())
	Expect(index.Manifests).To(HaveLen(1))
	blob := func(d string) []byte { return blobs["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")] }
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	Expect(json.Unmarshal(blob(index.Manifests[0].Digest), &m)).To(Succeed())
	Expect(m.Layers).To(HaveLen(1))
	lr := tar.NewReader(bytes.NewReader(blob(m.Layers[0].Digest)))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		if h.Name == name {
			file, err = io.ReadAll(lr)
			Expect(err).NotTo(HaveOccurred())
		}
	}
	Expect(file).NotTo(BeEmpty(), "no %s in the image", name)
	return file, blob(m.Config.Digest)
}

// run runs a command, failing the spec with its output when it fails.
func run(stdin string, name string, args ...string) string {
	GinkgoHelper()
	out, errOut, err := tryRun(stdin, name, args...)
	Expect(err).NotTo(HaveOccurred(), "%s %s\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), out, errOut)
	return out
}

func tryRun(stdin string, name string, args ...string) (string, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(e.dir, "admin.kubeconfig"))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

func kubectl(stdin string, args ...string) string {
	GinkgoHelper()
	return run(stdin, e.kubectl, args...)
}

// keyServer reaches a key server Service through its ClusterIP, from the
// host (kube-proxy's rules route it), over TLS checked against the CA in
// its self-provisioned Secret, for the Service's DNS name (the certificate
// has no IP address; this host has no cluster DNS).
type keyServer struct {
	ns, clusterIP, host string
	ca                  []byte
	http                *http.Client
}

func newKeyServer(ns string) *keyServer {
	GinkgoHelper()
	var svc corev1.Service
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "keyward-key-server"}, &svc)).To(Succeed())
	var sec corev1.Secret
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "keyward-key-server-cert"}, &sec)).To(Succeed())
	ks := &keyServer{ns: ns, clusterIP: svc.Spec.ClusterIP, host: "keyward-key-server." + ns + ".svc", ca: sec.Data["ca.crt"]}
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(ks.ca)).To(BeTrue(), "ca.crt of keyward-key-server-cert")
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: ks.host, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return dialer.DialContext(ctx, network, net.JoinHostPort(ks.clusterIP, port))
		},
		MaxIdleConnsPerHost: 16,
	}
	ks.http = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return ks
}

func (ks *keyServer) url(path string) string { return "https://" + ks.host + ":8443" + path }

// verify asks /v1/verify about key.
func (ks *keyServer) verify(key string) (wire.VerifyResponse, error) {
	var res wire.VerifyResponse
	body, _ := json.Marshal(map[string]any{"key": key})
	resp, err := ks.http.Post(ks.url("/v1/verify"), "application/json", bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return res, err
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	return res, json.Unmarshal(raw, &res)
}

// waitDeploymentAvailable waits until every replica is updated and
// available.
func waitDeploymentAvailable(ns, name string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var d appsv1.Deployment
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &d)).To(Succeed())
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		g.Expect(d.Status.ObservedGeneration).To(Equal(d.Generation))
		g.Expect(d.Status.UpdatedReplicas).To(Equal(want))
		g.Expect(d.Status.AvailableReplicas).To(Equal(want))
		g.Expect(d.Status.Replicas).To(Equal(want), "old pods still terminating")
		var available bool
		for _, c := range d.Status.Conditions {
			available = available || (c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue)
		}
		g.Expect(available).To(BeTrue())
	}).WithTimeout(5*time.Minute).Should(Succeed(), "deployment %s/%s", ns, name)
}

// waitIssued waits until an APIKey's Ready condition is True and returns it.
func waitIssued(ns, name string) *kw.APIKey {
	GinkgoHelper()
	var k kw.APIKey
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &k)).To(Succeed())
		g.Expect(meta(k.Status.Conditions, kw.ConditionReady)).To(Equal(metav1.ConditionTrue), "Ready of %s/%s: %v", ns, name, k.Status.Conditions)
	}).Should(Succeed())
	return &k
}

func meta(conds []metav1.Condition, t string) metav1.ConditionStatus {
	for _, c := range conds {
		if c.Type == t {
			return c.Status
		}
	}
	return metav1.ConditionUnknown
}

// deliveredKey reads the plaintext of an APIKey's delivery Secret and the
// key version it holds.
func deliveredKey(ns, secret string) (key, keyID string) {
	GinkgoHelper()
	var s corev1.Secret
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: secret}, &s)).To(Succeed())
	return string(s.Data[kw.DeliveryDataKey]), s.Annotations[kw.AnnotationDeliveredKeyID]
}

func createNamespace(name string, labels map[string]string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})).To(Succeed())
}

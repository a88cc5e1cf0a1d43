package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/keyward/keyward/api/wire"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/logging"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

// The plugin's commands, run in-process against a real API server with the
// whole operator (controllers and key server) running.
func TestKubectlKeyward(t *testing.T) {
	RegisterFailHandler(Fail)
	ctrl.SetLogger(logging.Capped(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true))))
	RunSpecs(t, "kubectl-keyward suite (envtest)")
}

var (
	ctx        = context.Background()
	env        *envtest.Environment
	k8s        client.Client
	kubeconfig string // the envtest admin's kubeconfig, as a user would have it
	server     string // the key server's URL
)

var _ = BeforeSuite(func() {
	s := testenv.StartSuite(GinkgoT(), testenv.Start)
	restCfg := s.Config
	env, k8s = s.Env, s.Client

	admin, err := env.AddUser(envtest.User{Name: "keyward-plugin-user", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	raw, err := admin.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	dir, err := os.MkdirTemp("", "kubectl-keyward-kubeconfig-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, raw, 0o600)).To(Succeed())

	// The whole operator, as the key server's end-to-end suite runs it.
	opNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "keyward-system-"}}
	Expect(k8s.Create(ctx, opNS)).To(Succeed())
	port := freePort()
	server = fmt.Sprintf("http://127.0.0.1:%d", port)
	mgr, err := operator.NewManager(restCfg, operator.Options{
		EnableControllers: true, EnableKeyServer: true,
		KeyServerBindAddress: fmt.Sprintf("127.0.0.1:%d", port), OperatorNamespace: opNS.Name,
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		TokenIssuer: server, MaxTokenLifetime: 7 * 24 * time.Hour, SigningKeyPeriod: 24 * time.Hour,
		ExpiringSoonWindow: time.Hour, MaxPairsPerSubject: 2,
		FailureBurst: 1 << 20, FailureRefill: time.Millisecond,
		SkipControllerNameValidation: true,
	})
	Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	DeferCleanup(func() { cancel(); <-done })
	Eventually(func() int {
		resp, err := http.Get(server + "/readyz")
		if err != nil {
			return -1
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}, 30*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
})

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// result is one run of the plugin.
type result struct {
	code   int
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// plugin runs `kubectl keyward ARGS` in namespace ns with stdin, the way
// kubectl would: the kubeconfig, namespace and key server come as flags
// before the command.
func plugin(ns, stdin string, args ...string) result {
	return pluginTTY(ns, stdin, false, args...)
}

func pluginTTY(ns, stdin string, interactive bool, args ...string) result {
	var out, errOut bytes.Buffer
	full := append([]string{"--kubeconfig", kubeconfig, "-n", ns, "--server", server}, args...)
	code := run(ctx, full, streams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut, Interactive: interactive},
		func(string) string { return "" })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func newNS() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "plugin-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func getKey(ns, name string) *kw.APIKey {
	GinkgoHelper()
	key := &kw.APIKey{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, key)).To(Succeed())
	return key
}

// verifyAt asks the key server directly, not through the plugin.
func verifyAt(key string) wire.VerifyResponse {
	GinkgoHelper()
	body, _ := json.Marshal(map[string]string{"key": key})
	resp, err := http.Post(server+"/v1/verify", "application/json", bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	Expect(resp.StatusCode).To(Equal(http.StatusOK), string(raw))
	var out wire.VerifyResponse
	Expect(json.Unmarshal(raw, &out)).To(Succeed())
	return out
}

// secretData waits for a Secret entry to be written.
func secretData(ns, name, key string) string {
	GinkgoHelper()
	var out string
	Eventually(func(g Gomega) {
		sec := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sec)).To(Succeed())
		out = string(sec.Data[key])
		g.Expect(out).NotTo(BeEmpty())
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	return out
}

// filesUnder lists every path below dir.
func filesUnder(dir string) []string {
	GinkgoHelper()
	var out []string
	Expect(filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			out = append(out, p)
		}
		return nil
	})).To(Succeed())
	return out
}

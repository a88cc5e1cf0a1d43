// Command dev runs Keyward on a local control plane: it starts the envtest
// kube-apiserver and etcd, installs the CRDs and samples, and runs the manager
// in the foreground until Ctrl-C, then stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/logging"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
}

func run() error {
	var opts operator.Options
	opts.BindFlags(flag.CommandLine)
	stateDir := flag.String("state-dir", filepath.Join(testenv.RepoRoot(), ".dev"), "Where to write the kubeconfig.")
	zapOpts := zap.Options{Development: true}
	zapOpts.BindFlags(flag.CommandLine)
	// Local defaults: loopback only, no leader election, and a namespace that exists.
	_ = flag.Set("key-server-bind-address", "127.0.0.1:8443")
	_ = flag.Set("ext-authz-grpc-bind-address", "127.0.0.1:50051") // plaintext gRPC: make dev has no cert dir
	_ = flag.Set("metrics-bind-address", "127.0.0.1:8080")
	_ = flag.Set("health-probe-bind-address", "127.0.0.1:8081")
	_ = flag.Set("operator-namespace", "default")
	_ = flag.Set("keys-namespace", "keyward-keys") // as the installer: hash Secrets apart
	// The quickstart's curl has no KeyPolicy to name: any valid key passes
	// on a host no policy names. The installer and the chart run deny.
	_ = flag.Set("default-policy", string(keypolicy.ModeAllowValidKey))
	flag.Parse()
	ctrl.SetLogger(logging.Capped(zap.New(zap.UseFlagOptions(&zapOpts))))

	// Stop on the first signal, and keep stopping on later ones: the control
	// plane must never be left running.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "\nstopping Keyward and the local control plane…")
		cancel()
	}()

	fmt.Fprintf(os.Stderr, "key server: --default-policy=%s%s\n", opts.DefaultPolicy, defaultPolicyNote(opts.DefaultPolicy))
	fmt.Fprintln(os.Stderr, "starting kube-apiserver and etcd…")
	env, cfg, err := testenv.StartWithWebhooks()
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()

	kubeconfig, err := writeKubeconfig(env, *stateDir)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		return err
	}
	if opts.KeysNamespace != "" && opts.KeysNamespace != opts.OperatorNamespace {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.KeysNamespace}}); err != nil {
			return fmt.Errorf("creating the keys namespace: %w", err)
		}
	}

	// The API server calls the admission webhooks at the address and with
	// the CA envtest set up.
	wh := env.WebhookInstallOptions
	opts.WebhookHost, opts.WebhookPort, opts.WebhookCertDir = wh.LocalServingHost, wh.LocalServingPort, wh.LocalServingCertDir
	mgr, err := operator.NewManager(cfg, opts)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- mgr.Start(ctx) }()
	// The samples go through the admission webhooks: wait until they serve.
	if err := waitForWebhooks(ctx, mgr, errc); err != nil {
		return err
	}
	if err := applySamples(ctx, c, filepath.Join(testenv.RepoRoot(), "config", "samples")); err != nil {
		cancel()
		<-errc
		return err
	}
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	fmt.Printf(`
Keyward is running on a local control plane. In another shell:

  export KUBECONFIG=%s
  alias kubectl=%s   # if you have no kubectl of your own
  kubectl get apikeys,accesskeypairs
  kubectl explain apikey.spec

Key server: http://%s
  --default-policy=%s%s
Ctrl-C stops Keyward and the control plane.

`, kubeconfig, kubectl, displayAddr(opts.KeyServerBindAddress), opts.DefaultPolicy, defaultPolicyNote(opts.DefaultPolicy))
	return <-errc
}

// waitForWebhooks waits until the admission webhooks serve, or the manager fails.
func waitForWebhooks(ctx context.Context, mgr ctrl.Manager, errc <-chan error) error {
	started := mgr.GetWebhookServer().StartedChecker()
	for started(nil) != nil {
		select {
		case err := <-errc:
			return fmt.Errorf("the manager stopped before serving: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func writeKubeconfig(env *envtest.Environment, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "dev-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("creating the admin user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// applySamples creates every object of config/samples in the default namespace.
func applySamples(ctx context.Context, c client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "keys_*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if u.GetNamespace() == "" {
				u.SetNamespace("default")
			}
			if err := c.Create(ctx, u); err != nil {
				return fmt.Errorf("creating sample %s: %w", filepath.Base(f), err)
			}
		}
	}
	return nil
}

// defaultPolicyNote says what the default policy means for the quickstart.
func defaultPolicyNote(m keypolicy.Mode) string {
	if m == keypolicy.ModeAllowValidKey {
		return ": any valid key passes on a host no KeyPolicy names.\n  The installer and the chart run deny (403 NO_POLICY); try it with make dev DEV_FLAGS=--default-policy=deny"
	}
	return ": a host no KeyPolicy names is refused (403 NO_POLICY), as installed"
}

func displayAddr(addr string) string {
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	return addr
}

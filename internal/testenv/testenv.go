// Package testenv starts a real kube-apiserver and etcd (envtest) with the
// Keyward CRDs installed, for the envtest suites and for `make dev`.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyward/keyward/internal/kube"
)

// RepoRoot is the module root, found from this file's location so tests in
// any package can reach config/ and hack/.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns KUBEBUILDER_ASSETS, building the assets with
// hack/envtest-assets.sh when it is unset (a cached build answers at once).
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "envtest-assets.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building envtest assets with hack/envtest-assets.sh: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("hack/envtest-assets.sh printed no directory")
	}
	return dir, nil
}

// New returns an envtest environment with the Keyward CRDs, not yet started.
func New() (*envtest.Environment, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                kube.Scheme(),
	}, nil
}

// Start starts an environment from New.
func Start() (*envtest.Environment, *rest.Config, error) {
	env, err := New()
	if err != nil {
		return nil, nil, err
	}
	return start(env)
}

// StartWithWebhooks also registers Keyward's admission webhooks
// (config/webhook) with the API server, pointing at a local serving host,
// port and certificate that env.WebhookInstallOptions describes.
func StartWithWebhooks() (*envtest.Environment, *rest.Config, error) {
	env, err := New()
	if err != nil {
		return nil, nil, err
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{filepath.Join(RepoRoot(), "config", "webhook", "manifests.yaml")}}
	return start(env)
}

func start(env *envtest.Environment) (*envtest.Environment, *rest.Config, error) {
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest (kube-apiserver and etcd from %s): %w", env.BinaryAssetsDirectory, err)
	}
	return env, cfg, nil
}

// StartManager starts a manager for one test: Keyward's scheme and cache
// layout, restricted to namespace ns (and operatorNS, the test's operator
// namespace, for Secrets) so tests cannot disturb each other, no metrics or
// probes. setup registers what the test runs. The returned func stops the
// manager and waits for it, returning its error.
func StartManager(cfg *rest.Config, ns, operatorNS string, setup func(ctrl.Manager) error) (stop func() error, err error) {
	cacheOpts := kube.CacheOptions(operatorNS)
	cacheOpts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 kube.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cacheOpts,
		// Tests start many managers in one process; controller names repeat.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	if err := setup(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() error { cancel(); return <-done }, nil
}

// TB is what StartSuite needs of a test: a *testing.T, or ginkgo's GinkgoT()
// in a BeforeSuite, whose Cleanup runs after the suite (as DeferCleanup).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Suite is what an envtest suite's specs share: the environment, its
// config and a client with Keyward's scheme.
type Suite struct {
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
}

// StartSuite starts an environment with start (Start or
// StartWithWebhooks), builds a client for it and stops the environment in
// t's cleanup, so every envtest suite sets up the same way. It fails t
// rather than returning an error.
func StartSuite(t TB, start func() (*envtest.Environment, *rest.Config, error)) *Suite {
	t.Helper()
	env, cfg, err := start()
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Fatalf("stopping envtest: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		t.Fatalf("creating a client for envtest: %v", err)
		return nil
	}
	return &Suite{Env: env, Config: cfg, Client: c}
}

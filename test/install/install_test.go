// Package install checks that what `make deploy` and `make build-installer`
// produce is accepted by a real API server.
package install

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

func TestConfigDefaultIsAcceptedByTheAPIServer(t *testing.T) {
	env, _, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")

	rendered := render(t, kubectl, "config/default")
	for _, kind := range []string{"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount", "Service"} {
		if !bytes.Contains(rendered, []byte("kind: "+kind)) {
			t.Errorf("config/default renders no %s", kind)
		}
	}
	dryRunApply(t, env, rendered, "config/default")
}

// dryRunApply creates keyward-system and applies rendered with a
// server-side dry run (strict field validation, kubectl's default), failing
// the test with the API server's answer when it refuses any object.
func dryRunApply(t *testing.T, env *envtest.Environment, rendered []byte, what string) {
	t.Helper()
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	// Namespaces first, so the namespaced objects' dry run can resolve
	// them: the operator's, and any the render itself creates.
	apply := env.ControlPlane.KubeCtl()
	namespaces := []string{"keyward-system"}
	for _, o := range parse(t, rendered) {
		if md, _ := o["metadata"].(map[string]any); o["kind"] == "Namespace" && md["name"] != "keyward-system" {
			namespaces = append(namespaces, md["name"].(string))
		}
	}
	for _, ns := range namespaces {
		if _, errOut, err := apply.Run("create", "namespace", ns); err != nil {
			t.Fatalf("creating the namespace %s: %v %s", ns, err, readAll(errOut))
		}
	}
	cmd := exec.Command(kubectl, append(apply.Opts, "apply", "--server-side", "--dry-run=server", "-f", "-")...)
	cmd.Stdin = bytes.NewReader(rendered)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("server-side dry run refused %s: %v\n%s", what, err, msg)
	}
}

func readAll(r interface{ Read([]byte) (int, error) }) string {
	var b bytes.Buffer
	_, _ = b.ReadFrom(r)
	return b.String()
}

// objects renders config/default into unstructured objects.
func objects(t *testing.T, kubectl string) []map[string]any {
	t.Helper()
	return parse(t, render(t, kubectl, "config/default"))
}

// render runs kubectl kustomize on dir, a path relative to the repo root.
func render(t *testing.T, kubectl, dir string) []byte {
	t.Helper()
	rendered, err := exec.Command(kubectl, "kustomize", filepath.Join(testenv.RepoRoot(), filepath.FromSlash(dir))).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr)
	}
	return rendered
}

// parse splits a rendered multi-document YAML into unstructured objects.
func parse(t *testing.T, rendered []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range strings.Split(string(rendered), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

func find(objs []map[string]any, kind, name string) map[string]any {
	for _, o := range objs {
		md, _ := o["metadata"].(map[string]any)
		if o["kind"] == kind && md["name"] == name {
			return o
		}
	}
	return nil
}

func TestTheInstallIsTwoHardenedDeploymentsWithTheNamesTheOperatorUses(t *testing.T) {
	dir, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, filepath.Join(dir, "kubectl"))

	// Names the operator's certificate provisioning relies on.
	for kind, names := range map[string][]string{
		"Secret":                         {operator.WebhookCertSecret, operator.KeyServerCertSecret},
		"Service":                        {operator.WebhookService, operator.KeyServerService},
		"ValidatingWebhookConfiguration": {operator.WebhookConfigName},
	} {
		for _, n := range names {
			if find(objs, kind, n) == nil {
				t.Errorf("config/default has no %s %q, which the operator expects", kind, n)
			}
		}
	}

	cases := map[string]struct {
		deployment, serviceAccount string
		args                       []string
	}{
		"the controllers: leader-elected, no key server": {
			"keyward-controller-manager", "keyward-controller-manager",
			[]string{"--leader-elect", "--enable-key-server=false", "--cert-provisioning=self"},
		},
		"the key server: no controllers, no webhooks, TokenReview on a port of its own for client certificates": {
			"keyward-key-server", "keyward-key-server",
			[]string{"--enable-controllers=false", "--enable-admission-webhooks=false", "--cert-provisioning=self",
				"--token-review-bind-address=:8444", "--token-review-client-ca=/token-review-client-ca/ca.crt",
				"--ext-authz-grpc-bind-address=:50051"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := find(objs, "Deployment", c.deployment)
			if d == nil {
				t.Fatalf("no Deployment %s", c.deployment)
			}
			spec := d["spec"].(map[string]any)
			if spec["replicas"].(float64) < 2 {
				t.Error("fewer than 2 replicas")
			}
			pod := spec["template"].(map[string]any)["spec"].(map[string]any)
			if pod["serviceAccountName"] != strings.TrimPrefix(c.serviceAccount, "keyward-") && pod["serviceAccountName"] != c.serviceAccount {
				t.Errorf("service account %v, want %s", pod["serviceAccountName"], c.serviceAccount)
			}
			psc := pod["securityContext"].(map[string]any)
			if psc["runAsNonRoot"] != true || psc["seccompProfile"].(map[string]any)["type"] != "RuntimeDefault" {
				t.Error("the pod does not meet the restricted profile (runAsNonRoot, seccomp RuntimeDefault)")
			}
			for _, ci := range pod["containers"].([]any) {
				ctr := ci.(map[string]any)
				sc := ctr["securityContext"].(map[string]any)
				if sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true ||
					fmt.Sprint(sc["capabilities"].(map[string]any)["drop"]) != "[ALL]" {
					t.Errorf("container %v is not restricted: %v", ctr["name"], sc)
				}
				res := ctr["resources"].(map[string]any)
				if res["requests"] == nil || res["limits"] == nil {
					t.Errorf("container %v lacks requests or limits", ctr["name"])
				}
				args := fmt.Sprint(ctr["args"])
				for _, a := range c.args {
					if !strings.Contains(args, a) {
						t.Errorf("container %v lacks %s", ctr["name"], a)
					}
				}
			}
		})
	}
	// Envoy's gRPC ext_authz is reachable through the Service, under the
	// name docs/gateways.md's manifests use.
	svc := find(objs, "Service", operator.KeyServerService)
	found := false
	for _, p := range svc["spec"].(map[string]any)["ports"].([]any) {
		p := p.(map[string]any)
		found = found || (p["name"] == "grpc-ext-authz" && p["port"] == float64(50051))
	}
	if !found {
		t.Errorf("the key server's Service has no port grpc-ext-authz 50051: %v", svc["spec"])
	}
	if find(objs, "PodDisruptionBudget", "keyward-key-server") == nil {
		t.Error("the key server has no PodDisruptionBudget")
	}
}

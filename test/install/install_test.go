// Package install checks that what `make deploy` and `make build-installer`
// produce is accepted by a real API server.
package install

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

func TestConfigDefaultIsAcceptedByTheAPIServer(t *testing.T) {
	env, _, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")

	rendered, err := exec.Command(kubectl, "kustomize", filepath.Join(testenv.RepoRoot(), "config", "default")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v", err)
	}
	for _, kind := range []string{"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount", "Service"} {
		if !bytes.Contains(rendered, []byte("kind: "+kind)) {
			t.Errorf("config/default renders no %s", kind)
		}
	}
	// Namespace first, so the namespaced objects' dry run can resolve it.
	apply := env.ControlPlane.KubeCtl()
	out, errOut, err := apply.Run("create", "namespace", "keyward-system")
	if err != nil {
		t.Fatalf("creating the namespace: %v %s", err, readAll(errOut))
	}
	_ = out
	cmd := exec.Command(kubectl, append(apply.Opts, "apply", "--server-side", "--dry-run=server", "-f", "-")...)
	cmd.Stdin = bytes.NewReader(rendered)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("server-side dry run refused config/default: %v\n%s", err, msg)
	}
}

func readAll(r interface{ Read([]byte) (int, error) }) string {
	var b bytes.Buffer
	_, _ = b.ReadFrom(r)
	return b.String()
}

package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// GoBin is the go command: the one on PATH, else the toolchain's that built
// the test.
func GoBin() string {
	if goBin, err := exec.LookPath("go"); err == nil {
		return goBin
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// PeerModule returns the directory of module@version in the module cache,
// downloading it through the Go module proxy when it is not there yet, and
// fails t unless the module's hash is sum. Tests read peer projects' CRDs
// from it for server-side dry runs; the download runs outside any module
// (GOWORK=off, in an empty directory), so nothing is added to go.mod and
// the peer stays no dependency of Keyward.
func PeerModule(t testing.TB, module, version, sum string) string {
	t.Helper()
	cmd := exec.Command(GoBin(), "mod", "download", "-json", module+"@"+version)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	out, err := cmd.Output()
	var mod struct{ Dir, Sum, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil || err != nil || mod.Error != "" {
		t.Fatalf("go mod download %s@%s: %v %s\n%s", module, version, err, mod.Error, out)
	}
	if mod.Sum != sum {
		t.Fatalf("%s@%s has hash %s, want %s", module, version, mod.Sum, sum)
	}
	return mod.Dir
}

// StartWithPeerCRDs starts an API server holding Keyward's CRDs and those
// at paths (files or directories, from PeerModule), for server-side dry
// runs of manifests that name a peer's kinds; it stops when t ends.
func StartWithPeerCRDs(t testing.TB, paths ...string) *envtest.Environment {
	t.Helper()
	env, err := New()
	if err != nil {
		t.Fatal(err)
	}
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, paths...)
	if _, err := env.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env
}

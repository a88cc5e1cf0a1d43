package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cert-manager at the version and hash test/install pins.
const (
	peerModule  = "github.com/cert-manager/cert-manager"
	peerVersion = "v1.21.2"
	peerSum     = "h1:UWgoYM+KLNtRlqmoWOKjKBOBUPVHeepQ6/ac3ERJW68="
)

func TestPeerModuleReturnsTheModuleAtItsPinnedHash(t *testing.T) {
	dir := PeerModule(t, peerModule, peerVersion, peerSum)
	if _, err := os.Stat(filepath.Join(dir, "deploy", "crds", "cert-manager.io_certificates.yaml")); err != nil {
		t.Fatalf("%s is not cert-manager's module: %v", dir, err)
	}
}

func TestPeerModuleFailsOnAnotherHashOrAModuleTheProxyLacks(t *testing.T) {
	for name, tc := range map[string]struct{ module, version, sum, want string }{
		"another hash":       {peerModule, peerVersion, "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "has hash " + peerSum + ", want h1:AAAA"},
		"an unknown version": {peerModule, "v0.0.0-keyward-none", peerSum, "go mod download " + peerModule + "@v0.0.0-keyward-none"},
	} {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{TB: t}
			done := make(chan struct{})
			go func() { defer close(done); PeerModule(rec, tc.module, tc.version, tc.sum) }()
			<-done
			if !strings.Contains(rec.fatal, tc.want) {
				t.Errorf("Fatal %q, want it to say %q", rec.fatal, tc.want)
			}
		})
	}
}

package nginx_test

import (
	"os"
	"testing"

	"github.com/keyward/keyward/test/gatewaytest"
)

// TestAttack7ForgedIdentityAtTheGateway runs the documented nginx block and
// sends a forged identity through it (issue 12, attack 7): X-Keyward-*
// headers, in other cases, repeated, unknown to the key server, and aliased
// with "_", "." or "~". The upstream must see only what the key server set.
func TestAttack7ForgedIdentityAtTheGateway(t *testing.T) {
	nginxBin, err := lookNginx()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not on PATH (nor /usr/sbin/nginx); CI must run .ci/install-nginx.sh before the tests")
		}
		t.Skip("nginx is not on PATH (nor /usr/sbin/nginx): run .ci/install-nginx.sh (as root) to install it")
	}
	dir := t.TempDir()
	ks := gatewaytest.StartKeyServer(t, dir, failureBurst)
	up := gatewaytest.StartRecorder(t)
	base := startNginx(t, nginxBin, dir, gatewaytest.DocumentedBlock(t, docPath, "nginx", docMarker), ks.Addr, up.Addr, ks.CAFile)
	gatewaytest.CheckForgedIdentity(t, gatewaytest.Gateway{Base: base, Protected: "/orders", Public: "/healthz"}, up, ks)
}

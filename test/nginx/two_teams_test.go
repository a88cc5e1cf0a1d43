package nginx_test

import (
	"os"
	"testing"

	"github.com/keyward/keyward/test/gatewaytest"
)

// TestTwoTeamsBehindOneNginx runs the documented block in front of a key
// server holding two teams' KeyPolicies (issue 14, part 6), with nginx's
// address outside --trusted-proxies (the key server reads the Host nginx
// sets) and inside it (it reads X-Forwarded-Host).
func TestTwoTeamsBehindOneNginx(t *testing.T) {
	nginxBin, err := lookNginx()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not on PATH (nor /usr/sbin/nginx); CI must run .ci/install-nginx.sh before the tests")
		}
		t.Skip("nginx is not on PATH (nor /usr/sbin/nginx): run .ci/install-nginx.sh (as root) to install it")
	}
	for name, trusted := range map[string]bool{"nginx not in --trusted-proxies": false, "nginx in --trusted-proxies": true} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ks := gatewaytest.StartTwoTeamsKeyServer(t, dir, failureBurst, trusted)
			up := gatewaytest.StartRecorder(t)
			base := startNginx(t, nginxBin, dir, gatewaytest.DocumentedBlock(t, docPath, "nginx", docMarker), ks.Addr, up.Addr, ks.CAFile)
			gatewaytest.CheckTwoTeams(t, gatewaytest.Gateway{Base: base, Protected: "/orders", Public: "/healthz"}, up, ks)
		})
	}
}

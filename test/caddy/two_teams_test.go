package caddy_test

import (
	"testing"

	"github.com/keyward/keyward/test/gatewaytest"
)

// TestTwoTeamsBehindOneCaddy runs the documented block in front of a key
// server holding two teams' KeyPolicies (issue 14, part 6), with Caddy's
// address outside --trusted-proxies (the key server reads the client's Host,
// which Caddy passes on) and inside it (it reads X-Forwarded-Host).
func TestTwoTeamsBehindOneCaddy(t *testing.T) {
	bin := lookCaddy(t)
	for name, trusted := range map[string]bool{"Caddy not in --trusted-proxies": false, "Caddy in --trusted-proxies": true} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ks := gatewaytest.StartTwoTeamsKeyServer(t, dir, failureBurst, trusted)
			up := gatewaytest.StartRecorder(t)
			base := startCaddy(t, bin, dir, gatewaytest.DocumentedBlock(t, docPath, "caddyfile", docMarker), ks.Addr, up.Addr, ks.CAFile)
			gatewaytest.CheckTwoTeams(t, gatewaytest.Gateway{Base: base, Protected: "/orders", Public: "/healthz"}, up, ks)
		})
	}
}

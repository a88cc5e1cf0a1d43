package traefik_test

import (
	"strings"
	"testing"

	"github.com/keyward/keyward/test/gatewaytest"
)

// docRule is the documented routers' host matcher. The two teams' hosts
// (and one no KeyPolicy names) are not billing.example.com, so the test
// widens it to any host, as the nginx and Caddy blocks are; the
// middlewares, the paths and the routers' order stay as written.
const (
	docRule  = "Host(`billing.example.com`)"
	anyHost  = "HostRegexp(`.+`)"
	ruleUses = 3
)

// TestTwoTeamsBehindOneTraefik runs the documented block in front of a key
// server holding two teams' KeyPolicies (issue 14, part 6), with Traefik in
// --trusted-proxies, as it must be (TestTraefikOutsideTrustedProxies): its
// check request names the original host only in X-Forwarded-Host.
func TestTwoTeamsBehindOneTraefik(t *testing.T) {
	bin := lookTraefik(t)
	dir := t.TempDir()
	ks := gatewaytest.StartTwoTeamsKeyServer(t, dir, failureBurst, true)
	up := gatewaytest.StartRecorder(t)
	block := gatewaytest.DocumentedBlock(t, docPath, "yaml", docMarker)
	if got := strings.Count(block, docRule); got != ruleUses {
		t.Fatalf("the documented Traefik block has %q %d times, want %d: update test/traefik with docs/gateways.md", docRule, got, ruleUses)
	}
	base := startTraefik(t, bin, dir, strings.ReplaceAll(block, docRule, anyHost), ks, up.Addr)
	gatewaytest.CheckTwoTeams(t, gatewaytest.Gateway{Base: base, Protected: "/orders", Public: "/healthz"}, up, ks)
}

package keypolicy

import (
	"testing"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// billing protects /admin with a scope, everything else with any billing key.
func billingTable(hostNames ...string) *Table {
	return Build([]kw.KeyPolicy{*kp("billing/api", hosts(hostNames...), rules(
		kw.KeyPolicyRule{PathPrefix: "/admin", RequiredScopes: []string{"admin"}},
		kw.KeyPolicyRule{PathPrefix: "/"},
	))})
}

func rvBillingKey() Identity {
	return Identity{Kind: APIKey, Namespace: "billing", Subject: "clerk"}
}

// R1: rule prefixes are matched case-sensitively; Express (default) and
// ASP.NET Core route /ADMIN to /admin.
func TestAttackAnUpperCasePathSkipsARule(t *testing.T) {
	tb := billingTable("billing.example.com")
	for _, p := range []string{"/admin/users", "/ADMIN/users", "/Admin/users", "/%41dmin/users"} {
		d := Decide(Input{Method: "GET", Target: tb.Select("billing.example.com", p), Identity: rvBillingKey()})
		if d.Allowed() {
			t.Errorf("%s: allowed without scope admin (rule %d)", p, d.Rule)
		}
	}
}

// R2: methods are compared case-sensitively; Caddy/Traefik (Go) pass a
// lowercase method, Django/werkzeug upper-case it.
func TestAttackALowerCaseMethodSkipsARule(t *testing.T) {
	tb := Build([]kw.KeyPolicy{*kp("billing/api", hosts("billing.example.com"), rules(
		kw.KeyPolicyRule{PathPrefix: "/invoices", Methods: methods("DELETE"), RequiredScopes: []string{"invoices:delete"}},
		kw.KeyPolicyRule{PathPrefix: "/"},
	))})
	for _, m := range []string{"DELETE", "delete", "Delete"} {
		d := Decide(Input{Method: m, Target: tb.Select("billing.example.com", "/invoices/7"), Identity: rvBillingKey()})
		if d.Allowed() {
			t.Errorf("%s /invoices/7: allowed without invoices:delete (rule %d)", m, d.Rule)
		}
	}
}

// R3: a rule naming GET does not cover HEAD (served by the GET handler in
// Go's ServeMux, Express, Django, Flask...).
func TestAttackHEADSkipsAGETRule(t *testing.T) {
	tb := Build([]kw.KeyPolicy{*kp("billing/api", hosts("billing.example.com"), rules(
		kw.KeyPolicyRule{PathPrefix: "/reports", Methods: methods("GET"), RequiredScopes: []string{"reports:read"}},
		kw.KeyPolicyRule{PathPrefix: "/"},
	))})
	d := Decide(Input{Method: "HEAD", Target: tb.Select("billing.example.com", "/reports/q3"), Identity: rvBillingKey()})
	if d.Allowed() {
		t.Errorf("HEAD /reports/q3: allowed without reports:read (rule %d)", d.Rule)
	}
}

// R4: a wildcard covers one label only; nginx and Envoy route
// "*.billing.example.com" at any depth. Under allow-valid-key a sandbox key
// then opens billing.
func TestAttackADeepSubdomainEscapesAWildcard(t *testing.T) {
	tb := billingTable("*.billing.example.com")
	sandbox := Identity{Kind: APIKey, Namespace: "sandbox", Subject: "x"}
	for _, h := range []string{"api.billing.example.com", "a.api.billing.example.com"} {
		d := Decide(Input{Method: "GET", Target: tb.Select(h, "/"), Identity: sandbox, Default: ModeAllowValidKey})
		if d.Allowed() {
			t.Errorf("%s: sandbox key allowed (policy %q)", h, d.Policy)
		}
	}
}

package keypolicy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

func TestCompileInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		policy *kw.KeyPolicy
		// invalid is a substring of Invalid(); "" means valid.
		invalid string
	}{
		"a policy naming only a host is valid": {kp("billing/api"), ""},
		"the rules of the sample are valid": {kp("billing/api", keysOf("reporting"), rules(
			kw.KeyPolicyRule{PathPrefix: "/admin", Groups: names("billing-admins")},
			kw.KeyPolicyRule{PathPrefix: "/invoices", Methods: methods("GET", "HEAD"), RequiredScopes: []string{"invoices:read"}},
			kw.KeyPolicyRule{PathPrefix: "/invoices", RequiredScopes: []string{"invoices:write"}},
			kw.KeyPolicyRule{Subjects: names("reporting/reporter")},
		)), ""},
		"a rule after one matching every request it would is never used": {kp("billing/api", rules(
			kw.KeyPolicyRule{PathPrefix: "/invoices"},
			kw.KeyPolicyRule{PathPrefix: "/invoices/7", Methods: methods("DELETE"), RequiredScopes: []string{"admin"}},
		)), "spec.rules[1] is never used: spec.rules[0] matches every request it would"},
		"a catch-all rule first shadows the rest": {kp("billing/api", rules(
			kw.KeyPolicyRule{},
			kw.KeyPolicyRule{PathPrefix: "/admin", Groups: names("admins")},
		)), "spec.rules[1] is never used"},
		"an earlier rule for fewer methods does not shadow": {kp("billing/api", rules(
			kw.KeyPolicyRule{PathPrefix: "/invoices", Methods: methods("GET")},
			kw.KeyPolicyRule{PathPrefix: "/invoices", Methods: methods("GET", "POST")},
		)), ""},
		"an earlier rule for a longer prefix does not shadow": {kp("billing/api", rules(
			kw.KeyPolicyRule{PathPrefix: "/invoices/admin", Groups: names("admins")},
			kw.KeyPolicyRule{PathPrefix: "/invoices"},
		)), ""},
		"a trailing slash does not hide a shadowed rule": {kp("billing/api", rules(
			kw.KeyPolicyRule{PathPrefix: "/invoices/"},
			kw.KeyPolicyRule{PathPrefix: "/invoices", RequiredScopes: []string{"x"}},
		)), "spec.rules[1] is never used"},
		"a subject of a namespace whose keys are refused": {kp("billing/api", rules(
			kw.KeyPolicyRule{Subjects: names("sandbox/admin")},
		)), "spec.rules[0].subjects[0]: namespace sandbox is not one whose keys this policy accepts"},
		"a group of a namespace whose keys are refused": {kp("billing/api", keysOf("reporting"), rules(
			kw.KeyPolicyRule{Groups: names("reporting/readers", "sandbox/admins")},
		)), "spec.rules[0].groups[1]: namespace sandbox is not one whose keys this policy accepts"},
		"a subject of a listed namespace is valid": {kp("billing/api", keysOf("reporting"), rules(
			kw.KeyPolicyRule{Subjects: names("reporting/admin")},
		)), ""},
		"with a namespace selector, any subject namespace may be selected": {kp("billing/api",
			selector(&metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}),
			rules(kw.KeyPolicyRule{Subjects: names("sandbox/admin")})), ""},
		"a namespace selector with In and no values": {kp("billing/api", selector(&metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn}},
		})), "spec.keys.namespaceSelector:"},
		"a namespace selector with an unknown operator": {kp("billing/api", selector(&metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Near", Values: []string{"a"}}},
		})), "spec.keys.namespaceSelector:"},
		"a namespace selector with a bad label key": {kp("billing/api", selector(&metav1.LabelSelector{
			MatchLabels: map[string]string{"not a key": "x"},
		})), "spec.keys.namespaceSelector:"},
		"a namespace selector with too many terms": {kp("billing/api", selector(&metav1.LabelSelector{
			MatchLabels: func() map[string]string {
				m := map[string]string{}
				for i := range 17 {
					m[strings.Repeat("k", i+1)] = "v"
				}
				return m
			}(),
		})), "at most 16 labels and expressions"},
		"a token audience while tokens are never accepted": {kp("billing/api", tokens(kw.TokensNever, "billing")),
			"spec.tokens.audience: cannot be set when tokens.accept is Never"},
		"an unknown token acceptance":                 {kp("billing/api", tokens("Sometimes", "")), "spec.tokens.accept"},
		"an upper-case host (schema bypassed)":        {kp("billing/api", hosts("API.example.com")), "spec.hosts[0]"},
		"a wildcard over a top-level domain":          {kp("billing/api", hosts("*.com")), "spec.hosts[0]"},
		"no host":                                     {kp("billing/api", hosts()), "spec.hosts: at least one host"},
		"an unknown method (schema bypassed)":         {kp("billing/api", rules(kw.KeyPolicyRule{Methods: methods("get")})), "spec.rules[0].methods[0]"},
		"a dot segment in a prefix (schema bypassed)": {kp("billing/api", rules(kw.KeyPolicyRule{PathPrefix: "/a/../b"})), "spec.rules[0].pathPrefix"},
		"a key namespace that is not a name":          {kp("billing/api", keysOf("Team_A")), "spec.keys.namespaces[0]"},
		"seventeen rules (schema bypassed)": {kp("billing/api", rules(func() []kw.KeyPolicyRule {
			r := make([]kw.KeyPolicyRule, 17)
			for i := range r {
				r[i].PathPrefix = "/" + strings.Repeat("x", i+1)
			}
			return r
		}()...)), "spec.rules: at most 16 rules"},
	} {
		t.Run(name, func(t *testing.T) {
			got := Compile(tc.policy).Invalid()
			switch {
			case tc.invalid == "" && got != "":
				t.Fatalf("Invalid() = %q, want valid", got)
			case tc.invalid != "" && !strings.Contains(got, tc.invalid):
				t.Fatalf("Invalid() = %q, want it to contain %q", got, tc.invalid)
			}
		})
	}
}

func TestCompileClaims(t *testing.T) {
	for name, tc := range map[string]struct {
		policy *kw.KeyPolicy
		hosts  []string
		claims []string
	}{
		"no rules claim the whole host": {kp("a/p"), []string{"api.example.com"}, []string{"/"}},
		"rules claim their prefixes, once, without trailing slash": {kp("a/p", rules(
			kw.KeyPolicyRule{PathPrefix: "/v1/", Methods: methods("GET")},
			kw.KeyPolicyRule{PathPrefix: "/v1", Methods: methods("POST")},
			kw.KeyPolicyRule{PathPrefix: "/v2"},
		)), []string{"api.example.com"}, []string{"/v1", "/v2"}},
		"a rule without a prefix claims the root": {kp("a/p", rules(
			kw.KeyPolicyRule{PathPrefix: "/v1"}, kw.KeyPolicyRule{Methods: methods("GET")},
		)), []string{"api.example.com"}, []string{"/v1", "/"}},
		"a host named twice is held once": {kp("a/p", hosts("a.example.com", "*.example.com", "a.example.com")),
			[]string{"a.example.com", "*.example.com"}, []string{"/"}},
		"an invalid policy keeps its valid hosts and claims the root for a bad prefix": {kp("a/p",
			hosts("a.example.com", "BAD"), rules(kw.KeyPolicyRule{PathPrefix: "/v1"}, kw.KeyPolicyRule{PathPrefix: "v2"})),
			[]string{"a.example.com"}, []string{"/v1", "/"}},
	} {
		t.Run(name, func(t *testing.T) {
			p := Compile(tc.policy)
			if !slices.Equal(p.hosts, tc.hosts) || !slices.Equal(p.claims, tc.claims) {
				t.Fatalf("hosts %q claims %q; want %q and %q", p.hosts, p.claims, tc.hosts, tc.claims)
			}
		})
	}
}

// The sample users copy must compile without complaint.
func TestSampleCompiles(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "keys_v1alpha1_keypolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj := &kw.KeyPolicy{}
	if err := yaml.Unmarshal(data, obj); err != nil {
		t.Fatal(err)
	}
	obj.Namespace = "billing"
	if p := Compile(obj); p.Invalid() != "" || len(p.rules) != 4 {
		t.Fatalf("the sample compiles to invalid %q with %d rules", p.Invalid(), len(p.rules))
	}
}

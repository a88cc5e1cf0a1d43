package keypolicy

import (
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// decideTable is the cluster every TestDecide case runs against.
func decideTable() *Table {
	return NewTable(compileAll(
		kp("billing/api", created(0), hosts("billing.example.com", "*.billing.example.com"),
			keysOf("reporting"),
			selector(&metav1.LabelSelector{MatchLabels: map[string]string{"team": "finance"}}),
			tokens(kw.TokensAlways, "billing.example.com"),
			rules(
				kw.KeyPolicyRule{PathPrefix: "/admin", Groups: names("billing-admins")},
				kw.KeyPolicyRule{PathPrefix: "/invoices", Methods: methods("GET", "HEAD"), RequiredScopes: []string{"invoices:read"}},
				kw.KeyPolicyRule{PathPrefix: "/invoices", RequiredScopes: []string{"invoices:write"}},
				kw.KeyPolicyRule{PathPrefix: "/reports", Methods: methods("GET"), Subjects: names("reporting/reporter", "auditor")},
			)),
		kp("billing/keys-only", created(1), hosts("open.example.com"), tokens(kw.TokensNever, "")),
		kp("billing/first", created(2), hosts("first.example.com"), rules(
			kw.KeyPolicyRule{PathPrefix: "/x", Subjects: names("alice")},
			kw.KeyPolicyRule{},
		)),
		kp("billing/broken", created(3), hosts("broken.example.com"), tokens(kw.TokensNever, "typo")),
		kp("team-b/api", created(4), hosts("teamb.example.com")),
		// A tenant's newer policy on team-b's host, accepting its own keys.
		kp("sandbox/grab", created(9), hosts("teamb.example.com")),
	))
}

var (
	billingKey   = Identity{Namespace: "billing", Subject: "svc", Scopes: []string{"invoices:read"}}
	billingAdmin = Identity{Namespace: "billing", Subject: "ops", Groups: []string{"billing-admins"}}
	billingRO    = Identity{Namespace: "billing", Subject: "ro", Access: kw.AccessReadOnly, Scopes: []string{"invoices:read", "invoices:write"}}
	reporter     = Identity{Namespace: "reporting", Subject: "reporter", Groups: []string{"billing-admins"}, Scopes: []string{"invoices:read"}}
	// sandbox's tenant chose the subject, groups and scopes of others.
	sandboxKey   = Identity{Namespace: "sandbox", Subject: "reporter", Groups: []string{"billing-admins"}, Scopes: []string{"invoices:read", "invoices:write"}}
	financeKey   = Identity{Namespace: "finance-eu", Subject: "svc", Scopes: []string{"invoices:read"}}
	billingToken = Identity{Kind: Token, Namespace: "billing", Subject: "svc", Scopes: []string{"invoices:read"}, Audiences: []string{"billing.example.com"}}
	defaultToken = Identity{Kind: Token, Namespace: "billing", Subject: "svc", Scopes: []string{"invoices:read"}, Audiences: []string{DefaultAudience}}
)

func nsLabels(ns string) (labels.Labels, bool) {
	l, ok := map[string]labels.Set{
		"finance-eu": {"team": "finance"},
		"sandbox":    {"team": "sandbox"},
	}[ns]
	return l, ok
}

type decideCase struct {
	method, host, path string
	id                 Identity
	mode               Mode
	narrow             Narrowing
	lookup             NamespaceLabels
	code               Code
	policy             string // "" for none
	rule               int
}

func TestDecide(t *testing.T) {
	table := decideTable()
	cases := map[string]decideCase{
		// Choosing the policy.
		"a key of the policy's namespace reads invoices with the read scope": {
			"GET", "billing.example.com", "/invoices/7", billingKey, ModeDeny, Narrowing{}, nil, OK, "billing/api", 1},
		"the wildcard host is judged by the same policy": {
			"GET", "eu.billing.example.com", "/invoices", billingKey, ModeDeny, Narrowing{}, nil, OK, "billing/api", 1},
		"a host without policy is refused by default": {
			"GET", "elsewhere.dev", "/", billingKey, ModeDeny, Narrowing{}, nil, NoPolicy, "", -1},
		"an unknown default mode counts as deny": {
			"GET", "elsewhere.dev", "/", billingKey, "allow", Narrowing{}, nil, NoPolicy, "", -1},
		"a path no policy of a policed host claims is refused, even with allow-valid-key": {
			"GET", "billing.example.com", "/", billingKey, ModeAllowValidKey, Narrowing{}, nil, NoPolicy, "", -1},
		"a garbage host is refused whatever the mode": {
			"GET", "billing.example.com:x", "/invoices", billingKey, ModeAllowValidKey, Narrowing{}, nil, InvalidRequest, "", -1},
		"a dot segment on a policed host is refused": {
			"GET", "billing.example.com", "/invoices/../admin", billingAdmin, ModeDeny, Narrowing{}, nil, InvalidRequest, "", -1},
		"an invalid policy refuses every key, even of its own namespace": {
			"GET", "broken.example.com", "/", billingKey, ModeAllowValidKey, Narrowing{}, nil, PolicyInvalid, "billing/broken", -1},
		// The default mode.
		"allow-valid-key lets a key of any namespace pass a host without policy": {
			"POST", "elsewhere.dev", "/", sandboxKey, ModeAllowValidKey, Narrowing{}, nil, OK, "", -1},
		"allow-valid-key still applies ?scope=": {
			"GET", "elsewhere.dev", "/", billingKey, ModeAllowValidKey, Narrowing{Scopes: []string{"admin"}}, nil, InsufficientScope, "", -1},
		"allow-valid-key still applies ?namespace=": {
			"GET", "elsewhere.dev", "/", sandboxKey, ModeAllowValidKey, Narrowing{Namespaces: []string{"billing"}}, nil, WrongNamespace, "", -1},
		"allow-valid-key still refuses a read-only key's POST": {
			"POST", "elsewhere.dev", "/", billingRO, ModeAllowValidKey, Narrowing{}, nil, ReadOnly, "", -1},
		"allow-valid-key takes tokens of the default audience": {
			"GET", "elsewhere.dev", "/", defaultToken, ModeAllowValidKey, Narrowing{}, nil, OK, "", -1},
		"allow-valid-key refuses tokens without the default audience": {
			"GET", "elsewhere.dev", "/", billingToken, ModeAllowValidKey, Narrowing{}, nil, TokenNotAccepted, "", -1},
		// Whose keys.
		"a key of another namespace is refused": {
			"GET", "billing.example.com", "/invoices", sandboxKey, ModeDeny, Narrowing{}, nsLabels, WrongNamespace, "billing/api", -1},
		"a key of a listed namespace is accepted": {
			"GET", "billing.example.com", "/invoices", reporter, ModeDeny, Narrowing{}, nil, OK, "billing/api", 1},
		"a key of a namespace the selector matches is accepted": {
			"GET", "billing.example.com", "/invoices", financeKey, ModeDeny, Narrowing{}, nsLabels, OK, "billing/api", 1},
		"a namespace whose labels are unknown is not selected": {
			"GET", "billing.example.com", "/invoices", Identity{Namespace: "new-ns", Scopes: []string{"invoices:read"}}, ModeDeny, Narrowing{}, nsLabels, WrongNamespace, "billing/api", -1},
		"without a label lookup the selector selects nothing": {
			"GET", "billing.example.com", "/invoices", financeKey, ModeDeny, Narrowing{}, nil, WrongNamespace, "billing/api", -1},
		"a key without a namespace is never accepted": {
			"GET", "billing.example.com", "/invoices", Identity{Subject: "svc", Scopes: []string{"invoices:read"}}, ModeDeny, Narrowing{}, nsLabels, WrongNamespace, "billing/api", -1},
		"a tenant's policy on an older team's host does not apply: the team's does, and refuses the tenant's key": {
			"GET", "teamb.example.com", "/", sandboxKey, ModeAllowValidKey, Narrowing{}, nil, WrongNamespace, "team-b/api", -1},
		"the team's own key passes on its host the tenant tried to take": {
			"GET", "teamb.example.com", "/", Identity{Namespace: "team-b", Subject: "svc"}, ModeDeny, Narrowing{}, nil, OK, "team-b/api", -1},
		// Tokens.
		"a token with the policy's audience passes": {
			"GET", "billing.example.com", "/invoices", billingToken, ModeDeny, Narrowing{}, nil, OK, "billing/api", 1},
		"a token with the default audience is refused where the policy names another": {
			"GET", "billing.example.com", "/invoices", defaultToken, ModeDeny, Narrowing{}, nil, TokenNotAccepted, "billing/api", -1},
		"a token is refused where the policy accepts API keys only": {
			"GET", "open.example.com", "/", defaultToken, ModeDeny, Narrowing{}, nil, TokenNotAccepted, "billing/keys-only", -1},
		"an API key passes where tokens are refused": {
			"GET", "open.example.com", "/anything", billingKey, ModeDeny, Narrowing{}, nil, OK, "billing/keys-only", -1},
		"a token of the default audience passes where the policy names none": {
			"GET", "first.example.com", "/y", defaultToken, ModeDeny, Narrowing{}, nil, OK, "billing/first", 1},
		// Rules.
		"the first matching rule decides: a GET needs the read scope only": {
			"HEAD", "billing.example.com", "/invoices", billingKey, ModeDeny, Narrowing{}, nil, OK, "billing/api", 1},
		"a POST falls to the next rule and needs the write scope": {
			"POST", "billing.example.com", "/invoices", billingKey, ModeDeny, Narrowing{}, nil, InsufficientScope, "billing/api", 2},
		"a refusal by the first matching rule is not retried against later rules": {
			"GET", "first.example.com", "/x/1", Identity{Namespace: "billing", Subject: "bob"}, ModeDeny, Narrowing{}, nil, SubjectNotAllowed, "billing/first", 0},
		"a method no rule of the path allows": {
			"POST", "billing.example.com", "/reports", reporter, ModeDeny, Narrowing{}, nil, MethodNotAllowed, "billing/api", -1},
		"a lowercase method is judged as its upper case (frameworks upper-case it)": {
			"get", "billing.example.com", "/reports", reporter, ModeDeny, Narrowing{}, nil, OK, "billing/api", 3},
		"a subject of an accepted namespace is allowed by name": {
			"GET", "billing.example.com", "/reports/q1", reporter, ModeDeny, Narrowing{}, nil, OK, "billing/api", 3},
		"a subject named without namespace is of the policy's namespace": {
			"GET", "billing.example.com", "/reports", Identity{Namespace: "billing", Subject: "auditor"}, ModeDeny, Narrowing{}, nil, OK, "billing/api", 3},
		"the same subject name in another accepted namespace is not that subject": {
			"GET", "billing.example.com", "/reports", Identity{Namespace: "billing", Subject: "reporter"}, ModeDeny, Narrowing{}, nil, SubjectNotAllowed, "billing/api", 3},
		"a member of an allowed group passes": {
			"DELETE", "billing.example.com", "/admin/users/1", billingAdmin, ModeDeny, Narrowing{}, nil, OK, "billing/api", 0},
		"a group of the same name in another accepted namespace is not that group": {
			"GET", "billing.example.com", "/admin", reporter, ModeDeny, Narrowing{}, nil, SubjectNotAllowed, "billing/api", 0},
		"a key lacking the rule's scope is refused": {
			"GET", "billing.example.com", "/invoices", Identity{Namespace: "billing", Subject: "svc"}, ModeDeny, Narrowing{}, nil, InsufficientScope, "billing/api", 1},
		// Access.
		"a read-only key may GET": {
			"GET", "billing.example.com", "/invoices", billingRO, ModeDeny, Narrowing{}, nil, OK, "billing/api", 1},
		"a read-only key may not POST": {
			"POST", "billing.example.com", "/invoices", billingRO, ModeDeny, Narrowing{}, nil, ReadOnly, "billing/api", 2},
		// Narrowing.
		"?scope= narrows what the rule requires": {
			"GET", "billing.example.com", "/invoices", billingKey, ModeDeny, Narrowing{Scopes: []string{"invoices:admin"}}, nil, InsufficientScope, "billing/api", 1},
		"an empty ?scope= asks for nothing": {
			"GET", "billing.example.com", "/invoices", billingKey, ModeDeny, Narrowing{Scopes: []string{""}}, nil, OK, "billing/api", 1},
		"?namespace= narrows an accepted namespace away": {
			"GET", "billing.example.com", "/invoices", reporter, ModeDeny, Narrowing{Namespaces: []string{"billing"}}, nil, WrongNamespace, "billing/api", 1},
		"?namespace= naming the caller's namespace does not admit a namespace the policy refuses": {
			"GET", "billing.example.com", "/invoices", sandboxKey, ModeDeny, Narrowing{Namespaces: []string{"sandbox"}}, nsLabels, WrongNamespace, "billing/api", -1},
		"?scope= the key holds does not replace the rule's scope": {
			"GET", "billing.example.com", "/invoices", Identity{Namespace: "billing", Scopes: []string{"x"}}, ModeDeny, Narrowing{Scopes: []string{"x"}}, nil, InsufficientScope, "billing/api", 1},
	}
	seen := map[Code]bool{}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := Decide(Input{
				Method: tc.method, Target: table.Select(tc.host, tc.path), Identity: tc.id,
				Default: tc.mode, Narrowing: tc.narrow, NamespaceLabels: tc.lookup,
			})
			seen[d.Code] = true
			wantPolicy := Ref{}
			if tc.policy != "" {
				wantPolicy = ref(tc.policy)
			}
			if d.Code != tc.code || d.Policy != wantPolicy || d.Rule != tc.rule {
				t.Fatalf("Decide = %s policy %q rule %d (%s); want %s policy %q rule %d", d.Code, d.Policy, d.Rule, d.Reason, tc.code, tc.policy, tc.rule)
			}
			wantStatus := http.StatusForbidden
			if tc.code == OK {
				wantStatus = http.StatusOK
			}
			if d.Status != wantStatus || d.Allowed() != (tc.code == OK) || (tc.code != OK) == (d.Reason == "") {
				t.Fatalf("Decide = status %d allowed %v reason %q for %s", d.Status, d.Allowed(), d.Reason, d.Code)
			}
		})
	}
	for _, c := range []Code{OK, NoPolicy, PolicyInvalid, WrongNamespace, TokenNotAccepted, MethodNotAllowed,
		SubjectNotAllowed, InsufficientScope, ReadOnly, InvalidRequest} {
		if !seen[c] {
			t.Errorf("no case decides %s", c)
		}
	}
}

// A reason is one line, bounded, whatever the caller's subject or method.
func TestDecideReasonIsOneLine(t *testing.T) {
	table := decideTable()
	id := Identity{Namespace: "billing", Subject: "evil\nX-Injected: 1"}
	for _, in := range []Input{
		{Method: "GET", Target: table.Select("billing.example.com", "/reports"), Identity: id},
		{Method: strings.Repeat("A\n", 4096), Target: table.Select("billing.example.com", "/reports"), Identity: reporter},
	} {
		d := Decide(in)
		if d.Allowed() || strings.ContainsAny(d.Reason, "\r\n") || len(d.Reason) > 512 {
			t.Fatalf("reason %q (%s)", d.Reason, d.Code)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"deny": ModeDeny, "allow-valid-key": ModeAllowValidKey, "": "", "allow": "", "Deny": ""} {
		got, err := ParseMode(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
}

package keypolicy

import (
	"testing"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

func TestSelect(t *testing.T) {
	table := NewTable(compileAll(
		kp("billing/exact", created(0), hosts("api.example.com")),
		kp("billing/wild", created(1), hosts("*.example.com")),
		kp("billing/v1", created(2), hosts("split.example.com"), rules(kw.KeyPolicyRule{PathPrefix: "/v1"})),
		kp("billing/v1-admin", created(3), hosts("split.example.com"), rules(kw.KeyPolicyRule{PathPrefix: "/v1/admin"})),
		kp("billing/root", created(4), hosts("split.example.com")),
		kp("billing/partial", created(5), hosts("partial.example.com"), rules(kw.KeyPolicyRule{PathPrefix: "/only"})),
		kp("shop/deep", created(6), hosts("a.b.example.com")),
		kp("sandbox/grab", created(7), hosts("api.example.com", "grab.sandbox.dev")),
		kp("sandbox/under-wild", created(8), hosts("under.example.com")),
	))
	for name, tc := range map[string]struct {
		host, path string
		policy     string // "" for none
		claimed    bool
		invalid    bool
	}{
		"an exact host is chosen":                               {"api.example.com", "/", "billing/exact", true, false},
		"an exact host beats the wildcard covering it":          {"api.example.com", "/x", "billing/exact", true, false},
		"the wildcard covers a name one label deeper":           {"www.example.com", "/", "billing/wild", true, false},
		"the wildcard does not cover its own suffix":            {"example.com", "/", "", false, false},
		"two labels under a wildcard: its owner's, refused":     {"a.c.example.com", "/", "", true, false},
		"a deeper exact host of another namespace is not held":  {"a.b.example.com", "/", "", true, false},
		"the longest claimed prefix wins":                       {"split.example.com", "/v1/admin/users", "billing/v1-admin", true, false},
		"a shorter prefix takes the rest of its path":           {"split.example.com", "/v1/invoices", "billing/v1", true, false},
		"prefixes match whole segments":                         {"split.example.com", "/v1admin", "billing/root", true, false},
		"the root claim takes what no longer prefix does":       {"split.example.com", "/v2", "billing/root", true, false},
		"a claimed host with no claim on the path selects none": {"partial.example.com", "/other", "", true, false},
		"a path not claimed does not fall back to the wildcard": {"partial.example.com", "/", "", true, false},
		"the host is lowered and its port dropped":              {"API.Example.com:8443", "/", "billing/exact", true, false},
		"a trailing dot is dropped":                             {"api.example.com.", "/", "billing/exact", true, false},
		"the query does not choose":                             {"split.example.com", "/v2?x=/v1/admin", "billing/root", true, false},
		"an encoded path is decoded before choosing":            {"split.example.com", "/v1/%61dmin", "billing/v1-admin", true, false},
		"an unknown host selects none":                          {"elsewhere.dev", "/", "", false, false},
		"a garbage host is invalid":                             {"api.example.com:x", "/", "", false, true},
		"a dot segment on a claimed host is invalid":            {"split.example.com", "/v2/../v1/admin", "", true, true},
		"a dot segment on an unclaimed host is not judged":      {"elsewhere.dev", "/a/../b", "", false, false},
		"a tenant's newer policy does not take an older host":   {"api.example.com", "/", "billing/exact", true, false},
		"a tenant's newer policy keeps hosts nobody else holds": {"grab.sandbox.dev", "/", "sandbox/grab", true, false},
		"a tenant's exact host under another team's wildcard":   {"under.example.com", "/", "billing/wild", true, false},
		"an empty path is the root":                             {"api.example.com", "", "billing/exact", true, false},
	} {
		t.Run(name, func(t *testing.T) {
			sel := table.Select(tc.host, tc.path)
			got := ""
			if sel.Policy != nil {
				got = sel.Policy.Ref().String()
			}
			if got != tc.policy || sel.Claimed != tc.claimed || (sel.Invalid != "") != tc.invalid {
				t.Fatalf("Select(%q, %q) = policy %q claimed %v invalid %q; want %q %v %v",
					tc.host, tc.path, got, sel.Claimed, sel.Invalid, tc.policy, tc.claimed, tc.invalid)
			}
		})
	}
}

// When the older policy goes, the newer one it blocked takes the host.
func TestSelectAfterTheWinnerIsDeleted(t *testing.T) {
	winner, newer := kp("billing/api", created(0)), kp("payments/api", created(5))
	if p := NewTable(compileAll(winner, newer)).Select("api.example.com", "/").Policy; p.Ref() != ref("billing/api") {
		t.Fatalf("before: %v", p.Ref())
	}
	deleting()(winner)
	table := NewTable(compileAll(winner, newer))
	if p := table.Select("api.example.com", "/").Policy; p == nil || p.Ref() != ref("payments/api") {
		t.Fatalf("after: %v", p)
	}
	if _, ok := table.Status(ref("billing/api")); ok {
		t.Fatal("a policy being deleted has a status")
	}
}

func TestSelectPolicy(t *testing.T) {
	table := NewTable(compileAll(
		kp("billing/api", created(0), rules(kw.KeyPolicyRule{PathPrefix: "/invoices"})),
		kp("sandbox/grab", created(5)),
	))
	for name, tc := range map[string]struct {
		ref, path string
		policy    bool
		invalid   bool
	}{
		"a policy holding a host and claiming the path": {"billing/api", "/invoices/7", true, false},
		"a path the policy does not claim":              {"billing/api", "/other", false, false},
		"a policy that holds no host":                   {"sandbox/grab", "/", false, false},
		"a policy that does not exist":                  {"billing/nope", "/", false, false},
		"a path that cannot be judged":                  {"billing/api", "/invoices/../admin", false, true},
	} {
		t.Run(name, func(t *testing.T) {
			sel := table.SelectPolicy(ref(tc.ref), tc.path)
			if !sel.Claimed || (sel.Policy != nil) != tc.policy || (sel.Invalid != "") != tc.invalid {
				t.Fatalf("SelectPolicy(%s, %q) = %+v", tc.ref, tc.path, sel)
			}
		})
	}
}

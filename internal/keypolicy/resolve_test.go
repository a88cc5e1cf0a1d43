package keypolicy

import (
	"reflect"
	"testing"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// held and lost describe one policy's expected Status.
type want struct {
	held []string
	lost []Loss
}

func TestResolve(t *testing.T) {
	v1 := rules(kw.KeyPolicyRule{PathPrefix: "/v1"})
	v2 := rules(kw.KeyPolicyRule{PathPrefix: "/v2"})
	for name, tc := range map[string]struct {
		policies []*kw.KeyPolicy
		want     map[string]want
	}{
		"a host named by one policy is held": {
			[]*kw.KeyPolicy{kp("billing/api")},
			map[string]want{"billing/api": {held: []string{"api.example.com"}}},
		},
		"two namespaces, one host: the older keeps it and the newer names it": {
			[]*kw.KeyPolicy{kp("sandbox/grab", created(10)), kp("billing/api", created(0))},
			map[string]want{
				"billing/api":  {held: []string{"api.example.com"}},
				"sandbox/grab": {lost: []Loss{{"api.example.com", ref("billing/api")}}},
			},
		},
		"created in the same second: namespace, then name, decides": {
			[]*kw.KeyPolicy{kp("b/p"), kp("a/q"), kp("a/p", v1), kp("a/z", v1)},
			map[string]want{
				"a/p": {held: []string{"api.example.com"}},
				"a/q": {held: []string{"api.example.com"}},
				"a/z": {lost: []Loss{{"api.example.com", ref("a/p")}}},
				"b/p": {lost: []Loss{{"api.example.com", ref("a/p")}}},
			},
		},
		"a tenant cannot carve a path out of another namespace's host": {
			[]*kw.KeyPolicy{kp("billing/api", created(0)), kp("sandbox/carve", created(5), v1)},
			map[string]want{
				"billing/api":   {held: []string{"api.example.com"}},
				"sandbox/carve": {lost: []Loss{{"api.example.com", ref("billing/api")}}},
			},
		},
		"a tenant cannot take the rest of a host another namespace holds a path of": {
			[]*kw.KeyPolicy{kp("billing/api", created(0), v1), kp("sandbox/rest", created(5))},
			map[string]want{
				"billing/api":  {held: []string{"api.example.com"}},
				"sandbox/rest": {lost: []Loss{{"api.example.com", ref("billing/api")}}},
			},
		},
		"one namespace may split a host by path": {
			[]*kw.KeyPolicy{kp("billing/v1", created(0), v1), kp("billing/v2", created(5), v2), kp("billing/rest", created(9))},
			map[string]want{
				"billing/v1":   {held: []string{"api.example.com"}},
				"billing/v2":   {held: []string{"api.example.com"}},
				"billing/rest": {held: []string{"api.example.com"}},
			},
		},
		"one namespace, one host and prefix: the newer loses (same rule)": {
			[]*kw.KeyPolicy{kp("billing/old", created(0), rules(kw.KeyPolicyRule{PathPrefix: "/v1/"})), kp("billing/new", created(5), v1)},
			map[string]want{
				"billing/old": {held: []string{"api.example.com"}},
				"billing/new": {lost: []Loss{{"api.example.com", ref("billing/old")}}},
			},
		},
		"an exact host under an older wildcard of another namespace is lost": {
			[]*kw.KeyPolicy{kp("billing/all", created(0), hosts("*.example.com")), kp("sandbox/one", created(5), hosts("api.example.com"))},
			map[string]want{
				"billing/all": {held: []string{"*.example.com"}},
				"sandbox/one": {lost: []Loss{{"api.example.com", ref("billing/all")}}},
			},
		},
		"a newer wildcard keeps the names an older exact host does not": {
			[]*kw.KeyPolicy{kp("billing/one", created(0), hosts("api.example.com")), kp("shop/all", created(5), hosts("*.example.com"))},
			map[string]want{
				"billing/one": {held: []string{"api.example.com"}},
				"shop/all":    {held: []string{"*.example.com"}},
			},
		},
		"an exact host under a wildcard of its own namespace is held": {
			[]*kw.KeyPolicy{kp("billing/all", created(0), hosts("*.example.com")), kp("billing/one", created(5))},
			map[string]want{
				"billing/all": {held: []string{"*.example.com"}},
				"billing/one": {held: []string{"api.example.com"}},
			},
		},
		"a name deeper under another namespace's older wildcard is the wildcard's (gateways route it there)": {
			[]*kw.KeyPolicy{kp("billing/all", created(0), hosts("*.example.com")), kp("shop/deep", created(5), hosts("a.b.example.com"))},
			map[string]want{
				"billing/all": {held: []string{"*.example.com"}},
				"shop/deep":   {lost: []Loss{{"a.b.example.com", ref("billing/all")}}},
			},
		},
		"a policy keeps the hosts nobody older holds": {
			[]*kw.KeyPolicy{kp("billing/api", created(0)), kp("shop/web", created(5), hosts("shop.example.com", "api.example.com", "www.example.com"))},
			map[string]want{
				"billing/api": {held: []string{"api.example.com"}},
				"shop/web":    {held: []string{"shop.example.com", "www.example.com"}, lost: []Loss{{"api.example.com", ref("billing/api")}}},
			},
		},
		"conflicts are judged against what older policies hold, not what they named": {
			[]*kw.KeyPolicy{
				kp("a/p", created(0), hosts("one.example.com")),
				kp("b/p", created(1), hosts("one.example.com", "two.example.com")),
				kp("c/p", created(2), hosts("two.example.com")),
			},
			map[string]want{
				"a/p": {held: []string{"one.example.com"}},
				"b/p": {held: []string{"two.example.com"}, lost: []Loss{{"one.example.com", ref("a/p")}}},
				"c/p": {lost: []Loss{{"two.example.com", ref("b/p")}}},
			},
		},
		"an invalid policy still holds its host": {
			[]*kw.KeyPolicy{kp("billing/api", created(0), tokens(kw.TokensNever, "x")), kp("sandbox/grab", created(5))},
			map[string]want{
				"billing/api":  {held: []string{"api.example.com"}},
				"sandbox/grab": {lost: []Loss{{"api.example.com", ref("billing/api")}}},
			},
		},
		"a policy being deleted takes no part": {
			[]*kw.KeyPolicy{kp("billing/api", created(0), deleting()), kp("sandbox/grab", created(5))},
			map[string]want{"sandbox/grab": {held: []string{"api.example.com"}}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := Resolve(compileAll(tc.policies...))
			if len(got) != len(tc.want) {
				t.Fatalf("%d statuses, want %d: %+v", len(got), len(tc.want), got)
			}
			for r, w := range tc.want {
				st, ok := got[ref(r)]
				if !ok {
					t.Fatalf("no status for %s", r)
				}
				if !reflect.DeepEqual(st.Held, w.held) || !reflect.DeepEqual(st.Lost, w.lost) {
					t.Errorf("%s: held %q lost %v; want held %q lost %v", r, st.Held, st.Lost, w.held, w.lost)
				}
			}
		})
	}
}

// Resolve's answer does not depend on the order policies are listed in:
// every replica and the controller see the same.
func TestResolveIgnoresListOrder(t *testing.T) {
	ps := compileAll(
		kp("a/p", created(0), hosts("one.example.com")),
		kp("b/p", created(1), hosts("one.example.com", "two.example.com")),
		kp("c/p", created(1), hosts("two.example.com", "*.example.com")),
		kp("d/p", created(2), hosts("three.example.com")),
	)
	first := Resolve(ps)
	for i := range len(ps) {
		rot := append(append([]*Policy{}, ps[i:]...), ps[:i]...)
		if got := Resolve(rot); !reflect.DeepEqual(got, first) {
			t.Fatalf("rotation %d: %+v, want %+v", i, got, first)
		}
	}
}

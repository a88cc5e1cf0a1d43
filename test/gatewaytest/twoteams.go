package gatewaytest

import (
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/webhook/keyserver"
)

// The two teams of issue 14, part 6, behind one gateway: each owns an API
// at its host and a KeyPolicy for it.
const (
	HostTeamA = "api.team-a.example.com"
	HostTeamB = "api.team-b.example.com"
	// HostNobody is a host no KeyPolicy names.
	HostNobody = "api.nobody.example.com"
)

// TwoTeamsPolicies are the teams' KeyPolicies: team-a's API accepts
// team-a's keys; team-b's accepts team-b's and those of namespace partners,
// and its /admin only team-b's group admins. A newer policy of namespace
// sandbox names team-a's host too, and is not applied there.
func TwoTeamsPolicies() []kw.KeyPolicy {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	policy := func(ns, name string, age time.Duration, spec kw.KeyPolicySpec) kw.KeyPolicy {
		return kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(t0.Add(-age))}, Spec: spec}
	}
	return []kw.KeyPolicy{
		policy("team-a", "api", 48*time.Hour, kw.KeyPolicySpec{Hosts: []kw.Hostname{HostTeamA}}),
		policy("team-b", "api", 48*time.Hour, kw.KeyPolicySpec{
			Hosts: []kw.Hostname{HostTeamB},
			Keys:  &kw.KeyPolicyKeys{Namespaces: []string{"partners"}},
			Rules: []kw.KeyPolicyRule{
				{PathPrefix: "/admin", Groups: []kw.KeyPolicySubject{{Name: "admins"}}},
				{PathPrefix: "/"},
			},
		}),
		policy("sandbox", "squatter", time.Hour, kw.KeyPolicySpec{Hosts: []kw.Hostname{HostTeamA}}),
	}
}

// StartTwoTeamsKeyServer starts a key server as installed
// (--default-policy=deny) holding TwoTeamsPolicies. trusted lists loopback
// in --trusted-proxies, so that the original host is the gateway's
// X-Forwarded-Host rather than the Host it sends.
func StartTwoTeamsKeyServer(t *testing.T, dir string, failureLimit int, trusted bool) *KeyServer {
	t.Helper()
	ks := StartKeyServer(t, dir, failureLimit, func(o *keyserver.Options) {
		o.DefaultPolicy = keypolicy.ModeDeny
		if trusted {
			var err error
			if o.TrustedProxies, err = keyserver.ParseTrustedProxies("127.0.0.0/8"); err != nil {
				t.Fatal(err)
			}
		}
	})
	ks.Server.SetPolicies(keypolicy.Build(TwoTeamsPolicies()))
	return ks
}

// CheckTwoTeams runs issue 14's two-team checks through gw, in front of a
// key server started with StartTwoTeamsKeyServer: a team's key opens its
// own host and is refused (403 WRONG_NAMESPACE) on the other's; a host
// without a policy is refused (NO_POLICY); a key of a namespace team-b's
// policy lists passes there; a path rule is judged by the path the client
// asked for, which the client cannot swap for another with its own
// headers, nor the host; and no X-Keyward-* header a client forges,
// X-Keyward-Policy included, reaches the service. Every request carries
// Forged().
func CheckTwoTeams(t *testing.T, gw Gateway, up *Recorder, ks *KeyServer) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	teamA := ks.Add(t, Key{Namespace: "team-a", Name: "client", Subject: "client", Groups: []string{"admins"}})
	teamB := ks.Add(t, Key{Namespace: "team-b", Name: "client", Subject: "client", Scopes: []string{"orders:read"}})
	admin := ks.Add(t, Key{Namespace: "team-b", Name: "admin", Subject: "admin", Groups: []string{"admins"}})
	partner := ks.Add(t, Key{Namespace: "partners", Name: "client", Subject: "client"})
	sandbox := ks.Add(t, Key{Namespace: "sandbox", Name: "client", Subject: "client"})

	// passes asks for path on host with k and wants a 200 that reaches the
	// service with exactly the key server's headers for k and policy.
	passes := func(t *testing.T, k Key, host, path, policy string, extra http.Header) {
		t.Helper()
		before := up.Hits()
		r := sendAs(t, c, http.MethodGet, gw.Base+path, host, withKey(k, extra))
		r.want(t, http.StatusOK)
		if up.Hits() != before+1 {
			t.Fatalf("the service was called %d times, want once", up.Hits()-before)
		}
		if problems := OnlyHeaders(up.Last(), k.HeadersBy(policy)); len(problems) > 0 {
			t.Errorf("the service saw forged or missing identity headers:\n%s", strings.Join(problems, "\n"))
		}
	}
	// refused asks for path on host with k and wants a 403 with code, the
	// service not called.
	refused := func(t *testing.T, k Key, host, path string, code keypolicy.Code, extra http.Header) {
		t.Helper()
		before := up.Hits()
		r := sendAs(t, c, http.MethodGet, gw.Base+path, host, withKey(k, extra))
		r.want(t, http.StatusForbidden)
		if got := r.header.Get(wire.HeaderCode); got != string(code) {
			t.Errorf("%s: %q, want %q (body %q)", wire.HeaderCode, got, code, r.body)
		}
		if up.Hits() != before {
			t.Error("the service was called")
		}
	}

	t.Run("team-a's key opens team-a's host; the service sees team-a's identity and policy, nothing forged", func(t *testing.T) {
		passes(t, teamA, HostTeamA, "/orders", "team-a/api", nil)
	})
	t.Run("team-a's key on team-b's host: 403 WRONG_NAMESPACE", func(t *testing.T) {
		refused(t, teamA, HostTeamB, "/orders", keypolicy.WrongNamespace, nil)
	})
	t.Run("team-b's key on team-a's host: 403 WRONG_NAMESPACE", func(t *testing.T) {
		refused(t, teamB, HostTeamA, "/orders", keypolicy.WrongNamespace, nil)
	})
	t.Run("team-b's key opens team-b's host", func(t *testing.T) {
		passes(t, teamB, HostTeamB, "/orders", "team-b/api", nil)
	})
	t.Run("a key of a namespace team-b's policy lists passes there", func(t *testing.T) {
		passes(t, partner, HostTeamB, "/orders", "team-b/api", nil)
	})
	t.Run("a newer policy of another namespace naming team-a's host is not applied", func(t *testing.T) {
		refused(t, sandbox, HostTeamA, "/", keypolicy.WrongNamespace, nil)
	})
	t.Run("a host without a policy: 403 NO_POLICY", func(t *testing.T) {
		refused(t, teamA, HostNobody, "/", keypolicy.NoPolicy, nil)
	})
	t.Run("a path rule: team-b's /admin is for its group admins, not another namespace's", func(t *testing.T) {
		refused(t, teamB, HostTeamB, "/admin/users", keypolicy.SubjectNotAllowed, nil)
		refused(t, teamA, HostTeamB, "/admin/users", keypolicy.WrongNamespace, nil)
		passes(t, admin, HostTeamB, "/admin/users", "team-b/api", nil)
	})
	t.Run("the client's X-Forwarded-Host does not move the decision to another host", func(t *testing.T) {
		refused(t, teamA, HostTeamB, "/orders", keypolicy.WrongNamespace, http.Header{"X-Forwarded-Host": {HostTeamA}})
		refused(t, teamB, HostTeamA, "/orders", keypolicy.WrongNamespace, http.Header{"X-Forwarded-Host": {HostTeamB}})
	})
	t.Run("the client's URI headers do not move the decision to another path", func(t *testing.T) {
		for _, h := range []string{"X-Forwarded-Uri", "X-Original-Uri"} {
			before := up.Hits()
			r := sendAs(t, c, http.MethodGet, gw.Base+"/admin/users", HostTeamB, withKey(teamB, http.Header{h: {"/orders"}}))
			if r.status == http.StatusOK || up.Hits() != before {
				t.Errorf("%s: /orders: status %d, the service called %d times; want a refusal", h, r.status, up.Hits()-before)
			}
		}
	})
	t.Run("a dot-dot path is not judged as another path", func(t *testing.T) {
		before := up.Hits()
		r := sendAs(t, c, http.MethodGet, gw.Base+"/orders/../admin/users", HostTeamB, withKey(teamB, nil))
		if r.status == http.StatusOK || up.Hits() != before {
			t.Errorf("status %d, the service called %d times; want a refusal", r.status, up.Hits()-before)
		}
	})
}

func withKey(k Key, extra http.Header) http.Header {
	h := http.Header{"X-Api-Key": {k.Plaintext}}
	for name, v := range extra {
		h[name] = v
	}
	return h
}

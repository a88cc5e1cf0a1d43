package keyserver

import (
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/keypolicy"
)

// The decisions every front end must make alike (issue 14): forward-auth in
// each gateway's way of sending the original request, verify, and gRPC
// ext_authz (TestExtAuthzDecidesEveryCase). A front end's test builds
// decisionWorld and runs decisionCases() through its own wire format; a case
// it cannot express (a ?namespace= narrowing on verify) it skips, saying why.

// Credentials of the decision world, by name.
const (
	credTeamA       = "team-a key"                              // team-a, scopes orders:read, group admins (of team-a)
	credTeamAReader = "team-a ReadOnly key"                     // team-a, ReadOnly
	credTeamB       = "team-b key"                              // team-b, scopes orders:read orders:write
	credTeamBAdmin  = "team-b admin key"                        // team-b, group admins
	credSandbox     = "sandbox key"                             // sandbox (whose policy squats a.example.com)
	credTokenA      = "team-a token, default audience"          // a Keyward token of a team-a pair (aud keyward)
	credTokenAForB  = "team-a token, audience b.example.com"    // … whose pair names b.example.com
	credUnknown     = "an unknown key"                          // well-formed, never indexed
	credNone        = ""                                        // no credential at all
	credTokenAOrdrs = "team-a token with orders:read, aud b.ex" // aud b.example.com, scope orders:read
)

// decisionCase is one original request and what every front end answers.
type decisionCase struct {
	name string
	// mode is --default-policy ("" is deny).
	mode keypolicy.Mode
	// cred names the credential presented (credNone: none).
	cred string
	// The original request, as the client sent it to the gateway.
	host, path, method string
	// Narrowing the gateway asks for (?scope=, ?namespace=; verify's scopes).
	scopes, namespaces []string

	// status: 200, 401 or 403; code on a 403 (keypolicy.Code); policy is
	// the X-Keyward-Policy answered ("" for none).
	status int
	code   keypolicy.Code
	policy string
}

// decisionCases covers every code Decide answers, the conflict rule, the
// default modes and the narrowing.
func decisionCases() []decisionCase {
	const (
		a, b, c, d = "a.example.com", "b.example.com", "c.example.com", "d.example.com"
		polA, polB = "team-a/api", "team-b/api"
	)
	allow := keypolicy.ModeAllowValidKey
	return []decisionCase{
		// Hosts and namespaces.
		{name: "team-a's key on team-a's host", cred: credTeamA, host: a, path: "/orders", method: "GET", status: 200, policy: polA},
		{name: "team-b's key on team-a's host", cred: credTeamB, host: a, path: "/orders", method: "GET", status: 403, code: keypolicy.WrongNamespace, policy: polA},
		{name: "a host with a port, in capitals, with a trailing dot", cred: credTeamA, host: "A.Example.COM.:8443", path: "/", method: "GET", status: 200, policy: polA},
		{name: "conflict: a newer policy of another namespace naming team-a's host is not applied", cred: credSandbox, host: a, path: "/", method: "GET", status: 403, code: keypolicy.WrongNamespace, policy: polA},
		{name: "a namespace team-b's policy lists passes there", cred: credTeamA, host: b, path: "/orders/7", method: "GET", status: 200, policy: polB},
		{name: "a wildcard host", cred: credTeamA, host: "eu." + b, path: "/orders", method: "HEAD", status: 200, policy: polB},
		{name: "a namespace selected by label", cred: credTeamA, host: d, path: "/", method: "GET", status: 200, policy: "team-d/api"},
		{name: "a namespace the selector does not select", cred: credTeamB, host: d, path: "/", method: "GET", status: 403, code: keypolicy.WrongNamespace, policy: "team-d/api"},

		// No policy.
		{name: "a host without a policy, deny", cred: credTeamA, host: "nobody.example.com", path: "/", method: "GET", status: 403, code: keypolicy.NoPolicy},
		{name: "a host without a policy, allow-valid-key", mode: allow, cred: credTeamB, host: "nobody.example.com", path: "/", method: "POST", status: 200},
		{name: "a path no policy of the host claims, even under allow-valid-key", mode: allow, cred: credTeamB, host: b, path: "/other", method: "GET", status: 403, code: keypolicy.NoPolicy},
		{name: "an invalid policy refuses its host", mode: allow, cred: credTeamA, host: c, path: "/", method: "GET", status: 403, code: keypolicy.PolicyInvalid, policy: "team-c/broken"},

		// Rules.
		{name: "a rule's required scope", cred: credTeamA, host: b, path: "/orders", method: "POST", status: 403, code: keypolicy.InsufficientScope, policy: polB},
		{name: "a rule's required scope, held", cred: credTeamB, host: b, path: "/orders", method: "POST", status: 200, policy: polB},
		{name: "a method no rule of the path allows", cred: credTeamB, host: b, path: "/healthz", method: "DELETE", status: 403, code: keypolicy.MethodNotAllowed, policy: polB},
		{name: "a group of the key's own namespace is not the policy's", cred: credTeamA, host: b, path: "/admin/users", method: "GET", status: 403, code: keypolicy.SubjectNotAllowed, policy: polB},
		{name: "the policy's group", cred: credTeamBAdmin, host: b, path: "/admin/users", method: "DELETE", status: 200, policy: polB},
		{name: "an escaped path is judged decoded", cred: credTeamA, host: b, path: "/%61dmin", method: "GET", status: 403, code: keypolicy.SubjectNotAllowed, policy: polB},

		// Access mode.
		{name: "a ReadOnly key and POST", cred: credTeamAReader, host: a, path: "/", method: "POST", status: 403, code: keypolicy.ReadOnly, policy: polA},
		{name: "a ReadOnly key and GET", cred: credTeamAReader, host: a, path: "/", method: "GET", status: 200, policy: polA},
		{name: "a ReadOnly key and POST where no policy names the host", mode: allow, cred: credTeamAReader, host: "nobody.example.com", path: "/", method: "POST", status: 403, code: keypolicy.ReadOnly},

		// Tokens.
		{name: "a token where the default audience is accepted", cred: credTokenA, host: a, path: "/", method: "GET", status: 200, policy: polA},
		{name: "a token without the audience the policy requires", cred: credTokenA, host: b, path: "/orders", method: "GET", status: 403, code: keypolicy.TokenNotAccepted, policy: polB},
		{name: "a token with the audience the policy requires", cred: credTokenAOrdrs, host: b, path: "/orders", method: "GET", status: 200, policy: polB},
		{name: "a token where the policy accepts API keys only", cred: credTokenA, host: "keys." + b, path: "/", method: "GET", status: 403, code: keypolicy.TokenNotAccepted, policy: "team-b/keys-only"},
		{name: "a token for another API where no policy names the host", mode: allow, cred: credTokenAForB, host: "nobody.example.com", path: "/", method: "GET", status: 401},

		// Narrowing: refuses more, never admits more.
		{name: "?scope= the key lacks", cred: credTeamA, host: a, path: "/", method: "GET", scopes: []string{"orders:write"}, status: 403, code: keypolicy.InsufficientScope, policy: polA},
		{name: "?namespace= not the key's", mode: allow, cred: credTeamB, host: "nobody.example.com", path: "/", method: "GET", namespaces: []string{"team-a"}, status: 403, code: keypolicy.WrongNamespace},
		{name: "?namespace= cannot admit what the policy refuses", cred: credTeamB, host: a, path: "/", method: "GET", namespaces: []string{"team-b"}, status: 403, code: keypolicy.WrongNamespace, policy: polA},

		// Requests that cannot be judged.
		{name: "a dot-dot segment on a host a policy names", cred: credTeamA, host: b, path: "/orders/../admin", method: "GET", status: 403, code: keypolicy.InvalidRequest},
		{name: "an escaped dot-dot segment", cred: credTeamA, host: b, path: "/orders/%2e%2e/admin", method: "GET", status: 403, code: keypolicy.InvalidRequest},
		{name: "a host that is no host name", cred: credTeamA, host: "a.example.com,b.example.com", path: "/", method: "GET", status: 403, code: keypolicy.InvalidRequest},

		// Keys that are not valid are 401 before any policy is asked.
		{name: "an unknown key", cred: credUnknown, host: a, path: "/", method: "GET", status: 401},
		{name: "no key", cred: credNone, host: a, path: "/", method: "GET", status: 401},
		{name: "no key on a host without a policy", cred: credNone, host: "nobody.example.com", path: "/", method: "GET", status: 401},
	}
}

// decisionWorld is a key server holding the policies and keys the cases
// name: team-a's API at a.example.com (its own keys), team-b's at
// b.example.com and *.b.example.com (team-a's keys too, with rules), an API
// of team-b's accepting API keys only, a newer policy of namespace sandbox
// squatting a.example.com, an invalid policy of team-c, and team-d's
// accepting namespaces labelled tier=trusted (team-a is).
type decisionWorld struct {
	*fixture
	creds map[string]string
}

func newDecisionWorld(t *testing.T, mode keypolicy.Mode, mut ...func(*Options)) *decisionWorld {
	t.Helper()
	f := newFixture(t, append([]func(*Options){func(o *Options) { o.DefaultPolicy = mode }}, mut...)...)
	w := &decisionWorld{fixture: f, creds: map[string]string{}}

	at := func(minutes int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(minutes) * time.Minute)) }
	policy := func(ns, name string, created int, spec kw.KeyPolicySpec) kw.KeyPolicy {
		return kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, CreationTimestamp: at(created)}, Spec: spec}
	}
	f.s.SetPolicies(keypolicy.Build([]kw.KeyPolicy{
		policy("team-a", "api", 0, kw.KeyPolicySpec{Hosts: []kw.Hostname{"a.example.com"}}),
		policy("team-b", "api", 1, kw.KeyPolicySpec{
			Hosts:  []kw.Hostname{"b.example.com", "*.b.example.com"},
			Keys:   &kw.KeyPolicyKeys{Namespaces: []string{"team-a"}},
			Tokens: &kw.KeyPolicyTokens{Audience: "b.example.com"},
			Rules: []kw.KeyPolicyRule{
				{PathPrefix: "/admin", Groups: []kw.KeyPolicySubject{{Name: "admins"}}},
				{PathPrefix: "/orders", Methods: []kw.HTTPMethod{"GET", "HEAD"}, RequiredScopes: []string{"orders:read"}},
				{PathPrefix: "/orders", RequiredScopes: []string{"orders:write"}},
				{PathPrefix: "/healthz", Methods: []kw.HTTPMethod{"GET"}},
			},
		}),
		policy("team-b", "keys-only", 2, kw.KeyPolicySpec{Hosts: []kw.Hostname{"keys.b.example.com"},
			Keys: &kw.KeyPolicyKeys{Namespaces: []string{"team-a"}}, Tokens: &kw.KeyPolicyTokens{Accept: kw.TokensNever}}),
		policy("sandbox", "squatter", 3, kw.KeyPolicySpec{Hosts: []kw.Hostname{"a.example.com"}}),
		policy("team-c", "broken", 4, kw.KeyPolicySpec{Hosts: []kw.Hostname{"c.example.com"},
			Rules: []kw.KeyPolicyRule{{Subjects: []kw.KeyPolicySubject{{Namespace: "elsewhere", Name: "x"}}}}}),
		policy("team-d", "api", 5, kw.KeyPolicySpec{Hosts: []kw.Hostname{"d.example.com"},
			Keys: &kw.KeyPolicyKeys{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "trusted"}}}}),
	}))
	nsLabels := map[string]labels.Set{"team-a": {"tier": "trusted"}, "team-b": {"tier": "public"}}
	f.s.SetNamespaceLabels(func(ns string) (labels.Labels, bool) {
		l, ok := nsLabels[ns]
		return l, ok
	})

	w.creds[credTeamA] = w.key("team-a", "app", kw.AccessReadWrite, []string{"admins"}, "orders:read")
	w.creds[credTeamAReader] = w.key("team-a", "reader", kw.AccessReadOnly, nil)
	w.creds[credTeamB] = w.key("team-b", "app", kw.AccessReadWrite, nil, "orders:read", "orders:write")
	w.creds[credTeamBAdmin] = w.key("team-b", "admin", kw.AccessReadWrite, []string{"admins"})
	w.creds[credSandbox] = w.key("sandbox", "app", kw.AccessReadWrite, nil)
	w.creds[credTokenA] = w.token("team-a", "default-aud", nil)
	w.creds[credTokenAForB] = w.token("team-a", "for-b", []string{"b.example.com"})
	w.creds[credTokenAOrdrs] = w.token("team-a", "for-b-orders", []string{"b.example.com"}, "orders:read")
	unknown, err := keymaterial.Generate("kw")
	if err != nil {
		t.Fatal(err)
	}
	w.creds[credUnknown] = unknown.String()
	return w
}

// decisionWorlds is a decisionWorld for each default mode the cases name
// ("" and deny alike), with failed attempts unlimited.
func decisionWorlds(t *testing.T, mut ...func(*Options)) map[keypolicy.Mode]*decisionWorld {
	t.Helper()
	mut = append([]func(*Options){func(o *Options) { o.FailureLimit = 1 << 20 }}, mut...)
	deny := newDecisionWorld(t, keypolicy.ModeDeny, mut...)
	return map[keypolicy.Mode]*decisionWorld{
		"": deny, keypolicy.ModeDeny: deny,
		keypolicy.ModeAllowValidKey: newDecisionWorld(t, keypolicy.ModeAllowValidKey, mut...),
	}
}

// key indexes an API key of namespace ns and returns its plaintext.
func (w *decisionWorld) key(ns, name string, access kw.AccessMode, groups []string, scopes ...string) string {
	w.t.Helper()
	k, err := keymaterial.Generate("kw")
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, ns, name), &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: ns, Name: name, Subject: name,
		Groups: groups, Scopes: scopes, Access: string(access),
		Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
	}); err != nil {
		w.t.Fatal(err)
	}
	return k.String()
}

// token indexes an access key pair of namespace ns whose tokens carry
// audiences, and returns a token issued for it.
func (w *decisionWorld) token(ns, name string, audiences []string, scopes ...string) string {
	w.t.Helper()
	ak, _ := keymaterial.GenerateAccessKeyID()
	sk, _ := keymaterial.GenerateSecretKey()
	if err := w.s.index.Upsert(hashsecret.Name(hashsecret.KindAccessKeyPair, ns, name), &hashsecret.Record{
		Kind: hashsecret.KindAccessKeyPair, Namespace: ns, Name: name, Subject: name, Scopes: scopes,
		Current: &hashsecret.Version{ID: ak, Hash: keymaterial.Hash(sk), NotBefore: t0.Add(-time.Hour)},
		Tokens:  &hashsecret.TokenPolicy{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, Audiences: audiences},
	}); err != nil {
		w.t.Fatal(err)
	}
	got := w.fixture.token(jsonToken(ak, sk, ""))
	if got.status != http.StatusOK {
		w.t.Fatalf("a token for %s/%s: %d %s", ns, name, got.status, got.body)
	}
	return got.resp.Token
}

package keyserver

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/keypolicy"
)

// Attacks on the gRPC ext_authz front end (issue 16), numbered from 40 to
// stay clear of the other branches' numbers.

// TestAttack40ForgedSourceAddressEvadesTheFailureLimit: anyone who reaches
// the gRPC port (any pod: the NetworkPolicy lets every namespace in) writes
// attributes.source.address as it likes; believed, each guess would come
// from a fresh address with a fresh budget of failures. It is believed only
// from a peer in --trusted-proxies (the gateways), as X-Forwarded-For is.
func TestAttack40ForgedSourceAddressEvadesTheFailureLimit(t *testing.T) {
	const limit = 5
	guess := func(client authv3.AuthorizationClient, i int) int {
		req := envoyCheck("api.example.com", "GET", "/", map[string]string{"authorization": "Bearer not-a-key-" + string(rune('a'+i%26))}, nil)
		req.Attributes.Source.Address = socketAddress("203.0.113."+itoa(1+i), 40000)
		resp, err := client.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return asHTTP(t, resp).Code
	}
	t.Run("from a caller that is not a trusted proxy", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.FailureLimit = limit })
		client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
		for i := range limit {
			if got := guess(client, i); got != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d, want 401", i+1, got)
			}
		}
		if got := guess(client, limit); got != http.StatusTooManyRequests {
			t.Fatalf("guess %d from a new forged source address: %d, want 429 (counted against the caller)", limit+1, got)
		}
	})
	t.Run("from Envoy in --trusted-proxies: each downstream client its own budget", func(t *testing.T) {
		f := newFixture(t, func(o *Options) {
			o.FailureLimit = limit
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
		for i := range 3 * limit {
			if got := guess(client, i); got != http.StatusUnauthorized {
				t.Fatalf("client %d's first failure: %d, want 401", i+1, got)
			}
		}
	})
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// envoyApplies is what the upstream receives from a client that sent
// client, once Envoy applied ok: the headers set (overwriting), and those
// named removed, in either order (Envoy's documentation does not promise
// one): both results are returned.
func envoyApplies(client map[string][]string, ok *authv3.OkHttpResponse) (setFirst, removeFirst map[string][]string) {
	apply := func(removeBefore bool) map[string][]string {
		h := map[string][]string{}
		for k, v := range client {
			h[k] = append([]string(nil), v...)
		}
		remove := func() {
			for _, k := range ok.GetHeadersToRemove() {
				delete(h, strings.ToLower(k))
			}
		}
		if removeBefore {
			remove()
		}
		for _, o := range ok.GetHeaders() {
			h[strings.ToLower(o.GetHeader().GetKey())] = []string{o.GetHeader().GetValue()}
		}
		if !removeBefore {
			remove()
		}
		return h
	}
	return apply(false), apply(true)
}

// TestAttack41ForgedIdentityHeadersReachTheUpstream: a client sends its own
// X-Keyward-* headers beside a valid key, in the names Envoy passes on
// (lower-cased) and in the aliases PHP, CGI and WSGI fold to them. What
// reaches the upstream must be the key server's values or nothing: the
// identity headers are overwritten, one with nothing to say (a key without
// groups) is removed, and every other client header under the prefix too.
func TestAttack41ForgedIdentityHeadersReachTheUpstream(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeAllowValidKey)
	client := authv3.NewAuthorizationClient(extAuthzConn(t, w.s, false))
	forged := map[string]string{
		"x-keyward-subject":   "admin",
		"x-keyward-groups":    "admins", // the key has none
		"x-keyward-namespace": "kube-system",
		"x_keyward_policy":    "team-b/api",
		"x.keyward.key-id":    "kw_forged",
		"x-keyward-access":    "ReadWrite",
		"x-keyward_scopes":    "orders:write",
	}
	headers := map[string]string{"authorization": "Bearer " + w.creds[credTeamB]}
	for k, v := range forged {
		headers[k] = v
	}
	resp, err := client.Check(context.Background(), envoyCheck("nobody.example.com", "GET", "/", headers, nil))
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not OK: %v", resp)
	}
	sent := map[string][]string{}
	for k, v := range headers {
		sent[k] = []string{v}
	}
	a, b := envoyApplies(sent, ok)
	for order, up := range map[string]map[string][]string{"set, then remove": a, "remove, then set": b} {
		for name, v := range forged {
			if got := up[name]; len(got) > 0 && got[0] == v {
				t.Errorf("%s: the upstream receives the client's %s: %q", order, name, v)
			}
		}
		if got := up[strings.ToLower(wire.HeaderSubject)]; len(got) != 1 || got[0] == "" || got[0] == forged["x-keyward-subject"] {
			t.Errorf("%s: the upstream receives %s %q, want the key's subject", order, wire.HeaderSubject, got)
		}
		if got := up[strings.ToLower(wire.HeaderNamespace)]; len(got) != 1 || got[0] != "team-b" {
			t.Errorf("%s: the upstream receives %s %q, want team-b", order, wire.HeaderNamespace, got)
		}
	}
}

// TestAttack42TwoCredentialsInOneCheck: Envoy with encode_raw_headers sends
// each copy of a header; a request with two Authorization headers, two
// X-API-Keys, two different credentials or an alias of X-API-Key is
// refused (400) as /v1/authz refuses it, not judged by one copy while the
// upstream reads another. Without encode_raw_headers Envoy joins copies
// with ",", which no credential validates as (401).
func TestAttack42TwoCredentialsInOneCheck(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeAllowValidKey)
	client := authv3.NewAuthorizationClient(extAuthzConn(t, w.s, false))
	valid, other := w.creds[credTeamA], w.creds[credTeamB]
	for name, c := range map[string]struct {
		headers map[string]string
		extra   [][2]string // more copies, in header_map
		want    int
	}{
		"two Authorization headers (raw)":     {map[string]string{"authorization": "Bearer " + valid}, [][2]string{{"authorization", "Bearer " + other}}, 400},
		"two X-API-Key headers (raw)":         {map[string]string{"x-api-key": valid}, [][2]string{{"x-api-key", other}}, 400},
		"Authorization and another X-API-Key": {map[string]string{"authorization": "Bearer " + valid, "x-api-key": other}, nil, 400},
		"X_API_Key beside Authorization":      {map[string]string{"authorization": "Bearer " + valid, "x_api_key": other}, nil, 400},
		"x.api.key beside Authorization":      {map[string]string{"authorization": "Bearer " + valid, "x.api.key": other}, nil, 400},
		"two Authorization headers, joined":   {map[string]string{"authorization": "Bearer " + valid + ",Bearer " + other}, nil, 401},
		"the same key in both headers":        {map[string]string{"authorization": "Bearer " + valid, "x-api-key": valid}, nil, 200},
	} {
		t.Run(name, func(t *testing.T) {
			req := envoyCheck("nobody.example.com", "GET", "/", c.headers, nil)
			if c.extra != nil {
				rawHeaders(req, c.extra...)
			}
			resp, err := client.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if rec := asHTTP(t, resp); rec.Code != c.want {
				t.Fatalf("%d (%s), want %d", rec.Code, strings.TrimSpace(rec.Body.String()), c.want)
			}
		})
	}
}

// TestAttack43ClientHeadersMoveTheDecision: the headers HTTP forward-auth
// reads the original request from (X-Forwarded-Host, -Uri, -Method,
// X-Original-*) are the client's own under gRPC, where Envoy reports host,
// path and method itself: they are not read, even from a trusted Envoy.
func TestAttack43ClientHeadersMoveTheDecision(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeDeny, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	client := authv3.NewAuthorizationClient(extAuthzConn(t, w.s, false))
	resp, err := client.Check(context.Background(), envoyCheck("b.example.com", "DELETE", "/admin/users", map[string]string{
		"authorization":      "Bearer " + w.creds[credTeamA],
		"x-forwarded-host":   "a.example.com",
		"x-forwarded-uri":    "/",
		"x-original-uri":     "/",
		"x-forwarded-method": "GET",
		"x-original-method":  "GET",
	}, nil))
	if err != nil {
		t.Fatal(err)
	}
	rec := asHTTP(t, resp)
	if rec.Code != http.StatusForbidden || rec.Header().Get(wire.HeaderPolicy) != "team-b/api" {
		t.Fatalf("%d by %q (%s): the client's headers chose the request judged", rec.Code, rec.Header().Get(wire.HeaderPolicy), rec.Body)
	}
}

// TestAttack44SpoofingTheClientAddressForAnAllowList: a key's allowedCIDRs
// are judged against the client address; through gRPC that is the
// attributes.source.address Envoy reports, believed only from a peer in
// --trusted-proxies. A caller of the gRPC port elsewhere that writes an
// allowed address as its source is judged by its own address.
func TestAttack44SpoofingTheClientAddressForAnAllowList(t *testing.T) {
	check := func(t *testing.T, trusted []netip.Prefix, source string) int {
		t.Helper()
		f := newFixture(t, func(o *Options) { o.TrustedProxies = trusted })
		key := f.apiKey("billing", cidrsOf("10.0.0.0/8"))
		client := authv3.NewAuthorizationClient(extAuthzConn(t, f.s, false))
		req := envoyCheck("api.example.com", "GET", "/", map[string]string{"authorization": "Bearer " + key}, nil)
		req.Attributes.Source.Address = socketAddress(source, 40000)
		resp, err := client.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		rec := asHTTP(t, resp)
		if rec.Code == http.StatusForbidden && rec.Header().Get(wire.HeaderCode) != string(keypolicy.CIDRNotAllowed) {
			t.Fatalf("403 with code %q", rec.Header().Get(wire.HeaderCode))
		}
		return rec.Code
	}
	envoy := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for name, c := range map[string]struct {
		trusted []netip.Prefix
		source  string
		want    int
	}{
		"a caller that is no trusted proxy, claiming an allowed address": {nil, "10.1.1.1", http.StatusForbidden},
		"Envoy in --trusted-proxies, reporting an allowed client":        {envoy, "10.1.1.1", http.StatusOK},
		"Envoy in --trusted-proxies, reporting a client outside":         {envoy, "203.0.113.1", http.StatusForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			if got := check(t, c.trusted, c.source); got != c.want {
				t.Fatalf("%d, want %d", got, c.want)
			}
		})
	}
}

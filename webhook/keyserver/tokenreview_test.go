package keyserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

func reviewBody(tok string) io.Reader {
	body, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}})
	return bytes.NewReader(body)
}

// tokenReview posts body to a TokenReview handler with the given allow-list.
func (f *fixture) tokenReview(body io.Reader, clusterGroups ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	cg, err := ParseClusterGroups(clusterGroups)
	if err != nil {
		f.t.Fatal(err)
	}
	// The handler alone: the TLS listener has its own tests.
	trs, err := NewTokenReviewServer(f.s, TokenReviewOptions{CertDir: "unused", ClientCAFile: "unused", ClusterGroups: cg})
	if err != nil {
		f.t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	trs.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, TokenReviewPath, body))
	return rec
}

func (f *fixture) reviewStatus(tok string, clusterGroups ...string) authnv1.TokenReviewStatus {
	f.t.Helper()
	rec := f.tokenReview(reviewBody(tok), clusterGroups...)
	var tr authnv1.TokenReview
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &tr) != nil {
		f.t.Fatalf("TokenReview answered %d %s", rec.Code, rec.Body)
	}
	return tr.Status
}

// apiKeyIn indexes a key of namespace ns carrying groups.
func (f *fixture) apiKeyIn(ns, name string, groups ...string) string {
	f.t.Helper()
	k, err := keymaterial.Generate("kw")
	if err != nil {
		f.t.Fatal(err)
	}
	rec := &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: ns, Name: name, Subject: name, Groups: groups, Access: string(kw.AccessReadWrite),
		Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
	}
	if err := f.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, ns, name), rec); err != nil {
		f.t.Fatal(err)
	}
	return k.String()
}

// tlsListener starts a TokenReviewServer on 127.0.0.1 serving a certificate
// of serverCA and trusting the client CA bundle at caFile.
func tlsListener(t *testing.T, f *fixture, serverCA *TestCA, caFile string) string {
	t.Helper()
	dir := t.TempDir()
	crt, key, err := serverCA.Issue("key-server", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tls.crt"), crt)
	writeFile(t, filepath.Join(dir, "tls.key"), key)
	trs, err := NewTokenReviewServer(f.s, TokenReviewOptions{BindAddress: "127.0.0.1:0", CertDir: dir, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = trs.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr, err := trs.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return "https://" + addr.String() + TokenReviewPath
}

// caller posts a TokenReview over TLS, trusting serverCA, presenting certs.
func caller(t *testing.T, serverCA *TestCA, url, tok string, certs ...tls.Certificate) (authnv1.TokenReviewStatus, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCA.PEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post(url, "application/json", reviewBody(tok))
	if err != nil {
		return authnv1.TokenReviewStatus{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var tr authnv1.TokenReview
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return tr.Status, nil
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T, name string) *TestCA {
	t.Helper()
	ca, err := NewTestCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func clientCert(t *testing.T, ca *TestCA) tls.Certificate {
	t.Helper()
	c, err := ca.ClientCert("kube-apiserver")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Attack 5: anyone reaching the key server's public port used TokenReview
// as an oracle for guessed keys, failures never counted. It is answered now
// only on a listener of its own, to a caller with a client certificate from
// the configured CA.
func TestAttack5GuessingKeysOnlineThroughTokenReview(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	for _, tok := range []string{key, "kw_guess"} {
		rec := f.do(httptest.NewRequest(http.MethodPost, TokenReviewPath, reviewBody(tok)))
		if rec.Code != http.StatusNotFound {
			t.Fatalf("the public port answered a TokenReview: %d %s", rec.Code, rec.Body)
		}
	}

	serverCA, apiserverCA, otherCA := newCA(t, "serving"), newCA(t, "kube-apiserver clients"), newCA(t, "other")
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	writeFile(t, caFile, apiserverCA.PEM)
	url := tlsListener(t, f, serverCA, caFile)

	if st, err := caller(t, serverCA, url, key); err == nil {
		t.Fatalf("a caller without a client certificate was answered: %+v", st)
	}
	if st, err := caller(t, serverCA, url, key, clientCert(t, otherCA)); err == nil {
		t.Fatalf("a caller with another CA's certificate was answered: %+v", st)
	}
	st, err := caller(t, serverCA, url, key, clientCert(t, apiserverCA))
	if err != nil || !st.Authenticated || st.User.Username != "keyward:team-a:billing-subject" {
		t.Fatalf("kube-apiserver's certificate: %+v, %v", st, err)
	}
}

func TestTheTokenReviewClientCAIsReadAgainWhenItChanges(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("billing")
	serverCA, oldCA, newCA := newCA(t, "serving"), newCA(t, "old clients"), newCA(t, "new clients")
	caFile := filepath.Join(t.TempDir(), "client-ca.crt") // absent at start: nobody is trusted
	url := tlsListener(t, f, serverCA, caFile)
	if _, err := caller(t, serverCA, url, key, clientCert(t, oldCA)); err == nil {
		t.Fatal("answered while the client CA file was missing")
	}
	writeFile(t, caFile, oldCA.PEM)
	if st, err := caller(t, serverCA, url, key, clientCert(t, oldCA)); err != nil || !st.Authenticated {
		t.Fatalf("after the CA appeared: %+v, %v", st, err)
	}
	// A rotated file: a new name, as a ConfigMap volume swaps it.
	next := caFile + ".next"
	writeFile(t, next, newCA.PEM)
	if err := os.Rename(next, caFile); err != nil {
		t.Fatal(err)
	}
	if _, err := caller(t, serverCA, url, key, clientCert(t, oldCA)); err == nil {
		t.Fatal("the replaced CA is still trusted")
	}
	if st, err := caller(t, serverCA, url, key, clientCert(t, newCA)); err != nil || !st.Authenticated {
		t.Fatalf("after rotation: %+v, %v", st, err)
	}
}

func TestTheTokenReviewListenerNeedsTLSAndAClientCA(t *testing.T) {
	f := newFixture(t)
	for _, o := range []TokenReviewOptions{{ClientCAFile: "ca.crt"}, {CertDir: "/certs"}} {
		if _, err := NewTokenReviewServer(f.s, o); err == nil {
			t.Fatalf("%+v was accepted", o)
		}
	}
}

func TestTheTokenReviewBodyIsBounded(t *testing.T) {
	f := newFixture(t)
	body := `{"spec":{"token":"` + strings.Repeat("a", maxBodyBytes) + `"}}`
	if rec := f.tokenReview(strings.NewReader(body)); rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
}

// Attack 6: a tenant put "admins" in its key's groups and received every
// permission bound to keyward:admins. Groups are namespaced now; a
// cluster-wide group comes only from the operator's allow-list.
func TestAttack6JoiningAnotherTeamsRBACGroup(t *testing.T) {
	f := newFixture(t)
	allow := "platform/admins"
	tenant := f.apiKeyIn("team-a", "intruder", "admins")
	st := f.reviewStatus(tenant, allow)
	if !st.Authenticated || slices.Contains(st.User.Groups, "keyward:admins") {
		t.Fatalf("a tenant's key joined the cluster-wide group: %+v", st)
	}
	if want := []string{"keyward:team-a:admins", "keyward:authenticated"}; !slices.Equal(st.User.Groups, want) {
		t.Fatalf("groups %v, want %v", st.User.Groups, want)
	}
	platform := f.apiKeyIn("platform", "ops", "admins")
	if got, want := f.reviewStatus(platform, allow).User.Groups, []string{"keyward:platform:admins", "keyward:admins", "keyward:authenticated"}; !slices.Equal(got, want) {
		t.Fatalf("the allow-listed key: groups %v, want %v", got, want)
	}
}

func TestKubeGroups(t *testing.T) {
	allow := ClusterGroups{{Namespace: "platform", Group: "admins"}: true}
	cases := map[string]struct {
		ns     string
		groups []string
		want   []string
	}{
		"no groups: only keyward:authenticated": {"team-a", nil, []string{"keyward:authenticated"}},
		"a tenant's group is namespaced":        {"team-a", []string{"admins"}, []string{"keyward:team-a:admins", "keyward:authenticated"}},
		"the allow-listed namespace also gets the cluster-wide group": {"platform", []string{"admins", "ops"},
			[]string{"keyward:platform:admins", "keyward:admins", "keyward:platform:ops", "keyward:authenticated"}},
		// The namespace ends at the first ':' (namespaces have none): no
		// tenant of another namespace, nor the allow-list, names this one.
		"a group with ':' stays in its namespace": {"team-a", []string{"platform:admins"}, []string{"keyward:team-a:platform:admins", "keyward:authenticated"}},
		"a group named like the allow-list entry": {"team-a", []string{"platform/admins"}, []string{"keyward:team-a:platform/admins", "keyward:authenticated"}},
		"a group named authenticated":             {"team-a", []string{"authenticated"}, []string{"keyward:team-a:authenticated", "keyward:authenticated"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := kubeGroups(c.ns, c.groups, allow); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestParseClusterGroups(t *testing.T) {
	cases := map[string]struct {
		entries []string
		want    ClusterGroups
		fails   bool
	}{
		"none":                                 {nil, ClusterGroups{}, false},
		"namespace/group":                      {[]string{"platform/admins", "ci/deployers"}, ClusterGroups{{"platform", "admins"}: true, {"ci", "deployers"}: true}, false},
		"a group may hold '/'":                 {[]string{"platform/a/b"}, ClusterGroups{{"platform", "a/b"}: true}, false},
		"no namespace":                         {[]string{"admins"}, nil, true},
		"empty group":                          {[]string{"platform/"}, nil, true},
		"not a namespace name":                 {[]string{"Platform_1/admins"}, nil, true},
		"':' would read as a namespaced group": {[]string{"platform/team-a:admins"}, nil, true},
		"authenticated is every key's already": {[]string{"platform/authenticated"}, nil, true},
		"a group longer than 253 characters":   {[]string{"platform/" + strings.Repeat("g", 254)}, nil, true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseClusterGroups(c.entries)
			if (err != nil) != c.fails {
				t.Fatalf("error %v, want failure %v", err, c.fails)
			}
			if !c.fails && len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for k := range c.want {
				if !got[k] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}

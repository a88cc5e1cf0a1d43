package gatewaytest

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestIsKeywardHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Keyward-Subject":   true,
		"x-keyward-whatever":  true,
		"X_Keyward_Namespace": true,
		"X.keyward.subject":   true,
		"x~KEYWARD~groups":    true,
		"X-Keyward_Key-Id":    true,
		"X-Keyward":           false,
		"X-Keywarden-Subject": false,
		"Keyward-Subject":     false,
		"X-Forwarded-For":     false,
	} {
		if got := IsKeywardHeader(name); got != want {
			t.Errorf("IsKeywardHeader(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestOnlyHeaders(t *testing.T) {
	want := map[string]string{"X-Keyward-Subject": "s", "X-Keyward-Groups": ""}
	for name, tc := range map[string]struct {
		got  http.Header
		want []string
	}{
		"exactly the key server's":   {http.Header{"X-Keyward-Subject": {"s"}, "Accept": {"*/*"}}, nil},
		"an empty value sent empty":  {http.Header{"X-Keyward-Subject": {"s"}, "X-Keyward-Groups": {""}}, nil},
		"a forged value beside it":   {http.Header{"X-Keyward-Subject": {"s", "admin"}}, []string{"X-Keyward-Subject: s | admin, want only s"}},
		"a forged value instead":     {http.Header{"X-Keyward-Subject": {"admin"}}, []string{"X-Keyward-Subject: admin, want only s"}},
		"missing":                    {http.Header{}, []string{"missing X-Keyward-Subject: s"}},
		"an unknown name":            {http.Header{"X-Keyward-Subject": {"s"}, "X-Keyward-Access": {"rw"}}, []string{"unexpected X-Keyward-Access: rw"}},
		"an alias":                   {http.Header{"X-Keyward-Subject": {"s"}, "X_keyward_subject": {"admin"}}, []string{"unexpected X_keyward_subject: admin"}},
		"an empty one given a value": {http.Header{"X-Keyward-Subject": {"s"}, "X-Keyward-Groups": {"admins"}}, []string{"X-Keyward-Groups: admins, want only "}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := OnlyHeaders(tc.got, want); !slices.Equal(got, tc.want) {
				t.Errorf("OnlyHeaders = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSendUsesHost: CheckForgedIdentity's requests carry Gateway.Host, or a
// gateway that routes by host name (the Traefik block) answers 404.
func TestSendUsesHost(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Host }))
	defer srv.Close()
	c := srv.Client()
	send(t, c, srv.URL+"/", "billing.example.com", nil).want(t, http.StatusOK)
	if got != "billing.example.com" {
		t.Errorf("Host %q, want billing.example.com", got)
	}
	send(t, c, srv.URL+"/", "", nil).want(t, http.StatusOK)
	if want := strings.TrimPrefix(srv.URL, "http://"); got != want {
		t.Errorf("Host %q, want the URL's, %s", got, want)
	}
}

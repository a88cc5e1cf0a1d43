package keyserver

import (
	"encoding/json"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Issue 12, attack 11: only the first Authorization header was checked, so
// an upstream reading another one (or X-API-Key) acted on a credential the
// key server never saw.
func TestAttack11TwoCredentialsInOneRequest(t *testing.T) {
	f := newFixture(t, withRefusingRotator)
	key := f.apiKey("billing")
	other := f.apiKey("reports")
	ak, sk := f.pair("alice-1")
	bk, bsk := f.pair("bob-1")

	type endpoint struct {
		req  func() *http.Request
		json bool // answers errors as JSON
		ok   int  // the status of an unambiguous valid credential
	}
	headerEndpoints := map[string]endpoint{
		"authz":  {req: func() *http.Request { return httptest.NewRequest(http.MethodGet, "/v1/authz/orders", nil) }, ok: http.StatusOK},
		"rotate": {req: func() *http.Request { return httptest.NewRequest(http.MethodPost, "/v1/keys/current/rotate", nil) }, json: true, ok: notRotatable},
	}
	combos := map[string]struct {
		header http.Header
		want   int // 0: the endpoint's ok
	}{
		"two Authorization headers, the valid one first": {header: http.Header{"Authorization": {"Bearer " + key, "Bearer junk"}}, want: http.StatusBadRequest},
		"two Authorization headers, the valid one last":  {header: http.Header{"Authorization": {"Bearer junk", "Bearer " + key}}, want: http.StatusBadRequest},
		"two valid keys in Authorization":                {header: http.Header{"Authorization": {"Bearer " + key, "Bearer " + other}}, want: http.StatusBadRequest},
		"the same key twice in Authorization":            {header: http.Header{"Authorization": {"Bearer " + key, "Bearer " + key}}, want: http.StatusBadRequest},
		"an empty Authorization and a key":               {header: http.Header{"Authorization": {"", "Bearer " + key}}, want: http.StatusBadRequest},
		"two X-API-Key headers":                          {header: http.Header{"X-Api-Key": {key, other}}, want: http.StatusBadRequest},
		"Authorization and a different X-API-Key":        {header: http.Header{"Authorization": {"Bearer " + key}, "X-Api-Key": {other}}, want: http.StatusBadRequest},
		"junk Authorization and a valid X-API-Key":       {header: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}, "X-Api-Key": {key}}, want: http.StatusBadRequest},
		"the same key in Authorization and X-API-Key":    {header: http.Header{"Authorization": {"Bearer " + key}, "X-Api-Key": {key}}},
		"the same key, raw and in X-API-Key":             {header: http.Header{"Authorization": {key}, "X-Api-Key": {" " + key}}},
		"one Authorization header":                       {header: http.Header{"Authorization": {"Bearer " + key}}},
		"one X-API-Key header":                           {header: http.Header{"X-Api-Key": {key}}},
		// Names that PHP, CGI and WSGI upstreams read as X-API-Key (they
		// fold "_" and "." into "-"): the upstream would see a second
		// credential the key server never read.
		"a key and X_API_Key": {header: http.Header{"Authorization": {"Bearer " + key}, "X_api_key": {other}}, want: http.StatusBadRequest},
		"a key and X.API.Key": {header: http.Header{"Authorization": {"Bearer " + key}, "X.api.key": {other}}, want: http.StatusBadRequest},
		"a key and X-Api_Key": {header: http.Header{"X-Api-Key": {key}, "X-Api_key": {other}}, want: http.StatusBadRequest},
	}
	for ename, e := range headerEndpoints {
		for cname, c := range combos {
			t.Run(ename+": "+cname, func(t *testing.T) {
				r := e.req()
				for k, vs := range c.header {
					r.Header[k] = vs
				}
				want := c.want
				if want == 0 {
					want = e.ok
				}
				rec := f.do(r)
				wantStatus(t, cname, rec, want)
				if want == http.StatusBadRequest {
					wantTwoCredentialsAnswer(t, rec, e.json)
				}
			})
		}
	}

	// /v1/tokens reads HTTP Basic and the body.
	tokenCombos := map[string]struct {
		req  func() *http.Request
		want int
	}{
		"two Authorization headers": {req: func() *http.Request {
			r := basicToken(ak, sk)
			r.Header.Add("Authorization", "Basic "+basic(bk, bsk))
			return r
		}, want: http.StatusBadRequest},
		"HTTP Basic and another pair in the JSON body": {req: func() *http.Request {
			r := jsonToken(bk, bsk, "")
			r.SetBasicAuth(ak, sk)
			return r
		}, want: http.StatusBadRequest},
		"HTTP Basic and another pair in a form": {req: func() *http.Request {
			r := formToken(url.Values{"ak": {bk}, "sk": {bsk}})
			r.SetBasicAuth(ak, sk)
			return r
		}, want: http.StatusBadRequest},
		"a form naming two pairs (accessKeyID and ak)": {req: func() *http.Request {
			return formToken(url.Values{"accessKeyID": {ak}, "secretKey": {sk}, "ak": {bk}, "sk": {bsk}})
		}, want: http.StatusBadRequest},
		"a form repeating accessKeyID": {req: func() *http.Request {
			return formToken(url.Values{"accessKeyID": {ak, bk}, "secretKey": {sk}})
		}, want: http.StatusBadRequest},
		"HTTP Basic and the same pair in the body": {req: func() *http.Request {
			r := jsonToken(ak, sk, "")
			r.SetBasicAuth(ak, sk)
			return r
		}, want: http.StatusOK},
		"HTTP Basic and a body with only a lifetime": {req: func() *http.Request {
			r := jsonToken("", "", "1h")
			r.SetBasicAuth(ak, sk)
			return r
		}, want: http.StatusOK},
	}
	for name, c := range tokenCombos {
		t.Run("tokens: "+name, func(t *testing.T) {
			rec := f.do(c.req())
			wantStatus(t, name, rec, c.want)
			if c.want == http.StatusBadRequest {
				wantTwoCredentialsAnswer(t, rec, true)
			}
		})
	}

	// Refusing an ambiguous request is not a failed guess: it costs the
	// address nothing.
	for range 10 {
		f.do(authzReq("/v1/authz", func(h http.Header) { h["Authorization"] = []string{"Bearer " + key, "Bearer junk"} }))
	}
	wantStatus(t, "junk after ambiguous requests", f.do(authzWith("kw_nope")), http.StatusUnauthorized)
}

func wantTwoCredentialsAnswer(t *testing.T, rec *httptest.ResponseRecorder, isJSON bool) {
	t.Helper()
	body := rec.Body.String()
	if !strings.Contains(body, "one credential") {
		t.Errorf("body %q does not say the request must carry one credential", body)
	}
	if strings.Contains(body, "kw_") || strings.Contains(body, "KWAK") {
		t.Errorf("the refusal echoes a credential: %q", body)
	}
	if !isJSON {
		return
	}
	var e wire.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != "invalid_request" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("want a JSON invalid_request, got %q (%s)", body, rec.Header().Get("Content-Type"))
	}
}

func basic(user, pass string) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func formToken(v url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/tokens", strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

package keyserver

import (
	"context"
	"encoding/json"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// controllerRotator plays the APIKey controller for handler tests: each
// rotation issues a successor, indexes it as the record's current version
// (the presented one kept for its grace) and returns it.
func controllerRotator(f **fixture, calls *int) Rotator {
	return rotatorFunc(func(_ context.Context, ns, name, presentedID, presentedHash string) (string, string, error) {
		*calls++
		next, err := keymaterial.Generate("kw")
		if err != nil {
			return "", "", err
		}
		now := (*f).clock.Now()
		end := now.Add(5 * time.Minute)
		rec := &hashsecret.Record{Kind: hashsecret.KindAPIKey, Namespace: ns, Name: name, Subject: name, Access: string(kw.AccessReadWrite),
			Current:  &hashsecret.Version{ID: next.ID, Hash: next.SecretHash(), NotBefore: now},
			Previous: []hashsecret.Version{{ID: presentedID, Hash: presentedHash, NotBefore: now.Add(-time.Hour), NotAfter: &end}}}
		if err := (*f).s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, ns, name), rec); err != nil {
			return "", "", err
		}
		return next.String(), next.ID, nil
	})
}

// selfRotate rotates key and returns the answer and, on 200, the successor.
func (f *fixture) selfRotate(key string) (*httptest.ResponseRecorder, string) {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/keys/current/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rr := f.do(req)
	var out wire.RotateResponse
	if rr.Code == http.StatusOK {
		if err := json.Unmarshal(rr.Body.Bytes(), &out); err != nil {
			f.t.Fatal(err)
		}
	}
	return rr, out.Key
}

// expectLimited checks a 429 with a Retry-After of want seconds and a JSON
// error body saying what was limited.
func expectLimited(t *testing.T, rr *httptest.ResponseRecorder, want int) {
	t.Helper()
	var body wire.ErrorBody
	_ = json.Unmarshal(rr.Body.Bytes(), &body)
	if rr.Code != http.StatusTooManyRequests || rr.Header().Get("Retry-After") != strconv.Itoa(want) || body.Error != "rate_limited" || body.Message == "" {
		t.Fatalf("got %d Retry-After=%q %s, want 429, Retry-After %d and a JSON error", rr.Code, rr.Header().Get("Retry-After"), rr.Body, want)
	}
}

// Attack 10: a key holder rotating its key in a loop keeps the controllers
// busy (each rotation is a reconcile and several writes). Self-rotation is
// limited per APIKey, whichever of its versions is presented: by default a
// burst of 2 (a retry after a failure), then one a minute.
func TestAttack10SelfRotationIsLimitedPerKey(t *testing.T) {
	var f *fixture
	calls := 0
	f = newFixture(t, func(o *Options) { o.Rotator = controllerRotator(&f, &calls) })
	key, other := f.apiKey("billing"), f.apiKey("payroll")

	for i := range 2 {
		rr, next := f.selfRotate(key)
		if rr.Code != http.StatusOK {
			t.Fatalf("rotation %d: %d %s", i+1, rr.Code, rr.Body)
		}
		key = next
	}
	rr, _ := f.selfRotate(key)
	expectLimited(t, rr, 60)
	if calls != 2 {
		t.Fatalf("the controller was asked %d times, want 2", calls)
	}
	if got := f.s.index.ValidateAPIKey(key, f.clock.Now()); got.Code != "VALID" {
		t.Fatalf("the limited caller's key stopped working: %s", got.Code)
	}
	if rr, _ := f.selfRotate(other); rr.Code != http.StatusOK {
		t.Fatalf("another key was limited too: %d %s", rr.Code, rr.Body)
	}

	f.clock.Step(30 * time.Second)
	rr, _ = f.selfRotate(key)
	expectLimited(t, rr, 30)
	f.clock.Step(30 * time.Second)
	if rr, _ := f.selfRotate(key); rr.Code != http.StatusOK {
		t.Fatalf("a minute later: %d %s", rr.Code, rr.Body)
	}
}

// Attack 10, tokens: minting is limited per access key pair (by default a
// burst of 20, then 10 a second), whichever front end is used; other pairs
// are not affected.
func TestAttack10TokenMintingIsLimitedPerPair(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.EnableDCETokenGET = true })
	ak, sk := f.pair("alice-1")
	otherAK, otherSK := f.pair("bob-1")
	dce := func(ak, sk string) *http.Request {
		return httptest.NewRequest(http.MethodGet, "/v1/token?"+url.Values{"ak": {ak}, "sk": {sk}}.Encode(), nil)
	}
	for i := range 20 {
		req := jsonToken(ak, sk, "")
		if i%2 == 1 {
			req = dce(ak, sk)
		}
		if got := f.token(req); got.status != http.StatusOK {
			t.Fatalf("token %d: %d %s", i+1, got.status, got.body)
		}
	}
	expectLimited(t, f.do(jsonToken(ak, sk, "")), 1)
	expectLimited(t, f.do(dce(ak, sk)), 1)
	if got := f.token(jsonToken(otherAK, otherSK, "")); got.status != http.StatusOK {
		t.Fatalf("another pair was limited too: %d %s", got.status, got.body)
	}
	// A wrong secret is a failed attempt (401), not a mint.
	if got := f.token(jsonToken(ak, "wrong", "")); got.status != http.StatusUnauthorized {
		t.Fatalf("a wrong secret: %d %s", got.status, got.body)
	}
	f.clock.Step(100 * time.Millisecond)
	if got := f.token(jsonToken(ak, sk, "")); got.status != http.StatusOK {
		t.Fatalf("after the refill: %d %s", got.status, got.body)
	}
	expectLimited(t, f.do(jsonToken(ak, sk, "")), 1)
}

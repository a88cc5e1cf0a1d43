package keyserver

import (
	"context"
	"encoding/json"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/selfrotation"
	"github.com/keyward/keyward/webhook/keyserver/statuswriter"
)

// selfRotationBench is a key server whose StatusRotator talks to a fake API
// server; answer runs as soon as the key server has written its request,
// playing whoever writes status.selfRotationResponse (the controller, or
// an attacker allowed to patch apikeys/status).
type selfRotationBench struct {
	*fixture
	previous, current keymaterial.Key
}

func newSelfRotationBench(t *testing.T, answer func(b *selfRotationBench, c client.Client, req *kw.SelfRotationRequest) *kw.SelfRotationResponse) *selfRotationBench {
	t.Helper()
	b := &selfRotationBench{}
	var err error
	if b.previous, err = keymaterial.Generate("kw"); err != nil {
		t.Fatal(err)
	}
	if b.current, err = keymaterial.Generate("kw"); err != nil {
		t.Fatal(err)
	}
	obj := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing"},
		Spec: kw.APIKeySpec{SecretName: "billing"}}
	c := fake.NewClientBuilder().WithScheme(kube.Scheme()).WithObjects(obj).WithStatusSubresource(obj).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if err := c.SubResource(sub).Patch(ctx, o, p, opts...); err != nil {
				return err
			}
			k := o.(*kw.APIKey)
			if k.Status.SelfRotationRequest == nil || k.Status.SelfRotationResponse != nil {
				return nil
			}
			base := k.DeepCopy()
			k.Status.SelfRotationResponse = answer(b, c, k.Status.SelfRotationRequest)
			return c.Status().Patch(ctx, k, client.MergeFrom(base))
		}}).Build()
	b.fixture = newFixture(t, func(o *Options) {
		o.ConfirmRotationWait = 300 * time.Millisecond
		// The request's times are real (its deadline bounds a real wait).
		o.Rotator = &statuswriter.StatusRotator{Client: c, Clock: clock.RealClock{}}
	})
	// current was issued an hour ago; previous is in its grace period.
	b.index(b.current, t0.Add(-time.Hour), b.previous)
	return b
}

// index makes cur billing's current version (issued at issued), older ones
// previous versions still in their grace period.
func (b *selfRotationBench) index(cur keymaterial.Key, issued time.Time, older ...keymaterial.Key) {
	b.t.Helper()
	end := t0.Add(time.Hour)
	rec := &hashsecret.Record{Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "billing", Subject: "billing", Access: string(kw.AccessReadWrite),
		Current: &hashsecret.Version{ID: cur.ID, Hash: cur.SecretHash(), NotBefore: issued}}
	for i, o := range older {
		rec.Previous = append(rec.Previous, hashsecret.Version{ID: o.ID, Hash: o.SecretHash(),
			NotBefore: issued.Add(-time.Duration(i+1) * time.Hour), NotAfter: &end})
	}
	if err := b.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, "team-a", "billing"), rec); err != nil {
		b.t.Fatal(err)
	}
}

func (b *selfRotationBench) rotate(key string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/keys/current/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	return b.do(req)
}

func encryptedTo(t *testing.T, k keymaterial.Key, req *kw.SelfRotationRequest) string {
	t.Helper()
	ct, err := agecrypt.Encrypt(k.String(), []string{req.Recipient})
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// Attack 9: whoever may patch apikeys/status answers a self-rotation
// request with a previous version still in its grace period (which it
// holds, e.g. a leaked key that was rotated away), encrypted to the
// request's recipient. The caller must not adopt it.
func TestAttack9AForgedSelfRotationAnswer(t *testing.T) {
	// Answers without a MAC made with the presented version's hash are
	// refused as such; the others fail the newer-than check.
	forged := map[string]bool{"a previous version in its grace period, without the MAC": true,
		"a new current version, with a MAC keyed by another version": true}
	cases := map[string]func(b *selfRotationBench, c client.Client, req *kw.SelfRotationRequest) *kw.SelfRotationResponse{
		"a previous version in its grace period, without the MAC": func(b *selfRotationBench, _ client.Client, req *kw.SelfRotationRequest) *kw.SelfRotationResponse {
			return &kw.SelfRotationResponse{ID: req.ID, KeyID: b.previous.ID, EncryptedKey: encryptedTo(t, b.previous, req)}
		},
		// One who also read the hash Secret can make the MAC: the answer
		// must still be a version newer than the request.
		"a previous version in its grace period, with the MAC": func(b *selfRotationBench, _ client.Client, req *kw.SelfRotationRequest) *kw.SelfRotationResponse {
			resp := &kw.SelfRotationResponse{ID: req.ID, KeyID: b.previous.ID, EncryptedKey: encryptedTo(t, b.previous, req)}
			resp.MAC = selfrotation.AnswerMAC(b.current.SecretHash(), "team-a", "billing", resp)
			return resp
		},
		"the presented version itself, with the MAC": func(b *selfRotationBench, _ client.Client, req *kw.SelfRotationRequest) *kw.SelfRotationResponse {
			resp := &kw.SelfRotationResponse{ID: req.ID, KeyID: b.current.ID, EncryptedKey: encryptedTo(t, b.current, req)}
			resp.MAC = selfrotation.AnswerMAC(b.current.SecretHash(), "team-a", "billing", resp)
			return resp
		},
		// A new version the index knows as current, but whose answer was
		// not made by the controller (a MAC keyed by another version).
		"a new current version, with a MAC keyed by another version": func(b *selfRotationBench, _ client.Client, req *kw.SelfRotationRequest) *kw.SelfRotationResponse {
			next, _ := keymaterial.Generate("kw")
			b.index(next, t0, b.current, b.previous)
			resp := &kw.SelfRotationResponse{ID: req.ID, KeyID: next.ID, EncryptedKey: encryptedTo(t, next, req)}
			resp.MAC = selfrotation.AnswerMAC(b.previous.SecretHash(), "team-a", "billing", resp)
			return resp
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			b := newSelfRotationBench(t, answer)
			rr := b.rotate(b.current.String())
			if rr.Code != http.StatusServiceUnavailable {
				t.Fatalf("the forged answer was handed out: status %d: %s", rr.Code, rr.Body)
			}
			if forged[name] != strings.Contains(rr.Body.String(), "integrity check") {
				t.Fatalf("the refusal does not say why: %s", rr.Body)
			}
			if strings.Contains(rr.Body.String(), b.previous.String()) || strings.Contains(rr.Body.String(), "kw_") {
				t.Fatalf("a refused answer leaked a key: %s", rr.Body)
			}
			if got := b.s.index.ValidateAPIKey(b.current.String(), t0); got.Code != "VALID" {
				t.Fatalf("the caller's key stopped working: %s", got.Code)
			}
		})
	}
}

// The controller's answer: a version issued for the request, current in the
// index, with the MAC keyed by the presented version's hash.
func TestSelfRotationHandsOutTheControllersAnswer(t *testing.T) {
	var next keymaterial.Key
	b := newSelfRotationBench(t, func(b *selfRotationBench, _ client.Client, req *kw.SelfRotationRequest) *kw.SelfRotationResponse {
		next, _ = keymaterial.Generate("kw")
		b.index(next, t0, b.current, b.previous)
		resp := &kw.SelfRotationResponse{ID: req.ID, KeyID: next.ID, EncryptedKey: encryptedTo(t, next, req)}
		resp.MAC = selfrotation.AnswerMAC(b.current.SecretHash(), "team-a", "billing", resp)
		return resp
	})
	rr := b.rotate(b.current.String())
	if rr.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rr.Code, rr.Body)
	}
	var out wire.RotateResponse
	if err := json.Unmarshal(rr.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Key != next.String() || out.KeyID != next.ID || out.PreviousKeyID != b.current.ID {
		t.Fatalf("got %s/%s (previous %s), want %s (previous %s)", out.KeyID, out.Key[:4], out.PreviousKeyID, next.ID, b.current.ID)
	}
}

// A version in its grace period may not rotate: refused before any request
// is written, so it costs the controllers nothing.
func TestAPreviousVersionIsRefusedBeforeTheControllerIsAsked(t *testing.T) {
	asked := false
	b := newSelfRotationBench(t, func(*selfRotationBench, client.Client, *kw.SelfRotationRequest) *kw.SelfRotationResponse {
		asked = true
		return &kw.SelfRotationResponse{}
	})
	rr := b.rotate(b.previous.String())
	if rr.Code != http.StatusConflict || !strings.Contains(rr.Body.String(), "current version") {
		t.Fatalf("status %d: %s", rr.Code, rr.Body)
	}
	if asked {
		t.Fatal("a request was written for a version in its grace period")
	}
}

package selfrotation

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

func TestProofBindsEveryField(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	const hash = "sha256:aaaa"
	base := func() *kw.SelfRotationRequest {
		return NewRequest("req-1", "team-a", "billing", "kid1", hash, "age1recipient", t0, 5*time.Second)
	}
	if !Verify(hash, "team-a", "billing", base()) {
		t.Fatal("a request does not verify with the hash it was made with")
	}
	cases := map[string]struct {
		hash, ns, name string
		edit           func(*kw.SelfRotationRequest)
	}{
		"another version's hash":        {hash: "sha256:bbbb"},
		"another namespace":             {ns: "team-b"},
		"another APIKey":                {name: "payroll"},
		"another request id":            {edit: func(r *kw.SelfRotationRequest) { r.ID = "req-2" }},
		"another presented version":     {edit: func(r *kw.SelfRotationRequest) { r.KeyID = "kid2" }},
		"another recipient (redirect)":  {edit: func(r *kw.SelfRotationRequest) { r.Recipient = "age1attacker" }},
		"another time (replayed later)": {edit: func(r *kw.SelfRotationRequest) { r.RequestedAt = metav1.NewTime(t0.Add(time.Hour)) }},
		"a later deadline":              {edit: func(r *kw.SelfRotationRequest) { r.Deadline = metav1.NewTime(r.Deadline.Add(time.Hour)) }},
		"no proof":                      {edit: func(r *kw.SelfRotationRequest) { r.Proof = "" }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h, ns, n := hash, "team-a", "billing"
			if c.hash != "" {
				h = c.hash
			}
			if c.ns != "" {
				ns = c.ns
			}
			if c.name != "" {
				n = c.name
			}
			req := base()
			if c.edit != nil {
				c.edit(req)
			}
			if Verify(h, ns, n, req) {
				t.Fatal("verified")
			}
		})
	}
}

func TestAnswerMACBindsEveryField(t *testing.T) {
	const hash = "sha256:aaaa"
	base := func() *kw.SelfRotationResponse {
		r := &kw.SelfRotationResponse{ID: "req-1", KeyID: "kid2", EncryptedKey: "-----BEGIN AGE ENCRYPTED FILE-----"}
		r.MAC = AnswerMAC(hash, "team-a", "billing", r)
		return r
	}
	if !VerifyAnswer(hash, "team-a", "billing", base()) {
		t.Fatal("an answer does not verify with the hash it was made with")
	}
	cases := map[string]struct {
		hash, ns, name string
		edit           func(*kw.SelfRotationResponse)
	}{
		"another version's hash":     {hash: "sha256:bbbb"},
		"another namespace":          {ns: "team-b"},
		"another APIKey":             {name: "payroll"},
		"another request (replayed)": {edit: func(r *kw.SelfRotationResponse) { r.ID = "req-0" }},
		"another version's id":       {edit: func(r *kw.SelfRotationResponse) { r.KeyID = "kid0" }},
		"another ciphertext":         {edit: func(r *kw.SelfRotationResponse) { r.EncryptedKey += "x" }},
		"no MAC":                     {edit: func(r *kw.SelfRotationResponse) { r.MAC = "" }},
		"the request's proof as its MAC": {edit: func(r *kw.SelfRotationResponse) {
			r.MAC = NewRequest("req-1", "team-a", "billing", "kid1", hash, "age1r", time.Now(), time.Second).Proof
		}},
		"a field moved into the next one": {edit: func(r *kw.SelfRotationResponse) { r.ID, r.KeyID = "req-1k", "id2" }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h, ns, n := hash, "team-a", "billing"
			if c.hash != "" {
				h = c.hash
			}
			if c.ns != "" {
				ns = c.ns
			}
			if c.name != "" {
				n = c.name
			}
			r := base()
			if c.edit != nil {
				c.edit(r)
			}
			if VerifyAnswer(h, ns, n, r) {
				t.Fatal("verified")
			}
		})
	}
}

func TestPending(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	req := NewRequest("req-1", "ns", "n", "kid", "h", "age1r", t0, 5*time.Second)
	long := NewRequest("req-2", "ns", "n", "kid", "h", "age1r", t0, kw.MaxSelfRotationWindow+time.Second)
	cases := map[string]struct {
		st   kw.APIKeyStatus
		now  time.Time
		want bool
	}{
		"no request":                  {now: t0},
		"a fresh request":             {st: kw.APIKeyStatus{SelfRotationRequest: req}, now: t0.Add(time.Second), want: true},
		"a request at its deadline":   {st: kw.APIKeyStatus{SelfRotationRequest: req}, now: t0.Add(5 * time.Second)},
		"a request past its deadline": {st: kw.APIKeyStatus{SelfRotationRequest: req}, now: t0.Add(time.Minute)},
		"a request asking too long":   {st: kw.APIKeyStatus{SelfRotationRequest: long}, now: t0.Add(time.Second)},
		"an answered request":         {st: kw.APIKeyStatus{SelfRotationRequest: req, SelfRotationResponse: &kw.SelfRotationResponse{ID: "req-1"}}, now: t0},
		"an earlier request's answer": {st: kw.APIKeyStatus{SelfRotationRequest: req, SelfRotationResponse: &kw.SelfRotationResponse{ID: "req-0"}}, now: t0, want: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Pending(&c.st, c.now); got != c.want {
				t.Fatalf("Pending = %v, want %v", got, c.want)
			}
		})
	}
}

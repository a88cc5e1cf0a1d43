// Package selfrotation is the protocol by which the key server asks the
// APIKey controller for a key's successor on behalf of a caller holding the
// current key, without the key server writing any Secret: it writes a
// request into the APIKey's status carrying a one-time age recipient and a
// proof of possession; the controller rotates and answers with the new key
// encrypted to that recipient.
package selfrotation

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// Errors of the key server's side of the protocol, for its caller to tell
// apart.
var (
	// ErrNotRotatable: the key must not be self-rotated (imported,
	// suspended or expired keys, or a version that is not current).
	ErrNotRotatable = errors.New("this key cannot be rotated by Keyward")
	// ErrForgedAnswer: the answer in status was not made by the controller
	// (its MAC does not verify with the presented version's hash); whoever
	// wrote it may write apikeys/status but does not hold the key.
	ErrForgedAnswer = errors.New("the answer to the rotation request failed its integrity check (not written by the controller)")
)

// Proof binds a request to the presented version: HMAC-SHA256 keyed by the
// version's stored hash (which only a holder of the key, or a reader of its
// hash Secret, can know) over the owner and every field of the request.
func Proof(versionHash, namespace, name string, req *kw.SelfRotationRequest) string {
	m := hmac.New(sha256.New, []byte(versionHash))
	for _, part := range []string{"keyward-self-rotation/v1", namespace, name, req.ID, req.KeyID, req.Recipient,
		req.RequestedAt.UTC().Format(time.RFC3339), req.Deadline.UTC().Format(time.RFC3339)} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// Verify reports, in constant time, whether req's proof was made with
// versionHash.
func Verify(versionHash, namespace, name string, req *kw.SelfRotationRequest) bool {
	want := Proof(versionHash, namespace, name, req)
	return hmac.Equal([]byte(want), []byte(req.Proof))
}

// AnswerMAC authenticates an answer that carries a key to the asker:
// HMAC-SHA256 keyed by the presented version's stored hash (the request's
// proof key, which only the controller and the asker know) over the request
// id, the owner, the new version's id and the ciphertext. Whoever else may
// write apikeys/status cannot make one, so cannot slip the asker a key of
// its choosing, such as an old version it holds.
func AnswerMAC(versionHash, namespace, name string, resp *kw.SelfRotationResponse) string {
	m := hmac.New(sha256.New, []byte(versionHash))
	for _, part := range []string{"keyward-self-rotation-answer/v1", namespace, name, resp.ID, resp.KeyID, resp.EncryptedKey} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyAnswer reports, in constant time, whether resp's MAC was made with
// versionHash.
func VerifyAnswer(versionHash, namespace, name string, resp *kw.SelfRotationResponse) bool {
	want := AnswerMAC(versionHash, namespace, name, resp)
	return hmac.Equal([]byte(want), []byte(resp.MAC))
}

// Pending reports whether status holds a request not yet answered whose
// deadline is still ahead at now (and within MaxSelfRotationWindow of its
// asking). Past the deadline the asker has stopped waiting: acting on it
// would rotate a key with nobody to hand the successor to.
func Pending(st *kw.APIKeyStatus, now time.Time) bool {
	req := st.SelfRotationRequest
	if req == nil || Answered(st) {
		return false
	}
	return now.Before(req.Deadline.Time) && req.Deadline.Sub(req.RequestedAt.Time) <= kw.MaxSelfRotationWindow
}

// Answered reports whether status answers its request.
func Answered(st *kw.APIKeyStatus) bool {
	return st.SelfRotationRequest != nil && st.SelfRotationResponse != nil &&
		st.SelfRotationResponse.ID == st.SelfRotationRequest.ID
}

// NewRequest builds a request for the presented version, to be acted on
// within window; recipient is the asker's one-time age recipient. Times are
// truncated to seconds, as the API server stores them, so the proof
// survives the round trip.
func NewRequest(id, namespace, name, keyID, versionHash, recipient string, now time.Time, window time.Duration) *kw.SelfRotationRequest {
	at := now.UTC().Truncate(time.Second)
	req := &kw.SelfRotationRequest{ID: id, KeyID: keyID, Recipient: recipient,
		RequestedAt: metav1.NewTime(at), Deadline: metav1.NewTime(at.Add(window))}
	req.Proof = Proof(versionHash, namespace, name, req)
	return req
}

package apikey

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/selfrotation"
)

// MinSelfRotationGrace keeps the caller's key working briefly after a
// self-rotation even without spec.rotation.gracePeriod, so a response lost
// on the way back cannot lock the caller out before it retries.
const MinSelfRotationGrace = 5 * time.Minute

// errSelfRotationExpired stops a reconcile whose self-rotation request
// reached its deadline before the first write; the next reconcile ignores it.
var errSelfRotationExpired = errors.New("the self-rotation request reached its deadline before the rotation began")

// DataSelfRotation, in the hash Secret, holds the answer to the last
// self-rotation request (the new key encrypted to the asker's one-time
// recipient), written with the version it issued: a crash before the status
// write answers from it instead of rotating twice.
const DataSelfRotation = "self-rotation.json"

// selfRotationAct is what a reconcile does about status.selfRotationRequest.
type selfRotationAct int

const (
	srNone     selfRotationAct = iota // no request pending
	srRotate                          // issue a new version and answer with it
	srReanswer                        // already rotated for it: answer again from the hash Secret
	srRefuse                          // answer with a refusal
)

// selfRotationInput is what decideSelfRotation looks at.
type selfRotationInput struct {
	pending     bool // a request not answered in status, not stale
	actedOn     bool // the hash Secret holds the answer to this request
	recipientOK bool // the recipient is an age X25519 recipient
	knownKey    bool // the presented version is in the record
	proofOK     bool // the proof was made with the presented version's hash
	current     bool // the presented version is the current one
	rotatable   bool // generated (not imported), not suspended, expired or deleted
}

// decideSelfRotation: only the holder of the current version of a key
// Keyward generated may have its successor, once per request.
func decideSelfRotation(in selfRotationInput) (selfRotationAct, string) {
	switch {
	case !in.pending:
		return srNone, ""
	case in.actedOn:
		return srReanswer, ""
	case !in.recipientOK:
		return srRefuse, kw.RefusedBadRequest
	case !in.knownKey || !in.rotatable || !in.current:
		return srRefuse, kw.RefusedNotRotatable
	case !in.proofOK:
		return srRefuse, kw.RefusedBadRequest
	}
	return srRotate, ""
}

// planSelfRotation decides about a pending self-rotation request before
// the phases run: it asks them for a new version, or prepares the answer.
func planSelfRotation(s *scope) {
	key, now := s.key, s.Now
	st := &key.Status
	in := selfRotationInput{pending: selfrotation.Pending(st, now)}
	if !in.pending {
		return
	}
	req := st.SelfRotationRequest
	stored := storedAnswer(s)
	in.actedOn = stored != nil && stored.ID == req.ID
	_, err := agecrypt.ParseRecipients([]string{req.Recipient})
	in.recipientOK = err == nil
	in.rotatable = key.Spec.ImportFrom == nil && !key.Spec.Suspended && key.DeletionTimestamp.IsZero() &&
		!keylifecycle.ExpiredAt(s.View.Expiry, now)
	var presentedHash string
	if s.Record != nil {
		for _, v := range s.Record.Versions() {
			if v.ID == req.KeyID {
				in.knownKey = true
				in.proofOK = selfrotation.Verify(v.Hash, key.Namespace, key.Name, req)
				if in.proofOK {
					presentedHash = v.Hash
				}
			}
		}
		in.current = s.Record.Current != nil && s.Record.Current.ID == req.KeyID
	}
	switch act, reason := decideSelfRotation(in); act {
	case srRotate:
		s.forceRotate, s.selfRotation, s.selfRotationHash = true, req, presentedHash
	case srReanswer:
		s.answer = stored
	case srRefuse:
		s.answer = &kw.SelfRotationResponse{ID: req.ID, Refused: reason}
	}
}

// answerSelfRotation encrypts the version the phases issued to the request's
// recipient and authenticates the answer with the presented version's hash
// (selfrotation.AnswerMAC); the answer is written into the hash Secret with
// the version.
func answerSelfRotation(key *kw.APIKey, s *scope) error {
	if s.selfRotation == nil || s.issued == nil {
		return nil
	}
	ct, err := agecrypt.Encrypt(s.issued.String(), []string{s.selfRotation.Recipient})
	if err != nil {
		return err
	}
	s.answer = &kw.SelfRotationResponse{ID: s.selfRotation.ID, KeyID: s.issued.ID, EncryptedKey: ct}
	s.answer.MAC = selfrotation.AnswerMAC(s.selfRotationHash, key.Namespace, key.Name, s.answer)
	return nil
}

// noteDeferredRotation says on the Ready condition which rotations wait for
// the per-key limit, and until when (status.rotateRequest shows the last
// annotation value acted on, status.ageDelivery the recipients the version
// in use is encrypted to).
func noteDeferredRotation(key *kw.APIKey, what deferrals, until time.Time) {
	c := meta.FindStatusCondition(key.Status.Conditions, kw.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue {
		return
	}
	var waiting []string
	if what&deferredRequest != 0 {
		waiting = append(waiting, "the rotation requested with the "+kw.AnnotationRotate+" annotation")
	}
	if what&deferredRecipients != 0 {
		waiting = append(waiting, "the new version for the changed age recipients (meanwhile the version in use is encrypted only to recipients it was delivered to)")
	}
	verb := "is"
	if len(waiting) > 1 {
		verb = "are"
	}
	c.Message += fmt.Sprintf("; %s %s deferred until %s: rotations of one key are rate-limited",
		strings.Join(waiting, " and "), verb, until.UTC().Format(time.RFC3339))
}

// storedAnswer reads the hash Secret's last self-rotation answer.
func storedAnswer(s *scope) *kw.SelfRotationResponse {
	if s.HashSecret == nil || s.Corrupt {
		return nil
	}
	raw := s.HashSecret.Data[DataSelfRotation]
	if len(raw) == 0 || len(raw) > 8<<10 {
		return nil
	}
	var out kw.SelfRotationResponse
	if json.Unmarshal(raw, &out) != nil || out.ID == "" {
		return nil
	}
	return &out
}

// selfRotationData renders the answer to keep in the hash Secret: this
// reconcile's, or the one already there.
func selfRotationData(s *scope) []byte {
	if s.answer != nil && s.answer.EncryptedKey != "" {
		if raw, err := json.Marshal(s.answer); err == nil {
			return raw
		}
	}
	if s.HashSecret != nil && !s.Corrupt {
		return s.HashSecret.Data[DataSelfRotation]
	}
	return nil
}

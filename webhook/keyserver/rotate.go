package keyserver

import (
	"context"
	"errors"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"time"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/selfrotation"
)

// Rotator issues a new version of an APIKey now, keeping the previous one for
// its grace period, and returns the new plaintext. presentedKeyID is the
// version the caller authenticated with, presentedHash its stored hash (the
// proof of possession): only the current version may rotate, or a leaked
// key still in its grace period could take over its successor.
type Rotator interface {
	Rotate(ctx context.Context, namespace, name, presentedKeyID, presentedHash string) (key, keyID string, err error)
}

// ErrNotRotatable is returned by a Rotator for keys it must not rotate
// (imported, suspended or expired keys, or a version that is not current);
// it is selfrotation.ErrNotRotatable.
var ErrNotRotatable = selfrotation.ErrNotRotatable

// rotate is Adverity's "rotate the current key by calling the API with that
// key": the caller authenticates with an API key and gets its successor,
// once.
func (s *Server) rotate(w http.ResponseWriter, r *http.Request) outcome {
	cred, err := credentialFrom(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: err.Error()})
		return outcome{result: resultTwoCredentials}
	}
	if looksLikeJWT(cred) {
		writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Error: "invalid_request", Message: "authenticate with the API key to rotate, not a token"})
		return outcome{result: "BAD_REQUEST"}
	}
	res := s.identify(cred, nil)
	if res.Code != keyindex.Valid || res.Kind != hashsecret.KindAPIKey {
		if cred != "" && s.limitFailure(w, r, bucketKeyID(cred)) {
			return outcome{result: resultRateLimited}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyward", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, wire.ErrorBody{Error: "invalid_token", Message: "a valid API key is required"})
		return outcome{result: string(res.Code)}
	}
	// A key used only from its allowedCIDRs is rotated only from there: a
	// leaked key rotated from elsewhere would hand its successor over and
	// end the owner's key with the grace period.
	if d := addressDecision(clientAddr(r, s.opts.TrustedProxies), res.AllowedCIDRs, nil); !d.Allowed() {
		w.Header().Set(wire.HeaderCode, string(d.Code))
		writeJSON(w, http.StatusForbidden, wire.ErrorBody{Error: "cidr_not_allowed", Message: d.Reason})
		return outcome{result: string(d.Code)}
	}
	if s.opts.Rotator == nil {
		writeJSON(w, http.StatusNotImplemented, wire.ErrorBody{Error: "unsupported", Message: "self-rotation is not enabled on this key server"})
		return outcome{result: "UNSUPPORTED"}
	}
	// Only the current version may rotate (the controller checks it again).
	// Refused here, a key in its grace period costs the controllers nothing,
	// and the answer can be checked against the version it must replace.
	presented, ok := s.presentedIsCurrent(res)
	if !ok {
		writeJSON(w, http.StatusConflict, wire.ErrorBody{Error: "not_rotatable",
			Message: ErrNotRotatable.Error() + ": only the key's current version can rotate it, and this one has been replaced"})
		return outcome{result: "NOT_ROTATABLE"}
	}
	// Per APIKey, whichever version is presented: each rotation costs the
	// controllers a reconcile and several writes.
	if wait, ok := s.rotations.Take(res.Namespace, res.Name); !ok {
		return limitedKey(w, wait, "this key was rotated too often")
	}
	// Under the server's 10 s write timeout: the request's window, the
	// answer's margin and the index's confirmation fit in it.
	ctx, cancel := context.WithTimeout(r.Context(), 9500*time.Millisecond)
	defer cancel()
	key, id, err := s.opts.Rotator.Rotate(ctx, res.Namespace, res.Name, res.KeyID, presentedHash(cred))
	switch {
	case errors.Is(err, ErrNotRotatable):
		writeJSON(w, http.StatusConflict, wire.ErrorBody{Error: "not_rotatable", Message: err.Error()})
		return outcome{result: "NOT_ROTATABLE"}
	case errors.Is(err, selfrotation.ErrForgedAnswer):
		logf.FromContext(r.Context()).Info("self-rotation answer refused", "namespace", res.Namespace, "name", res.Name, "reason", err.Error())
		writeJSON(w, http.StatusServiceUnavailable, wire.ErrorBody{Error: "temporarily_unavailable",
			Message: "the answer to the rotation request failed its integrity check (someone other than the controller wrote it) and was not handed out; the key you presented keeps working; retry"})
		return outcome{result: "UNAVAILABLE"}
	case err != nil:
		logf.FromContext(r.Context()).Error(err, "self-rotation failed", "namespace", res.Namespace, "name", res.Name)
		// Nothing half-done is lost: the controller rotates at most once per
		// request, and the caller's key keeps working for its grace period.
		writeJSON(w, http.StatusServiceUnavailable, wire.ErrorBody{Error: "temporarily_unavailable", Message: "the key could not be rotated now; retry"})
		return outcome{result: "UNAVAILABLE"}
	}
	if !s.confirmRotated(ctx, key, id, res, presented) {
		// The answer travels through the APIKey's status, which others with
		// status rights could write: only a key the index knows as this
		// APIKey's new version is handed out.
		logf.FromContext(r.Context()).Info("self-rotation answer not confirmed by the index", "namespace", res.Namespace, "name", res.Name, "keyID", id)
		writeJSON(w, http.StatusServiceUnavailable, wire.ErrorBody{Error: "temporarily_unavailable", Message: "the key could not be rotated now; retry"})
		return outcome{result: "UNAVAILABLE"}
	}
	writeJSON(w, http.StatusOK, wire.RotateResponse{Key: key, KeyID: id, PreviousKeyID: res.KeyID,
		Warning: "store this key now: it is not shown again"})
	return outcome{result: "ROTATED", accepted: true, key: identityFrom(res)}
}

// presentedIsCurrent reports whether res's version is its record's current
// one, and when that version was issued.
func (s *Server) presentedIsCurrent(res keyindex.Result) (time.Time, bool) {
	id, issued, ok := s.index.CurrentVersion(hashsecret.KindAPIKey, res.Namespace, res.Name)
	return issued, ok && id == res.KeyID
}

// confirmRotated waits (until ctx ends) for the index to validate key as
// version id of the same APIKey as res, and as its current version, issued
// no earlier than the presented one, which was current when asked: the
// answer is a version that replaced the presented one, never one that was
// there before the request (such as a previous version still in its grace
// period). Versions only ever become current when issued, so this needs no
// clock shared with the controller. The hash Secret's watch event usually
// lands within milliseconds of the controller's answer.
func (s *Server) confirmRotated(ctx context.Context, key, id string, res keyindex.Result, presentedIssued time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ConfirmRotationWait)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got := s.index.ValidateAPIKey(key, s.opts.Clock.Now())
		cur, issued, ok := s.index.CurrentVersion(hashsecret.KindAPIKey, res.Namespace, res.Name)
		if replaces(got, id, res, cur, issued, ok, presentedIssued) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// replaces: the answered key validates as version id of res's APIKey, that
// version is the record's current one (cur, issued), and it is a successor
// of the presented version, not the presented one handed back.
func replaces(got keyindex.Result, id string, res keyindex.Result, cur string, issued time.Time, hasCurrent bool, presentedIssued time.Time) bool {
	return got.Code == keyindex.Valid && got.KeyID == id && id != res.KeyID &&
		got.Namespace == res.Namespace && got.Name == res.Name &&
		hasCurrent && cur == id && !issued.Before(presentedIssued)
}

// presentedHash is the stored hash of a credential that just validated.
func presentedHash(cred string) string {
	if k, err := keymaterial.Parse(cred); err == nil {
		return k.SecretHash()
	}
	return keymaterial.Hash(cred)
}

package keyserver

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/keyward/keyward/internal/keyindex"
)

// verify answers whether a key is valid, and whose it is, as JSON.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) outcome {
	var req VerifyRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		msg := "the body must be JSON: {\"key\": \"…\", \"scopes\": [\"…\"]}"
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			msg = "the body is too large"
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Message: msg})
		return outcome{result: "BAD_REQUEST"}
	}
	if len(req.Scopes) > maxScopesAsked {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Message: "too many scopes"})
		return outcome{result: "BAD_REQUEST"}
	}
	res := s.identify(req.Key, nil)
	if res.Code != keyindex.Valid && req.Key != "" && s.limitFailure(w, r, bucketKeyID(req.Key)) {
		return outcome{result: resultRateLimited}
	}
	res = keyindex.RequireScopes(res, req.Scopes)
	out := VerifyResponse{Valid: res.Code == keyindex.Valid, Code: string(res.Code)}
	if res.Code == keyindex.Valid || res.Code == keyindex.InsufficientScope {
		out.Subject, out.Groups, out.Scopes, out.KeyID = res.Subject, res.Groups, res.Scopes, res.KeyID
		out.Namespace, out.Access, out.ExpiresAt = res.Namespace, res.Access, res.ExpiresAt
	}
	writeJSON(w, http.StatusOK, out)
	return outcome{result: string(res.Code)}
}

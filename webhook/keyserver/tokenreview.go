package keyserver

import (
	"encoding/json"
	"net/http"

	authnv1 "k8s.io/api/authentication/v1"

	"github.com/keyward/keyward/internal/keyindex"
)

// Extra keys of the user info given to the API server.
const (
	ExtraKeyID     = "keys.keyward.dev/key-id"
	ExtraNamespace = "keys.keyward.dev/namespace"
)

// tokenReview is the webhook token authenticator kube-apiserver calls
// (--authentication-token-webhook-config-file): the bearer token is a
// Keyward API key or token; the user is its subject and groups.
func (s *Server) tokenReview(w http.ResponseWriter, r *http.Request) outcome {
	var review authnv1.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Spec.Token == "" {
		http.Error(w, "the body must be a TokenReview with spec.token", http.StatusBadRequest)
		return outcome{result: "BAD_REQUEST"}
	}
	res := s.identify(review.Spec.Token, nil)
	out := authnv1.TokenReview{TypeMeta: review.TypeMeta}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "authentication.k8s.io/v1", "TokenReview"
	}
	if res.Code == keyindex.Valid {
		out.Status = authnv1.TokenReviewStatus{
			Authenticated: true,
			User: authnv1.UserInfo{
				Username: res.Subject,
				Groups:   res.Groups,
				Extra: map[string]authnv1.ExtraValue{
					ExtraKeyID:     {res.KeyID},
					ExtraNamespace: {res.Namespace},
				},
			},
			Audiences: review.Spec.Audiences,
		}
	} else {
		out.Status = authnv1.TokenReviewStatus{Error: "the token is not a valid Keyward key"}
	}
	// The API server reads the status; the HTTP code stays 200 either way.
	writeJSON(w, http.StatusOK, out)
	return outcome{result: string(res.Code), failed: res.Code != keyindex.Valid}
}

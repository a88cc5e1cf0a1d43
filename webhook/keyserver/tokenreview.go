package keyserver

import (
	"encoding/json"
	"net/http"

	authnv1 "k8s.io/api/authentication/v1"

	"github.com/keyward/keyward/internal/keyindex"
)

// UsernamePrefix starts every username Keyward gives the API server:
// keyward:<namespace>:<subject>, like system:serviceaccount:<ns>:<name>. A
// key's subject is chosen by whoever may create APIKeys in a namespace, so it
// must never be able to name an arbitrary user ("admin") or group
// ("system:masters"); groups are prefixed the same way.
const UsernamePrefix = "keyward:"

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
				Username: UsernamePrefix + res.Namespace + ":" + res.Subject,
				Groups:   kubeGroups(res.Groups),
				Extra: map[string]authnv1.ExtraValue{
					ExtraKeyID:     {res.KeyID},
					ExtraNamespace: {res.Namespace},
				},
			},
			// No audiences: Keyward keys are not audience-bound, and echoing
			// the request's would vouch for audiences never checked.
		}
	} else {
		out.Status = authnv1.TokenReviewStatus{Error: "the token is not a valid Keyward key"}
	}
	// The API server reads the status; the HTTP code stays 200 either way.
	writeJSON(w, http.StatusOK, out)
	// Not counted as failed attempts: the caller is kube-apiserver, which
	// forwards every unknown bearer token; counting them would let junk
	// tokens lock every Keyward user out of the API server.
	return outcome{result: string(res.Code)}
}

// kubeGroups prefixes a key's groups and adds keyward:authenticated, so RBAC
// can bind every Keyward identity at once.
func kubeGroups(groups []string) []string {
	out := make([]string, 0, len(groups)+1)
	for _, g := range groups {
		out = append(out, UsernamePrefix+g)
	}
	return append(out, UsernamePrefix+"authenticated")
}

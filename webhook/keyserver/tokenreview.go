package keyserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
)

// UsernamePrefix starts every username and group Keyward gives the API
// server: users are keyward:<namespace>:<subject>, like
// system:serviceaccount:<ns>:<name>, groups keyward:<namespace>:<group>. A
// key's subject and groups are chosen by whoever may create APIKeys in a
// namespace, so they must never name an arbitrary user ("admin"), a
// Kubernetes group ("system:masters") or another namespace's group.
const UsernamePrefix = "keyward:"

// AuthenticatedGroup is given to every Keyward identity, so RBAC can bind
// them all at once.
const AuthenticatedGroup = UsernamePrefix + "authenticated"

// Extra keys of the user info given to the API server.
const (
	ExtraKeyID     = "keys.keyward.dev/key-id"
	ExtraNamespace = "keys.keyward.dev/namespace"
)

// review answers a TokenReview: the bearer token is a Keyward API key or
// token; the user is its subject and groups.
func (t *TokenReviewServer) review(w http.ResponseWriter, r *http.Request) outcome {
	var review authnv1.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Spec.Token == "" {
		http.Error(w, "the body must be a TokenReview with spec.token", http.StatusBadRequest)
		return outcome{result: "BAD_REQUEST"}
	}
	res := t.keys.identify(review.Spec.Token, nil)
	out := authnv1.TokenReview{TypeMeta: review.TypeMeta}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "authentication.k8s.io/v1", "TokenReview"
	}
	result := string(res.Code)
	switch {
	case res.Code == keyindex.Valid && res.AllowedCIDRs.IsSet():
		// A TokenReview names no client address: a key limited to some
		// addresses would pass here from anywhere.
		out.Status = authnv1.TokenReviewStatus{Error: "the key may be used only from the addresses in its allowedCIDRs, and the API server does not tell Keyward the client's address"}
		result = string(keypolicy.CIDRNotAllowed)
	case res.Code == keyindex.Valid:
		out.Status = authnv1.TokenReviewStatus{
			Authenticated: true,
			User: authnv1.UserInfo{
				Username: UsernamePrefix + res.Namespace + ":" + res.Subject,
				Groups:   kubeGroups(res.Namespace, res.Groups, t.opts.ClusterGroups),
				Extra: map[string]authnv1.ExtraValue{
					ExtraKeyID:     {res.KeyID},
					ExtraNamespace: {res.Namespace},
				},
			},
			// No audiences: Keyward keys are not audience-bound, and echoing
			// the request's would vouch for audiences never checked.
		}
	default:
		out.Status = authnv1.TokenReviewStatus{Error: "the token is not a valid Keyward key"}
	}
	// The API server reads the status; the HTTP code stays 200 either way.
	writeJSON(w, http.StatusOK, out)
	// Not counted as failed attempts: the caller is kube-apiserver (its
	// client certificate says so), which forwards every unknown bearer
	// token; counting them would let junk tokens lock every Keyward user
	// out of the API server. Nor do they spend a key's rate limit: the API
	// server caches the answers, so what reaches here is not the key's use.
	return outcome{result: result}
}

// kubeGroups names a key's groups for the API server: keyward:<ns>:<group>
// for each, keyward:<group> besides where the operator's allow-list grants
// that namespace that cluster-wide group, and keyward:authenticated.
//
// The names cannot collide: a namespace is a DNS label (no ':'), so in
// keyward:<ns>:<group> the namespace ends at the first ':' whatever the
// group holds; cluster-wide groups have no ':' (ParseClusterGroups), so
// keyward:<group> and keyward:authenticated never equal a namespaced one.
func kubeGroups(ns string, groups []string, cluster ClusterGroups) []string {
	out := make([]string, 0, len(groups)+1)
	for _, g := range groups {
		out = append(out, UsernamePrefix+ns+":"+g)
		if cluster[ClusterGroup{Namespace: ns, Group: g}] {
			out = append(out, UsernamePrefix+g)
		}
	}
	return append(out, AuthenticatedGroup)
}

// ClusterGroup grants keys of Namespace carrying Group the cluster-wide
// group keyward:<Group>.
type ClusterGroup struct{ Namespace, Group string }

// ClusterGroups is the operator's allow-list (--token-review-cluster-groups);
// a tenant's spec can never add to it.
type ClusterGroups map[ClusterGroup]bool

// ParseClusterGroups reads "<namespace>/<group>" entries. The group may not
// contain ':' (keyward:<group> would then read as a namespaced group of
// another namespace) nor be "authenticated" (every key has it already).
func ParseClusterGroups(entries []string) (ClusterGroups, error) {
	out := ClusterGroups{}
	for _, e := range entries {
		ns, g, ok := strings.Cut(e, "/")
		switch {
		case !ok || g == "":
			return nil, fmt.Errorf("cluster group %q: want <namespace>/<group>", e)
		case len(validation.IsDNS1123Label(ns)) > 0:
			return nil, fmt.Errorf("cluster group %q: %q is not a namespace name", e, ns)
		case strings.Contains(g, ":"):
			return nil, fmt.Errorf("cluster group %q: the group may not contain ':', which separates the namespace in keyward:<namespace>:<group>", e)
		case UsernamePrefix+g == AuthenticatedGroup:
			return nil, fmt.Errorf("cluster group %q: every Keyward identity is in keyward:authenticated already", e)
		case len(g) > 253:
			return nil, fmt.Errorf("cluster group %q: the group is longer than 253 characters", e)
		}
		out[ClusterGroup{Namespace: ns, Group: g}] = true
	}
	return out, nil
}

package keyserver

import (
	"net/http"
	"strings"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/keyindex"
)

// identityHeaders are the headers a 200 from forward-auth carries, in the
// order of their values in setIdentityHeaders. The wire constants are
// canonical (TestIdentityHeaderNamesAreCanonical), so they can be the map's
// keys as they are.
var identityHeaders = [...]string{
	wire.HeaderSubject, wire.HeaderGroups, wire.HeaderScopes, wire.HeaderKeyID, wire.HeaderNamespace, wire.HeaderPolicy,
}

// setIdentityHeaders writes the identity of a valid key, and the policy
// that let it through ("" for none), into h as Header.Set would, for less:
// Header.Set canonicalises every name and allocates a one-element slice per
// value, where here the names are canonical already and the six values
// share one array. Each value's slice is capped at its one element, so an
// Add by anyone later copies instead of writing into its neighbour.
func setIdentityHeaders(h http.Header, res keyindex.Result, policy string) {
	all := []string{
		res.Subject, strings.Join(res.Groups, ","), strings.Join(res.Scopes, " "), res.KeyID, res.Namespace,
		// Empty when no policy decided, rather than absent: Caddy's
		// copy_headers (2.6) copies an absent header as its literal
		// placeholder.
		policy,
	}
	for i, name := range identityHeaders {
		h[name] = all[i : i+1 : i+1]
	}
}

package keyindex

import (
	"slices"
)

// HasScopes reports whether r is Valid and grants every required scope.
// Scopes match exactly; no wildcard is interpreted.
func HasScopes(r Result, required []string) bool {
	if r.Code != Valid {
		return false
	}
	for _, s := range required {
		if !slices.Contains(r.Scopes, s) {
			return false
		}
	}
	return true
}

// RequireScopes turns a Valid result lacking any required scope into
// InsufficientScope. The identity is kept (the key is authentic; only the
// authorisation failed), so a caller can say who was refused. Any other
// result is returned unchanged.
func RequireScopes(r Result, required []string) Result {
	if r.Code == Valid && !HasScopes(r, required) {
		r.Code = InsufficientScope
	}
	return r
}

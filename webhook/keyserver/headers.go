package keyserver

import "net/http"

// setIdentityHeaders writes the headers of a 200 (identityHeaders) into h
// as Header.Set would, for less, since it runs on every request let
// through: Header.Set canonicalises every name and allocates a one-element
// slice per value, where the names here are canonical already (wire
// constants, TestIdentityHeaderNamesAreCanonical) and the six values share
// one array. Each value's slice is capped at its one element, so an Add by
// anyone later copies instead of writing into its neighbour.
func setIdentityHeaders(h http.Header, fields [6]headerField) {
	vals := make([]string, len(fields))
	for i, f := range fields {
		vals[i] = f.value
		h[f.name] = vals[i : i+1 : i+1]
	}
}

package keyindex

import (
	"slices"
	"strings"

	"github.com/keyward/keyward/internal/hashsecret"
)

// build converts a hashsecret.Record for the hash Secret name.
func build(name string, k kind, in *hashsecret.Record) (*record, secretRef) {
	n := len(in.Previous)
	if in.Current != nil {
		n++
	}
	r := &record{
		kind:      k,
		name:      in.Name,
		subject:   in.Subject,
		access:    in.Access,
		groups:    cloneStrings(in.Groups),
		scopes:    cloneStrings(in.Scopes),
		expiresAt: noBound,
		suspended: in.Suspended,
		versions:  make([]version, 0, n),
		limits:    limitsOf(in),
	}
	if in.ExpiresAt != nil {
		r.expiresAt = nanos(*in.ExpiresAt)
	}
	add := func(v *hashsecret.Version) {
		// Versions without an id or hash cannot validate (Decode refuses
		// them anyway).
		if v.ID == "" || v.Hash == "" {
			return
		}
		nv := version{id: v.ID, hash: v.Hash, notBefore: nanos(v.NotBefore), notAfter: noBound, lookup: lookupOf(v, k)}
		if v.NotAfter != nil {
			nv.notAfter = nanos(*v.NotAfter)
		}
		r.versions = append(r.versions, nv)
	}
	if in.Current != nil {
		add(in.Current)
		r.hasCurrent = len(r.versions) == 1
	}
	for i := range in.Previous {
		add(&in.Previous[i])
	}
	if len(r.versions) == 0 {
		r.versions = nil
	}
	if in.Tokens != nil {
		tp := *in.Tokens
		tp.Audiences = cloneStrings(tp.Audiences)
		r.tokens = &tp
	}
	ref := name
	r.namespace = in.Namespace
	pack(func(f func(*string)) {
		f(&ref)
		f(&r.namespace)
		r.eachString(f)
	})
	return r, ref
}

// eachString calls f on every string field r owns, except namespace.
func (r *record) eachString(f func(*string)) {
	f(&r.name)
	f(&r.subject)
	f(&r.access)
	for i := range r.groups {
		f(&r.groups[i])
	}
	for i := range r.scopes {
		f(&r.scopes[i])
	}
	for i := range r.versions {
		f(&r.versions[i].id)
		f(&r.versions[i].hash)
	}
	if r.tokens != nil {
		for i := range r.tokens.Audiences {
			f(&r.tokens.Audiences[i])
		}
	}
}

// pack copies every string visited by each into one allocation and points
// the fields into it. Besides saving an object header and a size-class
// round-up per string, this guarantees the index never pins the caller's
// memory (a substring would keep a whole decoded Secret alive).
func pack(each func(f func(*string))) {
	n := 0
	each(func(s *string) { n += len(*s) })
	var b strings.Builder
	b.Grow(n)
	each(func(s *string) { b.WriteString(*s) })
	blob, off := b.String(), 0
	each(func(s *string) {
		l := len(*s)
		*s = blob[off : off+l]
		off += l
	})
}

// cloneStrings copies ss (nil when empty) with clipped capacity, so that a
// caller appending to a shared Result slice cannot write into the index.
func cloneStrings(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	return slices.Clip(slices.Clone(ss))
}

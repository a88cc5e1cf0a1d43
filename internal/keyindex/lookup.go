package keyindex

import (
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// lookup says how a version is found (hashsecret.Version.Lookup).
type lookup uint8

const (
	// byID: a key Keyward generated (or an access key), found by its id;
	// its hash is of the secret part (of the secret key).
	byID lookup = iota
	// byWholeHash: an imported key, found by the hash of the whole key.
	byWholeHash
	// bySecretHash: an imported key in Keyward's format, found by the hash
	// of its secret part, whatever prefix and id it carries.
	bySecretHash
	// byAnyHash: an import recorded before imported keys got random ids
	// (hashsecret.HintImported without a Lookup). Whether its hash is of a
	// whole key or of a Keyward key's secret part is not recorded, so
	// either is accepted; the controllers rewrite such a record on their
	// next reconcile.
	byAnyHash
)

// form says what a presented hash is of.
type form uint8

const (
	formSecret form = iota + 1 // the secret part of a Keyward-format key
	formWhole                  // a whole string (an imported key, a secret key)
)

// accepts reports whether a version found by hash matches a hash of form f.
func (l lookup) accepts(f form) bool {
	switch l {
	case byWholeHash:
		return f == formWhole
	case bySecretHash:
		return f == formSecret
	case byAnyHash:
		return true
	}
	return false
}

func lookupOf(v *hashsecret.Version, k kind) lookup {
	switch {
	case k != kindAPIKey:
		return byID
	case v.Lookup == hashsecret.LookupHash:
		return byWholeHash
	case v.Lookup == hashsecret.LookupSecretHash:
		return bySecretHash
	case v.Lookup == "" && v.Hint == hashsecret.HintImported:
		return byAnyHash
	}
	// An unknown lookup (written by a newer Keyward): by id, where a key
	// in Keyward's format can still find it.
	return byID
}

// candidates returns the records of kind k that may hold p: those holding
// its id (when it has one), then, for API keys, those holding its hash.
// Ids are public and a record in one namespace can claim another's, and a
// record can bind a key another already holds, so the presented secret is
// checked against each (see find).
func (x *Index) candidates(dst []*record, p presented, k kind) (cands []*record, byIDCount int) {
	cands = dst
	x.mu.RLock()
	if p.id != "" {
		cands = x.byID.appendTo(cands, p.id)
	}
	byIDCount = len(cands)
	if k == kindAPIKey {
		cands = x.byHash.appendTo(cands, p.hash)
	}
	x.mu.RUnlock()
	return cands, byIDCount
}

// find returns the record of kind k and its version that p verifies
// against. When several do (a key bound twice), the one bound first wins,
// never a newcomer: a tenant cannot shadow another's key by binding it to a
// suspended or read-only record of its own.
func (x *Index) find(p presented, k kind) (*record, *version) {
	var buf [4]*record
	cands, n := x.candidates(buf[:0], p, k)
	var best *record
	var bestV *version
	for i, r := range cands {
		if r.kind != k {
			continue
		}
		for j := range r.versions {
			v := &r.versions[j]
			if i < n {
				if v.lookup != byID || v.id != p.id {
					continue
				}
			} else if !v.lookup.accepts(p.form) {
				continue
			}
			if keymaterial.EqualHashes(v.hash, p.hash) && (best == nil || boundBefore(r, v, best, bestV)) {
				best, bestV = r, v
			}
		}
	}
	return best, bestV
}

// boundBefore orders two records holding one key: the version bound earlier
// (its NotBefore, which the controllers set when they bind it), then, for
// the same instant, namespace and name, so every replica and every restart
// (whatever order the informer lists in) chooses the same one.
func boundBefore(a *record, av *version, b *record, bv *version) bool {
	if av.notBefore != bv.notBefore {
		return av.notBefore < bv.notBefore
	}
	if a.namespace != b.namespace {
		return a.namespace < b.namespace
	}
	return a.name < b.name
}

// presented is a secret to check against stored hashes: its hash, computed
// once before any lookup (so an unknown id costs what a wrong secret costs),
// what that hash is of, and the id it names, if any.
type presented struct {
	hash string
	id   string
	form form
}

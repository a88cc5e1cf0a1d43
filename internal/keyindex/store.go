package keyindex

import (
	"errors"
	"fmt"
	"slices"

	"github.com/keyward/keyward/internal/hashsecret"
)

// Errors returned by Upsert; the record is then not indexed (and whatever
// was indexed under that hash Secret is removed, as for Delete).
var (
	ErrForeignOwner = errors.New("keyindex: record names an owner other than its hash Secret's name does")
	ErrUnknownKind  = errors.New("keyindex: record has an unknown kind")
)

// table maps a version id, or a hash, to the records holding it. Ids are
// random and the controllers never bind one key twice, so a key is held by
// one record unless a record was copied (or written before that rule): the
// rare shared keys are listed in many, so the common case costs one entry.
// Whichever record holds a key, the presented secret decides, and among
// records it verifies against, the one bound first (see boundBefore).
type table struct {
	one  map[string]*record
	many map[string][]*record
}

func newTable() table {
	return table{one: map[string]*record{}, many: map[string][]*record{}}
}

// add records that r holds k; x.mu must be held.
func (t *table) add(k string, r *record) {
	if list, ok := t.many[k]; ok {
		if !slices.Contains(list, r) {
			t.many[k] = append(list, r)
		}
		return
	}
	cur, ok := t.one[k]
	switch {
	case !ok:
		t.one[k] = r
	case cur != r:
		delete(t.one, k)
		t.many[k] = []*record{cur, r}
	}
}

// remove withdraws r's hold on k; x.mu must be held.
func (t *table) remove(k string, r *record) {
	list, ok := t.many[k]
	if !ok {
		if t.one[k] == r {
			delete(t.one, k)
		}
		return
	}
	// Readers copy what they read under the lock, so editing in place is safe.
	list = slices.DeleteFunc(list, func(o *record) bool { return o == r })
	switch len(list) {
	case 0: // not reachable: a many entry always has two holders
		delete(t.many, k)
	case 1:
		delete(t.many, k)
		t.one[k] = list[0]
	default:
		t.many[k] = list
	}
}

// appendTo appends the records holding k to dst; x.mu must be held (read).
func (t *table) appendTo(dst []*record, k string) []*record {
	if r, ok := t.one[k]; ok {
		return append(dst, r)
	}
	return append(dst, t.many[k]...)
}

func (t *table) len() int { return len(t.one) + len(t.many) }

// Upsert indexes rec as the content of the hash Secret name (in the
// operator namespace), replacing whatever was indexed for it: versions
// missing from rec stop validating when Upsert returns. A nil rec deletes. A
// record whose owner is not the one its Secret's name is derived from (a
// copied or renamed Secret) or has an unknown kind is not indexed, and an
// error says why.
func (x *Index) Upsert(name string, rec *hashsecret.Record) error {
	if rec == nil {
		x.Delete(name)
		return nil
	}
	var err error
	var k kind
	switch rec.Kind {
	case hashsecret.KindAPIKey:
		k = kindAPIKey
	case hashsecret.KindAccessKeyPair:
		k = kindAccessKeyPair
	default:
		err = fmt.Errorf("%w (hash Secret %s)", ErrUnknownKind, name)
	}
	if err == nil && (rec.Namespace == "" || name != hashsecret.Name(rec.Kind, rec.Namespace, rec.Name)) {
		err = fmt.Errorf("%w (hash Secret %s)", ErrForeignOwner, name)
	}
	var r *record
	var ref secretRef
	if err == nil {
		// Built before locking: readers wait only for the map updates.
		r, ref = build(name, k, rec)
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	x.remove(name)
	if r == nil {
		return err
	}
	x.byName[ref] = r
	for i := range r.versions {
		if v := &r.versions[i]; v.lookup == byID {
			x.byID.add(v.id, r)
		} else {
			x.byHash.add(v.hash, r)
		}
	}
	return nil
}

// Delete removes everything indexed for the hash Secret name.
func (x *Index) Delete(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remove(name)
}

// remove unindexes a hash Secret; x.mu must be held.
func (x *Index) remove(ref secretRef) {
	r, ok := x.byName[ref]
	if !ok {
		return
	}
	delete(x.byName, ref)
	for i := range r.versions {
		if v := &r.versions[i]; v.lookup == byID {
			x.byID.remove(v.id, r)
		} else {
			x.byHash.remove(v.hash, r)
		}
	}
}

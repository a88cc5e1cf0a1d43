// Package keyindex is the key server's in-memory index of hash Secret
// records: it answers "is this key valid, and whose is it?" in O(1), by key
// id, or by hash for imported keys, with no I/O. Whoever watches the hash
// Secrets feeds it with Upsert and Delete; every record it holds is
// immutable, so readers never see a record half-updated.
//
// The package never logs; a presented key never ends up in a Result, an
// error or a map key, nor a stored hash in a Result or an error. (Imported
// versions are found by their hash as a map key: a hash, never a secret, and
// the match is then confirmed in constant time.)
package keyindex

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// Code is the outcome of a validation.
type Code string

const (
	Valid         Code = "VALID"
	NotFound      Code = "NOT_FOUND"
	InvalidFormat Code = "INVALID_FORMAT"
	Expired       Code = "EXPIRED"
	Suspended     Code = "SUSPENDED"
	NotYetValid   Code = "NOT_YET_VALID"
	// InsufficientScope is produced by RequireScopes, never by validation.
	InsufficientScope Code = "INSUFFICIENT_SCOPE"
)

// Result is the outcome of a validation. Only a Valid result (and an
// InsufficientScope one derived from it) carries the identity; every other
// result holds its Code alone, so a failure says nothing about the key.
//
// Groups and Scopes are shared with the index and with every other Result
// for the same record: treat them as read-only. (Their capacity is clipped,
// so append copies instead of writing into the shared array.) ExpiresAt is a
// fresh copy the caller may keep or change.
type Result struct {
	Code Code
	// Kind is hashsecret.KindAPIKey or hashsecret.KindAccessKeyPair.
	Kind string
	// Namespace and Name are the owning APIKey's or AccessKeyPair's, as its
	// record says: hash Secrets live in the operator namespace, where only
	// the operator writes, and the record must match the Secret's name.
	Namespace, Name string
	Subject         string
	// KeyID is the id of the version that matched (an access key id for
	// access key pairs); it is public.
	KeyID     string
	Access    string
	Groups    []string
	Scopes    []string
	ExpiresAt *time.Time
}

// Errors returned by Upsert; the record is then not indexed (and whatever
// was indexed under that hash Secret is removed, as for Delete).
var (
	ErrForeignOwner = errors.New("keyindex: record names an owner other than its hash Secret's name does")
	ErrUnknownKind  = errors.New("keyindex: record has an unknown kind")
)

// Input bounds, checked before any other work.
const (
	// maxPresentedLen is the longest API key worth looking at: the longest
	// importable key (Keyward's own format is far shorter).
	maxPresentedLen = 512
	// minImportedLen is the shortest key CheckImportStrength lets in.
	minImportedLen = 32
	// maxAccessKeyIDLen bounds access key ids (Keyward's are 20 characters).
	maxAccessKeyIDLen = 128
)

// noBound stands for "no end" in the nanosecond timestamps below; real
// instants are clamped below it, so "now >= noBound" never holds.
const noBound = math.MaxInt64

type kind uint8

const (
	kindAPIKey kind = iota + 1
	kindAccessKeyPair
)

func (k kind) String() string {
	if k == kindAccessKeyPair {
		return hashsecret.KindAccessKeyPair
	}
	return hashsecret.KindAPIKey
}

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

// version is one indexed key version. Times are Unix nanoseconds rather than
// time.Time: 16 bytes instead of 48, and no *time.Location pinned.
type version struct {
	id, hash  string
	notBefore int64
	notAfter  int64 // noBound when open-ended
	lookup    lookup
}

// record is the immutable indexed form of a hashsecret.Record. All its
// strings share one allocation (see pack).
type record struct {
	namespace, name, subject, access string
	groups, scopes                   []string
	versions                         []version
	tokens                           *hashsecret.TokenPolicy
	expiresAt                        int64 // noBound when the key never expires
	kind                             kind
	suspended                        bool
	// hasCurrent: versions[0] is the record's current version.
	hasCurrent bool
}

// secretRef names a hash Secret (in the operator namespace).
type secretRef = string

// Index is the key server's index. It is safe for concurrent use; lookups
// take a read lock only long enough to fetch immutable records.
type Index struct {
	mu     sync.RWMutex
	byName map[secretRef]*record
	// byID holds the versions found by id: generated keys, access keys.
	byID table
	// byHash holds imported versions, by their hash: an imported key's id
	// is random, and the presented key is hashed once to find it.
	byHash table
}

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

// New returns an empty index.
func New() *Index {
	return &Index{byName: map[secretRef]*record{}, byID: newTable(), byHash: newTable()}
}

// Len returns the number of indexed records (hash Secrets).
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byName)
}

// Versions returns the number of distinct version ids (and hashes of
// imported versions) that can validate.
func (x *Index) Versions() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byID.len() + x.byHash.len()
}

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

// ValidateAPIKey checks a presented API key at now. A key in Keyward's
// format is looked up by its embedded id, and by the hash of its secret part
// among imported keys; anything else that could be an imported key, by its
// hash alone. Input that is neither a well-formed Keyward key nor a known
// imported key is InvalidFormat (a mistyped Keyward key fails its checksum
// and lands here); a well-formed key that is unknown, or whose secret does
// not match, is NotFound. Expiry and suspension are reported only to
// someone holding the right secret.
func (x *Index) ValidateAPIKey(presentedKey string, now time.Time) Result {
	if len(presentedKey) > maxPresentedLen {
		return Result{Code: InvalidFormat}
	}
	if k, err := keymaterial.Parse(presentedKey); err == nil {
		if r, v := x.find(presented{hash: k.SecretHash(), id: k.ID, form: formSecret}, kindAPIKey); v != nil {
			return r.judge(v, now)
		}
		return Result{Code: NotFound}
	}
	if !importable(presentedKey) {
		return Result{Code: InvalidFormat}
	}
	if r, v := x.find(presented{hash: keymaterial.Hash(presentedKey), form: formWhole}, kindAPIKey); v != nil {
		return r.judge(v, now)
	}
	return Result{Code: InvalidFormat}
}

// importable reports whether s has the shape of a key that
// keymaterial.CheckImportStrength can have let in: 32 to 512 printable ASCII
// characters without spaces. The strength heuristics themselves are not
// repeated, so tightening them later does not orphan keys imported before.
func importable(s string) bool {
	if len(s) < minImportedLen || len(s) > maxPresentedLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// ValidateAccessKey checks an AccessKeyPair's access key id and secret key
// at now, with the same rules as ValidateAPIKey; the secret key is verified
// whole. On Valid it also returns a copy of the pair's token policy (nil if
// the record has none; its Audiences are shared and read-only).
func (x *Index) ValidateAccessKey(accessKeyID, secretKey string, now time.Time) (Result, *hashsecret.TokenPolicy) {
	if len(accessKeyID) == 0 || len(accessKeyID) > maxAccessKeyIDLen ||
		len(secretKey) == 0 || len(secretKey) > maxPresentedLen {
		return Result{Code: InvalidFormat}, nil
	}
	r, v := x.find(presented{hash: keymaterial.Hash(secretKey), id: accessKeyID, form: formWhole}, kindAccessKeyPair)
	if v == nil {
		return Result{Code: NotFound}, nil
	}
	res := r.judge(v, now)
	if res.Code != Valid || r.tokens == nil {
		return res, nil
	}
	tp := *r.tokens
	return res, &tp
}

// PairActive reports whether the AccessKeyPair namespace/name still holds
// access key accessKeyID and neither the pair nor that version has expired
// or been suspended at now. Tokens issued for a pair are refused once this
// turns false, e.g. as soon as the pair's deletion is seen. NotBefore is
// not checked: a token can only have been issued once the key was valid.
func (x *Index) PairActive(namespace, name, accessKeyID string, now time.Time) bool {
	_, ok := x.PairIdentity(namespace, name, accessKeyID, now)
	return ok
}

// PairIdentity is PairActive that also returns the pair's identity as it is
// now (subject, groups, scopes), so a token carries no more than its pair
// still grants.
func (x *Index) PairIdentity(namespace, name, accessKeyID string, now time.Time) (Result, bool) {
	var buf [4]*record
	candidates, _ := x.candidates(buf[:0], presented{id: accessKeyID}, kindAccessKeyPair)
	t := nanos(now)
	for _, r := range candidates {
		if r.kind != kindAccessKeyPair || r.namespace != namespace || r.name != name || r.suspended || t >= r.expiresAt {
			continue
		}
		for i := range r.versions {
			if v := &r.versions[i]; v.id == accessKeyID && t < v.notAfter {
				return r.judge(v, now), true
			}
		}
	}
	return Result{}, false
}

// CurrentVersion returns the id and notBefore of the current version of
// the record of kind (hashsecret.KindAPIKey or KindAccessKeyPair) owned by
// namespace/name, as indexed; ok is false when there is none. Both are
// public. Self-rotation uses it to hand out only a version that replaced
// the presented one.
func (x *Index) CurrentVersion(kind, namespace, name string) (id string, notBefore time.Time, ok bool) {
	x.mu.RLock()
	r := x.byName[hashsecret.Name(kind, namespace, name)]
	x.mu.RUnlock()
	if r == nil || !r.hasCurrent || r.kind.String() != kind || r.namespace != namespace || r.name != name {
		return "", time.Time{}, false
	}
	v := r.versions[0]
	return v.id, time.Unix(0, v.notBefore).UTC(), true
}

// judge turns a verified version into a Result at now. Its caller has
// proven it holds the secret, so the precise failure may be told.
func (r *record) judge(v *version, now time.Time) Result {
	t := nanos(now)
	switch {
	case t >= r.expiresAt || t >= v.notAfter:
		return Result{Code: Expired}
	case t < v.notBefore:
		return Result{Code: NotYetValid}
	case r.suspended:
		return Result{Code: Suspended}
	}
	res := Result{
		Code:      Valid,
		Kind:      r.kind.String(),
		Namespace: r.namespace,
		Name:      r.name,
		Subject:   r.subject,
		KeyID:     v.id,
		Access:    r.access,
		Groups:    r.groups,
		Scopes:    r.scopes,
	}
	if r.expiresAt != noBound {
		e := time.Unix(0, r.expiresAt).UTC()
		res.ExpiresAt = &e
	}
	return res
}

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

// Bounds of the Unix nanosecond range (about years 1678 to 2262), kept one
// inside int64 so no real instant equals noBound.
var (
	minInstant = time.Unix(0, math.MinInt64)
	maxInstant = time.Unix(0, noBound-1)
)

// nanos converts t to Unix nanoseconds, clamping instants out of range
// (such as the zero time.Time) instead of letting them overflow.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minInstant):
		return math.MinInt64
	case t.After(maxInstant):
		return noBound - 1
	}
	return t.UnixNano()
}

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

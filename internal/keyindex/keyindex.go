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
//
// By job: keyindex.go is the Index and what it answers (Result, Code);
// store.go stores and replaces records (Upsert, Delete); lookup.go finds the
// records a presented key may belong to; validate.go holds the validation
// rules (input bounds, expiry, suspension, the pair checks behind tokens);
// scopes.go the scope checks; record.go and pack.go the immutable, packed
// form a record is indexed in.
package keyindex

import (
	"sync"
	"time"

	"github.com/keyward/keyward/internal/allowlist"
	"github.com/keyward/keyward/internal/ratelimit"
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
	// RateLimit is the record's own limit (zero: none; a KeyPolicy's
	// default may apply), and AllowedCIDRs its allow-list (unset: any
	// address), parsed when the record was indexed.
	RateLimit    ratelimit.Limit
	AllowedCIDRs allowlist.List
}

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

package keyindex

import (
	"math"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
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

package keyindex

import (
	"math"
	"time"

	"github.com/keyward/keyward/internal/allowlist"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/ratelimit"
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
	// limits: nil when the record sets neither a rate limit nor an
	// allow-list (most records; a pointer keeps them small).
	limits *limits
}

// limits are a record's spec.rateLimit and spec.allowedCIDRs, parsed once.
type limits struct {
	rate  ratelimit.Limit
	cidrs allowlist.List
}

// limitsOf parses a record's limits; nil when it sets none. A limit that
// cannot be counted is none (the schema never lets one through); an
// allow-list fails closed (allowlist.Parse).
func limitsOf(in *hashsecret.Record) *limits {
	var l limits
	if rl := in.RateLimit; rl != nil && rl.Requests > 0 && rl.Period > 0 && rl.Burst >= 0 {
		l.rate = ratelimit.Limit{Requests: rl.Requests, Period: rl.Period, Burst: rl.Burst}
	}
	l.cidrs = allowlist.Parse(in.AllowedCIDRs)
	if l.rate.IsZero() && !l.cidrs.IsSet() {
		return nil
	}
	return &l
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

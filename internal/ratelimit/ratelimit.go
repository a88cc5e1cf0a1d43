// Package ratelimit counts requests against a key's rate limit
// (spec.rateLimit of an APIKey or AccessKeyPair, or a KeyPolicy's per-key
// default). A Store decides one request at a time; two stores implement it:
// a local one per key server replica (the default: each replica allows the
// full limit, so the effective limit is up to limit × replicas), and Redis
// (--rate-limit-store=redis://…), exact across replicas, through GCRA in one
// round trip.
//
// Buckets are named by the caller (the key's record, never a secret), and
// both stores use the same algorithm (GCRA) so that a key's answers and
// headers mean the same whichever store counts them.
package ratelimit

import (
	"context"
	"time"
)

// Limit is a key's allowance: Requests per Period, with bursts of up to
// Burst requests at once (Burst 0 means Requests).
type Limit struct {
	Requests int
	Period   time.Duration
	Burst    int
}

// IsZero reports whether l sets no limit.
func (l Limit) IsZero() bool { return l.Requests <= 0 || l.Period <= 0 }

// EffectiveBurst is Burst, or Requests when Burst is unset.
func (l Limit) EffectiveBurst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Requests
}

// Result is a Store's answer for one request.
type Result struct {
	// Allowed: the request may pass, and spent one request of the budget.
	Allowed bool
	// Remaining requests that would be allowed right now.
	Remaining int
	// RetryAfter, when not Allowed, is how long until one request would be.
	RetryAfter time.Duration
	// ResetAfter is how long until the budget is whole again (the
	// RateLimit header's reset).
	ResetAfter time.Duration
	// Unchecked: no store counted this request, because the store failed;
	// Allowed (and RetryAfter) are --rate-limit-store-failure's answer, and
	// Remaining and ResetAfter mean nothing. Only a Guard sets it.
	Unchecked bool
}

// Store counts requests against limits. Implementations are safe for
// concurrent use and bounded in memory.
type Store interface {
	// Allow spends one request of bucket's budget under l, if the budget
	// allows it. An error means the store could not decide (Redis
	// unreachable, say); what to do then is the caller's policy
	// (--rate-limit-store-failure).
	Allow(ctx context.Context, bucket string, l Limit) (Result, error)
}

// Package ratelimit counts requests against a key's rate limit
// (spec.rateLimit of an APIKey or AccessKeyPair, or a KeyPolicy's per-key
// default). A Store decides one request at a time; two stores implement it:
//
//   - Local (--rate-limit-store=local, the default) counts in each key
//     server replica's memory. Replicas do not talk to each other, so each
//     allows a key its full limit: behind a load balancer spreading a key's
//     requests over N replicas, the key gets up to N times its limit (and
//     exactly its limit only when one replica serves it). Cheap (no
//     allocation, tens of nanoseconds) and bounded in memory.
//   - Redis (--rate-limit-store=redis://… or rediss://…) counts in one
//     Redis that all replicas share, so limits are exact cluster-wide: GCRA
//     in one round trip (github.com/go-redis/redis_rate), each call bounded
//     by a short timeout.
//
// Both run the same algorithm (GCRA) on the same numbers, so a key's
// answers and its Remaining, RetryAfter and ResetAfter mean the same
// whichever store counts them. Buckets are named by the caller (the key's
// record, never a secret).
//
// A Guard wraps the store for --rate-limit-store-failure: when Redis fails,
// open allows the request uncounted, closed refuses it; it exports
// keyward_rate_limit_store_errors_total, keyward_rate_limit_store_up and
// keyward_rate_limit_unchecked_total and reports each change of the store's
// availability once (for a Warning event).
package ratelimit

import (
	"context"
	"time"

	"k8s.io/utils/clock"
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

// LocalStoreFlag is --rate-limit-store's value for the per-replica store,
// the default.
const LocalStoreFlag = "local"

// OpenStore returns the store --rate-limit-store names: "" or "local" for
// a Local store (per replica), a redis:// or rediss:// URL for Redis
// (shared by all replicas; close it with its Close method). Wrap it in a
// Guard for --rate-limit-store-failure.
func OpenStore(flag string, clk clock.PassiveClock) (Store, error) {
	if flag == "" || flag == LocalStoreFlag {
		return NewLocal(clk), nil
	}
	r, err := NewRedis(flag)
	if err != nil {
		return nil, err // not a Store holding a nil *Redis
	}
	return r, nil
}

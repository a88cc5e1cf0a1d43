package keyserver

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// Per-key limits on the work a key holder can cause (attack 10 of issue
// 12). Unlike the failure limit they count successes, and they are keyed by
// the record (namespace/name of the APIKey or AccessKeyPair), not by the
// secret presented, so switching between a key's versions gains nothing.
const (
	// A self-rotation is a reconcile with several API writes and the key
	// server's polling for the answer. A client rotates when it wants a
	// fresh key (daily at most, in practice); a burst of 2 lets it retry
	// once at once after a 503. One a minute keeps a key's rotations far
	// below what one controller worker does (MinSelfRotationGrace then
	// keeps at most a handful of versions in grace).
	DefaultSelfRotationBurst  = 2
	DefaultSelfRotationRefill = time.Minute
	// A token lives for hours; a workload mints one per lifetime. A burst
	// of 20 covers a rollout whose replicas share a pair; 10 a second
	// sustained is far above any legitimate use while one pair cannot
	// spend the key server's CPU on signatures.
	DefaultTokenBurst  = 20
	DefaultTokenRefill = 100 * time.Millisecond
)

// maxTrackedKeys bounds each limiter's memory: buckets exist only for keys
// that validated, so this is reached only with that many keys active at
// once.
const maxTrackedKeys = 16384

// keyLimiter holds an x/time/rate token bucket per key.
type keyLimiter struct {
	mu    sync.Mutex
	keys  map[string]*rate.Limiter
	every rate.Limit
	burst int
	clock clock.PassiveClock
	max   int
}

// newKeyLimiter allows burst at once, then one per refill; zero values take
// the defaults given.
func newKeyLimiter(burst int, refill time.Duration, defBurst int, defRefill time.Duration, clk clock.PassiveClock) *keyLimiter {
	if burst <= 0 {
		burst = defBurst
	}
	if refill <= 0 {
		refill = defRefill
	}
	return &keyLimiter{keys: map[string]*rate.Limiter{}, every: rate.Every(refill), burst: burst, clock: clk, max: maxTrackedKeys}
}

// take spends one token of namespace/name's bucket, or reports how long
// until one is available.
func (l *keyLimiter) take(namespace, name string) (time.Duration, bool) {
	now := l.clock.Now()
	// A fresh string: the index's strings share one allocation per record
	// (hashes included), which a limiter must not keep alive.
	ref := namespace + "/" + name
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.keys[ref]
	if !ok {
		if len(l.keys) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.keys[ref] = lim
	}
	if lim.AllowN(now, 1) {
		return 0, true
	}
	return time.Duration((1 - lim.TokensAt(now)) / float64(l.every) * float64(time.Second)), false
}

// evict forgets keys whose bucket is full (a new bucket is the same), and
// if that is not enough an arbitrary half; l.mu must be held.
func (l *keyLimiter) evict(now time.Time) {
	for ref, lim := range l.keys {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.keys, ref)
		}
	}
	for ref := range l.keys {
		if len(l.keys) < l.max/2 {
			break
		}
		delete(l.keys, ref)
	}
}

// limitedKey answers 429 for a key over its limit. It is not a failed
// attempt: the credential was right.
func limitedKey(w http.ResponseWriter, wait time.Duration, what string) outcome {
	secs := retryAfterSeconds(wait)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSON(w, http.StatusTooManyRequests, errorBody{Error: "rate_limited",
		Message: fmt.Sprintf("%s; retry after %d s", what, secs)})
	return outcome{result: resultRateLimited}
}

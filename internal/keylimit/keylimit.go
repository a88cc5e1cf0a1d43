// Package keylimit bounds the work one key can cause: a token bucket
// (golang.org/x/time/rate) per key, named by its record's namespace and name
// rather than by any secret, so switching between a key's versions gains
// nothing. Memory is bounded, and time comes from an injected clock.
package keylimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// MaxTrackedKeys bounds a Limiter's memory: buckets exist only for keys that
// were used, so this is reached only with that many keys active at once.
const MaxTrackedKeys = 16384

// Limiter holds a bucket per key. It is safe for concurrent use.
type Limiter struct {
	mu    sync.Mutex
	keys  map[string]*rate.Limiter
	every rate.Limit
	burst int
	clock clock.PassiveClock
	max   int
}

// New allows burst at once per key, then one per refill; zero or negative
// values take the defaults given.
func New(burst int, refill time.Duration, defBurst int, defRefill time.Duration, clk clock.PassiveClock) *Limiter {
	if burst <= 0 {
		burst = defBurst
	}
	if refill <= 0 {
		refill = defRefill
	}
	return &Limiter{keys: map[string]*rate.Limiter{}, every: rate.Every(refill), burst: burst, clock: clk, max: MaxTrackedKeys}
}

// Take spends one of namespace/name's tokens, or reports how long until one
// is available.
func (l *Limiter) Take(namespace, name string) (time.Duration, bool) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.bucket(namespace, name, now)
	if lim.AllowN(now, 1) {
		return 0, true
	}
	return l.until(lim, now), false
}

// Wait is how long until namespace/name may Take (0: now), spending
// nothing: for work that spends its token only once done.
func (l *Limiter) Wait(namespace, name string) time.Duration {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.keys[ref(namespace, name)]
	if !ok || lim.TokensAt(now) >= 1 {
		return 0
	}
	return l.until(lim, now)
}

// Len is the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// ref is a fresh string: a caller's strings may share an allocation with
// much more (the key index packs a record's hashes with its name), which
// the limiter must not keep alive.
func ref(namespace, name string) string { return namespace + "/" + name }

// bucket returns namespace/name's bucket, made full if new; l.mu must be
// held.
func (l *Limiter) bucket(namespace, name string, now time.Time) *rate.Limiter {
	r := ref(namespace, name)
	lim, ok := l.keys[r]
	if !ok {
		if len(l.keys) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.keys[r] = lim
	}
	return lim
}

func (l *Limiter) until(lim *rate.Limiter, now time.Time) time.Duration {
	return time.Duration((1 - lim.TokensAt(now)) / float64(l.every) * float64(time.Second))
}

// evict forgets keys whose bucket is full (a new bucket is the same), and
// if that is not enough an arbitrary half; l.mu must be held.
func (l *Limiter) evict(now time.Time) {
	for r, lim := range l.keys {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.keys, r)
		}
	}
	for r := range l.keys {
		if len(l.keys) < l.max/2 {
			break
		}
		delete(l.keys, r)
	}
}

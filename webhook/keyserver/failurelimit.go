package keyserver

import (
	"github.com/keyward/keyward/api/wire"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// maxTrackedBuckets bounds the limiter's memory (about 200 bytes a bucket)
// under a flood of addresses and key ids.
const maxTrackedBuckets = 1 << 14

// addressBudgetFactor sizes every address's own budget of failures, across
// all the key ids it names: this many times a bucket's burst, refilled this
// many times faster. A guesser that names a new key id on every attempt
// gets a fresh (address, key id) bucket each time; this budget stops it,
// while a gateway's worth of clients' honest mistakes stays far below it.
const addressBudgetFactor = 50

// maxBucketKeyID bounds the key id kept in a bucket; a longer one (which
// names no key: access key ids are at most 64 bytes) counts against the
// address alone.
const maxBucketKeyID = 64

// bucket is what failed attempts are counted against: a client address and
// the key id the credential names ("" when it names none). Guessing is done
// per key id (each has its own secret to find), so a guesser is limited
// there, while other clients behind the same address, other key ids and
// credentials that validate are not.
type bucket struct {
	addr  netip.Addr
	keyID string
}

// failureLimiter limits failed attempts per bucket (x/time/rate token
// buckets): a burst of limit failures, then one per refill. Successful
// requests never reach it.
type failureLimiter struct {
	mu      sync.Mutex
	buckets map[bucket]*rate.Limiter
	limit   int
	every   rate.Limit
	clock   clock.PassiveClock
}

func newFailureLimiter(limit int, refill time.Duration, clk clock.PassiveClock) *failureLimiter {
	return &failureLimiter{buckets: map[bucket]*rate.Limiter{}, limit: limit, every: rate.Every(refill), clock: clk}
}

// failed records a failed attempt in b, unless b has no failures left: then
// it records nothing and reports how long until b may fail again.
func (l *failureLimiter) failed(b bucket) (time.Duration, bool) {
	if len(b.keyID) > maxBucketKeyID {
		b.keyID = ""
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.buckets[b]
	if !ok {
		if len(l.buckets) >= maxTrackedBuckets {
			l.evict(now)
		}
		b.keyID = strings.Clone(b.keyID) // never pin a request's buffer
		lim = rate.NewLimiter(l.every, l.limit)
		l.buckets[b] = lim
	}
	if lim.AllowN(now, 1) {
		return 0, false
	}
	tokens := lim.TokensAt(now)
	return time.Duration((1 - tokens) / float64(l.every) * float64(time.Second)), true
}

// len is the number of buckets tracked.
func (l *failureLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// evict forgets buckets that have refilled (they owe nothing), and if that
// is not enough, an arbitrary half: memory stays bounded under a flood.
func (l *failureLimiter) evict(now time.Time) {
	for b, lim := range l.buckets {
		if lim.TokensAt(now) >= float64(l.limit) {
			delete(l.buckets, b)
		}
	}
	for b := range l.buckets {
		if len(l.buckets) < maxTrackedBuckets/2 {
			break
		}
		delete(l.buckets, b)
	}
}

// limitFailure is called by a handler whose credential did not validate,
// before it answers. It counts the failure against the request's bucket
// (client address and keyID, the key id the credential names or ""), and a
// failure naming a key id also against the address's larger budget; when
// either has no failures left it answers 429 with Retry-After instead
// and returns true, and the handler writes nothing more.
//
// Credentials are checked before this, and one that validates is answered
// whatever its bucket holds: the key server cannot tell a key's owner from a
// guesser who found the key, so refusing it would protect nothing and would
// let anyone who knows a key id (key ids are public) lock its owner out.
// What stops online guessing is the secret's entropy (190 bits for Keyward
// keys, at least ~128 for imported ones); the limit answers a guesser's
// misses with 429 and keeps each guesser's answers in its own bucket.
func (s *Server) limitFailure(w http.ResponseWriter, r *http.Request, keyID string) bool {
	wait, limited := s.countFailure(clientAddr(r, s.opts.TrustedProxies), keyID)
	if limited {
		writeFailureLimited(w, wait)
	}
	return limited
}

// failureLimitedMessage is the reason given with a 429 for failed attempts.
const failureLimitedMessage = "too many failed attempts from this address for this key; retry later"

// countFailure counts a failed attempt from addr naming keyID, as
// limitFailure says, and reports whether the request is to be answered 429
// instead, and after how long to retry.
func (s *Server) countFailure(addr netip.Addr, keyID string) (time.Duration, bool) {
	wait, limited := s.limiter.failed(bucket{addr: addr, keyID: keyID})
	if !limited && keyID != "" {
		// Without a key id the bucket above is the address's already.
		wait, limited = s.addrLimiter.failed(bucket{addr: addr})
	}
	return wait, limited
}

// writeFailureLimited answers 429 for too many failed attempts.
func writeFailureLimited(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	writeJSON(w, http.StatusTooManyRequests, wire.ErrorBody{Error: "rate_limited", Message: failureLimitedMessage})
}

func retryAfterSeconds(d time.Duration) int {
	return int(math.Max(1, math.Ceil(d.Seconds())))
}

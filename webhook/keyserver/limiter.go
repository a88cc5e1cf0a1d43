package keyserver

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// maxTrackedClients bounds the limiter's memory under a flood of addresses.
const maxTrackedClients = 10000

// failureLimiter limits failed attempts per client address (x/time/rate
// token buckets): a burst of limit failures, then one per refill. Successful
// requests cost nothing, so a busy well-behaved client is never limited.
type failureLimiter struct {
	mu      sync.Mutex
	clients map[string]*rate.Limiter
	limit   int
	every   rate.Limit
	clock   clock.PassiveClock
}

func newFailureLimiter(limit int, refill time.Duration, clk clock.PassiveClock) *failureLimiter {
	return &failureLimiter{clients: map[string]*rate.Limiter{}, limit: limit, every: rate.Every(refill), clock: clk}
}

// blocked reports whether addr has used up its failures, and how long until
// it may try again.
func (l *failureLimiter) blocked(addr string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[addr]
	if !ok {
		return 0, false
	}
	tokens := lim.TokensAt(l.clock.Now())
	if tokens >= 1 {
		return 0, false
	}
	wait := time.Duration((1 - tokens) / float64(l.every) * float64(time.Second))
	return wait, true
}

// fail records a failed attempt by addr.
func (l *failureLimiter) fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[addr]
	if !ok {
		if len(l.clients) >= maxTrackedClients {
			l.evict()
		}
		lim = rate.NewLimiter(l.every, l.limit)
		l.clients[addr] = lim
	}
	lim.AllowN(l.clock.Now(), 1)
}

// evict forgets clients whose bucket has refilled (they owe nothing), and
// if none has, an arbitrary half: memory stays bounded under a flood.
func (l *failureLimiter) evict() {
	now := l.clock.Now()
	for addr, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.limit) {
			delete(l.clients, addr)
		}
	}
	for addr := range l.clients {
		if len(l.clients) < maxTrackedClients/2 {
			break
		}
		delete(l.clients, addr)
	}
}

// clientAddr is the peer's IP. Forwarded headers are not trusted: anyone
// could set them to dodge the limit.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func retryAfterSeconds(d time.Duration) int {
	return int(math.Max(1, math.Ceil(d.Seconds())))
}

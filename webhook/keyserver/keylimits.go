package keyserver

import (
	"fmt"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"strconv"
	"time"
)

// Per-key limits on the work a key holder can cause (attack 10 of issue
// 12), internal/keylimit buckets keyed by the record (namespace/name of the
// APIKey or AccessKeyPair), not by the secret presented. Unlike the
// failure limit they count successes.
const (
	// A self-rotation is a reconcile with several API writes and the key
	// server's polling for the answer. A client rotates when it wants a
	// fresh key (daily at most, in practice); a burst of 2 lets it retry
	// at once after a 503. One a minute keeps a key's rotations far below
	// what one controller worker does (MinSelfRotationGrace then keeps at
	// most a handful of versions in grace).
	DefaultSelfRotationBurst  = 2
	DefaultSelfRotationRefill = time.Minute
	// A token lives for hours; a workload mints one per lifetime. A burst
	// of 20 covers a rollout whose replicas share a pair; 10 a second
	// sustained is far above any legitimate use while one pair cannot
	// spend the key server's CPU on signatures.
	DefaultTokenBurst  = 20
	DefaultTokenRefill = 100 * time.Millisecond
)

// limitedKey answers 429 for a key over its limit. It is not a failed
// attempt: the credential was right.
func limitedKey(w http.ResponseWriter, wait time.Duration, what string) outcome {
	secs := retryAfterSeconds(wait)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSON(w, http.StatusTooManyRequests, wire.ErrorBody{Error: "rate_limited",
		Message: fmt.Sprintf("%s; retry after %d s", what, secs)})
	return outcome{result: resultRateLimited}
}

package tokens

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// VerifiedCache remembers tokens whose parsing, header checks and signature
// have passed, so that a token presented again is not verified again (an
// ES256 verification is most of the cost of validating a token). A
// Validator with a Cache still runs, on every call:
//
//   - the shape checks on the raw token (length, parts, header size);
//   - the key lookup: the kid the token was verified with must still
//     resolve, through the Validator's Key, to the same public key; a key
//     that left the set stops validating its tokens at once, and a kid that
//     now names another key sends the token through full verification;
//   - every claims check (issuer, audience against this Validator's
//     Audiences, exp, nbf, iat, required claims) at this call's time.
//
// Only the result of a Validate that succeeded is stored; failures are
// never cached. Entries are keyed by the SHA-256 of the whole compact token
// and hold the decoded claims, the kid and the verifying public key, never
// the token. A token is stored until its exp (not past it: one validated in
// the leeway after exp is not stored).
//
// The cache is bounded both in entries and in (estimated) bytes; when a
// shard is full, its expired entries are dropped and then, if that is not
// enough, arbitrary ones (Go's map iteration order), down to 7/8 of the
// bound, so eviction is amortised O(1) per insert. An evicted token is
// simply verified again. It is safe for concurrent use; a nil
// *VerifiedCache caches nothing.
type VerifiedCache struct {
	shards   []cacheShard
	maxLen   int // entries per shard
	maxBytes int // estimated bytes per shard
}

// cacheEntryOverhead estimates an entry's heap beyond what claimsBytes
// counts: the Claims struct and its dates, the kid, the map slot. Checked
// against the heap by TestCacheEntryCostCoversItsHeap.
const cacheEntryOverhead = 512

// claimsBytes estimates the heap of the strings and slices c holds: each
// string rounded up to 16 bytes, each slice element 32 bytes (its header,
// and the spare capacity the JSON decoder may have left behind).
func claimsBytes(c *Claims) int {
	str := func(s string) int { return (len(s) + 15) &^ 15 }
	n := str(c.Issuer) + str(c.Subject) + str(c.ID) + str(c.AccessKeyID) + str(c.Namespace) + str(c.Pair)
	for _, l := range [][]string{c.Audience, c.Groups, c.Scopes} {
		for _, s := range l {
			n += 32 + str(s)
		}
	}
	return n
}

// maxCacheShards: enough to keep lock contention negligible on a few CPUs.
const maxCacheShards = 16

type cacheShard struct {
	mu    sync.RWMutex
	m     map[[sha256.Size]byte]cacheEntry
	bytes int
}

type cacheEntry struct {
	claims *Claims // as Validate produced them; never modified
	kid    string
	key    *ecdsa.PublicKey // the key the signature was verified with
	exp    time.Time
	cost   int
}

// NewVerifiedCache returns a cache of at most maxEntries tokens taking at
// most about maxBytes of heap (each entry is charged an estimate of the
// heap its claims take). It returns nil, which caches nothing, if
// either bound is not positive.
func NewVerifiedCache(maxEntries, maxBytes int) *VerifiedCache {
	if maxEntries <= 0 || maxBytes <= 0 {
		return nil
	}
	// Shards of at least a thousand entries: a small cache is one shard,
	// so its bounds are not split into slivers.
	n := min(maxCacheShards, max(1, maxEntries/1024))
	c := &VerifiedCache{shards: make([]cacheShard, n), maxLen: maxEntries / n, maxBytes: maxBytes / n}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]cacheEntry)
	}
	return c
}

// Len returns the number of entries, expired ones included.
func (c *VerifiedCache) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Bytes returns the estimated heap the entries take.
func (c *VerifiedCache) Bytes() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += sh.bytes
		sh.mu.RUnlock()
	}
	return n
}

func (c *VerifiedCache) shard(sum *[sha256.Size]byte) *cacheShard {
	// The hash is uniform; its first bytes pick the shard.
	return &c.shards[(uint(sum[0])|uint(sum[1])<<8)%uint(len(c.shards))]
}

// get returns the claims stored for sum if the kid they were verified with
// still resolves through keyOf to the same key.
func (c *VerifiedCache) get(sum *[sha256.Size]byte, keyOf func(kid string) (*ecdsa.PublicKey, bool)) (*Claims, bool) {
	sh := c.shard(sum)
	sh.mu.RLock()
	e, ok := sh.m[*sum]
	sh.mu.RUnlock()
	if !ok || e.key == nil {
		return nil, false
	}
	pub, ok := keyOf(e.kid)
	if !ok || pub == nil || (pub != e.key && !pub.Equal(e.key)) {
		return nil, false
	}
	return e.claims, true
}

// put stores the claims of a token that Validate accepted at now.
func (c *VerifiedCache) put(sum *[sha256.Size]byte, claims *Claims, kid string, key *ecdsa.PublicKey, now time.Time) {
	if claims.Expiry == nil {
		return
	}
	exp := claims.Expiry.Time()
	if !now.Before(exp) {
		return
	}
	// Callers get copies of the Claims struct but share its slices: clip
	// them so that an append never writes into the cached arrays.
	claims.Audience = slices.Clip(claims.Audience)
	claims.Groups = slices.Clip(claims.Groups)
	claims.Scopes = slices.Clip(claims.Scopes)
	e := cacheEntry{claims: claims, kid: kid, key: key, exp: exp, cost: cacheEntryOverhead + claimsBytes(claims) + len(kid)}
	if e.cost > c.maxBytes {
		return
	}

	sh := c.shard(sum)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[*sum]; ok {
		delete(sh.m, *sum)
		sh.bytes -= old.cost
	}
	if len(sh.m) >= c.maxLen || sh.bytes+e.cost > c.maxBytes {
		sh.evict(now, c.maxLen-c.maxLen/8, c.maxBytes-c.maxBytes/8-e.cost)
	}
	sh.m[*sum] = e
	sh.bytes += e.cost
}

// evict drops expired entries, then arbitrary ones until the shard holds
// fewer than maxLen entries and at most maxBytes. sh.mu must be held.
func (sh *cacheShard) evict(now time.Time, maxLen, maxBytes int) {
	for k, e := range sh.m {
		if !now.Before(e.exp) {
			delete(sh.m, k)
			sh.bytes -= e.cost
		}
	}
	for k, e := range sh.m {
		if len(sh.m) < maxLen && sh.bytes <= maxBytes {
			break
		}
		delete(sh.m, k)
		sh.bytes -= e.cost
	}
}

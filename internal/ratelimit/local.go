package ratelimit

import (
	"context"
	"crypto/sha256"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// DefaultMaxBuckets bounds a Local store's memory: about 75 bytes a bucket
// plus its name, measured 7.7 MB full with 40-byte names and 25.5 MB with
// 317-byte ones (the longest namespace/name), 41 MB at worst (544-byte
// names). Buckets that owe nothing are forgotten first, so it is reached
// only with that many limited keys busy on one replica at once.
const DefaultMaxBuckets = 1 << 16

// maxBucketName is the longest bucket name kept as it is; a longer one is
// kept shortened (bucketKey). Callers name buckets after key records, which
// are shorter.
const maxBucketName = 512

// localShards spreads the buckets over this many maps, each with its own
// lock, so that requests of different keys rarely share a lock.
const localShards = 64

// Local is the per-replica Store: each key server replica counts on its own,
// so with N replicas behind a load balancer a key may get up to N times its
// limit (each replica allows the full limit). Use Redis for limits exact
// across replicas.
//
// The hot path takes a shard's read lock for one map lookup and then updates
// the bucket's TAT with a compare-and-swap: no lock is held while counting
// and requests of different keys never wait for each other.
//
// Memory is bounded by the maximum number of buckets. A bucket whose TAT is
// past owes nothing and is forgotten with no effect on any answer. When
// more buckets than the maximum owe time at once, those owing the fewest
// requests are forgotten first: each such owner regains only that little,
// and to get a bucket of its own forgotten, a client must first make the
// store track more buckets than the maximum, each owing more than its own
// does - spending more requests than it could regain.
type Local struct {
	clock clock.PassiveClock
	// epoch is the origin of every TAT: times are durations since it, read
	// from the clock's monotonic reading when it has one.
	epoch  time.Time
	seed   maphash.Seed
	max    int64
	count  atomic.Int64 // buckets in all shards
	shards [localShards]shard

	sweep sync.Mutex // one makeRoom at a time
}

type shard struct {
	mu      sync.RWMutex
	buckets map[string]*bucket // by bucketKey
}

type bucket struct {
	tat atomic.Int64 // time.Duration since Local.epoch
	// interval is the emission interval of the last request's limit: what
	// makeRoom measures the bucket's debt in.
	interval atomic.Int64
}

// LocalOption configures NewLocal.
type LocalOption func(*Local)

// MaxBuckets sets the most buckets a Local store keeps (DefaultMaxBuckets
// when n <= 0). It may exceed n by at most the number of shards while
// requests race to add buckets.
func MaxBuckets(n int) LocalOption {
	return func(s *Local) {
		if n > 0 {
			s.max = int64(n)
		}
	}
}

// NewLocal returns a per-replica Store that reads time from clk.
func NewLocal(clk clock.PassiveClock, opts ...LocalOption) *Local {
	s := &Local{clock: clk, epoch: clk.Now(), seed: maphash.MakeSeed(), max: DefaultMaxBuckets}
	for _, o := range opts {
		o(s)
	}
	for i := range s.shards {
		s.shards[i].buckets = map[string]*bucket{}
	}
	return s
}

// Allow implements Store; it never fails. A zero Limit limits nothing: the
// request is allowed and nothing is counted.
func (s *Local) Allow(_ context.Context, name string, l Limit) (Result, error) {
	if l.IsZero() {
		return Result{Allowed: true}, nil
	}
	id := bucketKey(name)
	now := s.clock.Since(s.epoch)
	sh := &s.shards[maphash.String(s.seed, id)%localShards]
	sh.mu.RLock()
	b := sh.buckets[id]
	sh.mu.RUnlock()
	if b == nil {
		b = s.add(sh, id, now)
	}
	interval, burstOffset := spans(l)
	if time.Duration(b.interval.Load()) != interval {
		b.interval.Store(int64(interval))
	}
	for {
		tat := b.tat.Load()
		newTAT, r := gcraStep(now, time.Duration(tat), interval, burstOffset)
		if !r.Allowed || b.tat.CompareAndSwap(tat, int64(newTAT)) {
			return r, nil
		}
	}
}

// Len is the number of buckets tracked.
func (s *Local) Len() int { return int(s.count.Load()) }

// bucketKey is name itself, or for a name longer than maxBucketName its
// first maxBucketName bytes followed by its SHA-256: a length no name kept
// as it is has, so no short name can stand for a long one.
func bucketKey(name string) string {
	if len(name) <= maxBucketName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxBucketName] + string(sum[:])
}

// add returns id's bucket in sh, adding a new (empty) one if there is none,
// after making room when the store is full.
func (s *Local) add(sh *shard, id string, now time.Duration) *bucket {
	if s.count.Load() >= s.max {
		s.makeRoom(now)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b := sh.buckets[id]; b != nil {
		return b
	}
	b := &bucket{}
	// Never pin the caller's string: it may share an allocation with much
	// more (a request's buffer, a record's other fields).
	id = strings.Clone(id)
	sh.buckets[id] = b
	s.count.Add(1)
	return b
}

// makeRoom brings the store down to 7/8 of its maximum, so that the next
// max/8 new buckets need no sweep: it forgets every bucket that owes
// nothing, and if that is not enough, those owing the fewest requests.
func (s *Local) makeRoom(now time.Duration) {
	s.sweep.Lock()
	defer s.sweep.Unlock()
	if s.count.Load() < s.max {
		return // another request made room meanwhile
	}
	target := s.max - s.max/8
	var debts []time.Duration // of the buckets that owe time, in intervals
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, b := range sh.buckets {
			if d := debt(b, now); d <= 0 {
				delete(sh.buckets, id)
				s.count.Add(-1)
			} else {
				debts = append(debts, d)
			}
		}
		sh.mu.Unlock()
	}
	excess := s.count.Load() - target
	if excess <= 0 {
		return
	}
	slices.Sort(debts)
	threshold := debts[min(excess, int64(len(debts)))-1]
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, b := range sh.buckets {
			if excess <= 0 {
				break
			}
			if debt(b, now) <= threshold {
				delete(sh.buckets, id)
				s.count.Add(-1)
				excess--
			}
		}
		sh.mu.Unlock()
		if excess <= 0 {
			return
		}
	}
}

// debt is how many requests b's owner would regain if b were forgotten: the
// time its TAT is ahead of now, in emission intervals (rounded up, so any
// debt counts), 0 when it owes nothing.
func debt(b *bucket, now time.Duration) time.Duration {
	ahead := time.Duration(b.tat.Load()) - now
	if ahead <= 0 {
		return 0
	}
	interval := max(time.Duration(b.interval.Load()), 1)
	return (ahead + interval - 1) / interval
}

package ratelimit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

func allow(t *testing.T, s Store, bucket string, l Limit) Result {
	t.Helper()
	r, err := s.Allow(context.Background(), bucket, l)
	if err != nil {
		t.Fatalf("Allow(%q): %v", bucket, err)
	}
	return r
}

// spend allows requests from bucket until one is refused, returning how
// many were allowed (at most 1000).
func spend(t *testing.T, s Store, bucket string, l Limit) int {
	t.Helper()
	for n := range 1000 {
		if !allow(t, s, bucket, l).Allowed {
			return n
		}
	}
	t.Fatalf("bucket %q was never refused", bucket)
	return 0
}

func TestLocalCountsEachBucketOnItsOwnByTheClock(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	s := NewLocal(clk)
	l := Limit{Requests: 10, Period: time.Minute, Burst: 3}
	if n := spend(t, s, "ns/a", l); n != 3 {
		t.Fatalf("allowed %d at once, want the burst of 3", n)
	}
	if n := spend(t, s, "ns/b", l); n != 3 {
		t.Fatalf("another bucket allowed %d, want its own burst of 3", n)
	}
	r := allow(t, s, "ns/a", l)
	if r.Allowed || r.RetryAfter != 6*time.Second || r.ResetAfter != 18*time.Second {
		t.Fatalf("a spent bucket answered %+v, want refused, retry after 6s, reset after 18s", r)
	}
	clk.SetTime(t0.Add(6 * time.Second))
	if r := allow(t, s, "ns/a", l); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("one interval later: %+v, want one allowed, none remaining", r)
	}
}

func TestLocalZeroLimitLimitsNothingAndTracksNothing(t *testing.T) {
	s := NewLocal(clocktesting.NewFakePassiveClock(t0))
	for range 100 {
		if r := allow(t, s, "ns/a", Limit{}); !r.Allowed {
			t.Fatalf("refused under no limit: %+v", r)
		}
	}
	if s.Len() != 0 {
		t.Fatalf("tracks %d buckets for requests under no limit", s.Len())
	}
}

func TestLocalConcurrentRequestsSpendTheBudgetExactly(t *testing.T) {
	s := NewLocal(clocktesting.NewFakePassiveClock(t0))
	l := Limit{Requests: 1000, Period: time.Hour}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if r, _ := s.Allow(context.Background(), "ns/hot", l); r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 1000 {
		t.Fatalf("8×500 concurrent requests got %d allowed, want exactly the burst of 1000", allowed.Load())
	}
}

// Attack 1: a client whose key is spent makes the replica track many new
// buckets (keys of its own, each with a limit it chose), hoping that the
// store forgets its spent bucket to make room and so gives it a fresh
// budget. The fillers are cheap to keep owing: one request each under a
// limit of one a day.
func TestAttack1ANewBucketFloodDoesNotRefillASpentBucket(t *testing.T) {
	const max = 256
	clk := clocktesting.NewFakePassiveClock(t0)
	s := NewLocal(clk, MaxBuckets(max))
	own := Limit{Requests: 100, Period: time.Minute}
	if n := spend(t, s, "tenant/own", own); n != 100 {
		t.Fatalf("allowed %d, want 100", n)
	}
	perDay := Limit{Requests: 1, Period: 24 * time.Hour}
	for i := range 20 * max {
		allow(t, s, fmt.Sprintf("tenant/filler-%d", i), perDay)
	}
	if r := allow(t, s, "tenant/own", own); r.Allowed {
		t.Fatalf("after %d new buckets the spent bucket allowed a request again (%+v): the store forgot it", 20*max, r)
	}
	if s.Len() > max+localShards {
		t.Fatalf("tracks %d buckets, more than the maximum %d", s.Len(), max)
	}
}

// Attack 2: a flood of distinct bucket names (many keys, each used once)
// must not grow the replica's memory without bound, and buckets still owing
// time - other keys' spent budgets - survive it while forgettable ones go.
func TestAttack2ABucketFloodKeepsMemoryBoundedAndSpentBucketsKept(t *testing.T) {
	const max = 512
	clk := clocktesting.NewFakePassiveClock(t0)
	s := NewLocal(clk, MaxBuckets(max))
	heavy := Limit{Requests: 10, Period: time.Hour}
	for i := range max / 4 {
		spend(t, s, fmt.Sprintf("victim/%d", i), heavy)
	}
	light := Limit{Requests: 1000, Period: time.Second} // owes 1ms after one request
	for i := range 100 * max {
		if i%max == 0 {
			clk.SetTime(clk.Now().Add(time.Millisecond))
		}
		allow(t, s, fmt.Sprintf("flood/%d", i), light)
		if s.Len() > max+localShards {
			t.Fatalf("after %d new buckets, %d tracked: more than the maximum %d", i+1, s.Len(), max)
		}
	}
	for i := range max / 4 {
		if r := allow(t, s, fmt.Sprintf("victim/%d", i), heavy); r.Allowed {
			t.Fatalf("victim/%d's spent bucket was forgotten in the flood: %+v", i, r)
		}
	}
}

func TestLocalForgetsBucketsThatOweNothingFirst(t *testing.T) {
	const max = 64
	clk := clocktesting.NewFakePassiveClock(t0)
	s := NewLocal(clk, MaxBuckets(max))
	short := Limit{Requests: 1, Period: time.Second}
	long := Limit{Requests: 1, Period: time.Hour}
	for i := range max / 2 {
		allow(t, s, fmt.Sprintf("short/%d", i), short)
		allow(t, s, fmt.Sprintf("long/%d", i), long)
	}
	clk.SetTime(t0.Add(time.Second)) // the short buckets owe nothing now
	allow(t, s, "new", short)
	if s.Len() != max/2+1 {
		t.Fatalf("tracks %d buckets, want the %d still owing time and the new one", s.Len(), max/2)
	}
	for i := range max / 2 {
		if r := allow(t, s, fmt.Sprintf("long/%d", i), long); r.Allowed {
			t.Fatalf("long/%d, still owing, was forgotten", i)
		}
	}
}

// Attack 3: bucket names come from key records, which tenants name. A
// huge name must not be kept whole, and a name must not reach another
// bucket - in particular not the one a long name is kept as (its SHA-256).
func TestAttack3LongBucketNamesAreBoundedAndCollideWithNoShortName(t *testing.T) {
	s := NewLocal(clocktesting.NewFakePassiveClock(t0))
	l := Limit{Requests: 1, Period: time.Hour}
	long := strings.Repeat("x", 1<<20)
	spend(t, s, long, l)
	sum := sha256.Sum256([]byte(long))
	if r := allow(t, s, string(sum[:]), l); !r.Allowed {
		t.Fatal("the SHA-256 of a spent long name, used as a name, shares its bucket")
	}
	if r := allow(t, s, long[:maxBucketName], l); !r.Allowed {
		t.Fatal("a long name's prefix shares its bucket")
	}
	if r := allow(t, s, strings.Clone(long), l); r.Allowed {
		t.Fatal("the same long name again got a new bucket")
	}
	if r := allow(t, s, long[:maxBucketName]+string(sum[:]), l); !r.Allowed {
		t.Fatal("a name spelled as a long name is kept shares its bucket")
	}
	for i := range s.shards {
		for id := range s.shards[i].buckets {
			if len(id) > maxBucketName+sha256.Size {
				t.Fatalf("keeps a name of %d bytes", len(id))
			}
		}
	}
}

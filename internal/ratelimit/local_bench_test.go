package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

// The local store is on every request of a key with a limit; these measure
// it with the real clock, as the key server runs it.
//
//	go test ./internal/ratelimit/ -run '^$' -bench Local -benchmem

// A limit the benchmarks never exhaust, so every request does the full work
// of an allowed one (a compare-and-swap).
var benchLimit = Limit{Requests: 1 << 30, Period: time.Second}

func BenchmarkLocalOneKey(b *testing.B) {
	s := NewLocal(clock.RealClock{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = s.Allow(ctx, "team-a/checkout-key", benchLimit)
	}
}

// All cores on one key: the worst case for contention (one TAT).
func BenchmarkLocalOneKeyParallel(b *testing.B) {
	s := NewLocal(clock.RealClock{})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = s.Allow(ctx, "team-a/checkout-key", benchLimit)
		}
	})
}

// Many keys in use, all cores.
func BenchmarkLocalManyKeysParallel(b *testing.B) {
	s := NewLocal(clock.RealClock{})
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("team-%d/key-%d", i%100, i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _ = s.Allow(ctx, names[i%len(names)], benchLimit)
			i += 7
		}
	})
}

// Every request a new bucket, with the store full of buckets that owe time:
// the flood case, including the sweeps that make room.
func BenchmarkLocalNewBucketFlood(b *testing.B) {
	s := NewLocal(clock.RealClock{}, MaxBuckets(1<<14))
	names := make([]string, 1<<16)
	for i := range names {
		names[i] = fmt.Sprintf("flood/%d", i)
	}
	perHour := Limit{Requests: 1, Period: time.Hour}
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		_, _ = s.Allow(ctx, names[i%len(names)], perHour)
		i++
	}
}

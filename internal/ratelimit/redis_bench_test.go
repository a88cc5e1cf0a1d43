package ratelimit

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

// The Redis store's cost per request: one round trip to a redis-server on
// loopback running redis_rate's script (the same machine's cores run both).
//
//	go test ./internal/ratelimit/ -run '^$' -bench Redis -benchmem
func BenchmarkRedisOneKey(b *testing.B) {
	srv := testenv.StartRedis(b)
	s, err := NewRedis(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	errs := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Allow(ctx, "team-a/checkout-key", benchLimit); err != nil {
			errs++ // past the timeout on a starved machine: counted, not fatal
		}
	}
	b.ReportMetric(float64(errs)/float64(b.N), "timeouts/op")
}

func BenchmarkRedisOneKeyParallel(b *testing.B) {
	srv := testenv.StartRedis(b)
	s, err := NewRedis(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	var errs atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // requests in flight, as a busy key server has
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Allow(ctx, "team-a/checkout-key", benchLimit); err != nil {
				errs.Add(1) // past the timeout on a starved machine: counted, not fatal
			}
		}
	})
	b.ReportMetric(float64(errs.Load())/float64(b.N), "timeouts/op")
}

package keyserver

import (
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/ratelimit"
	"github.com/keyward/keyward/internal/testenv"
)

// Two key server replicas on one real Redis (--rate-limit-store=redis://):
// a key's limit holds across both. The fixtures share the record (the same
// key indexed in each, as two replicas' informers would).
func twoReplicas(t *testing.T, mode ratelimit.FailureMode, limit int) (*fixture, *fixture, string, *testenv.RedisServer) {
	t.Helper()
	redis := testenv.StartRedis(t)
	var fixtures [2]*fixture
	for i := range fixtures {
		store, err := ratelimit.NewRedis(redis.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		guard := ratelimit.NewGuard(store, ratelimit.GuardOptions{Mode: mode})
		fixtures[i] = newFixture(t, func(o *Options) { o.RateLimits = guard })
	}
	k, err := keymaterial.Generate("kw")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fixtures {
		rec := &hashsecret.Record{Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "billing", Subject: "billing", Access: "ReadWrite",
			Current:   &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
			RateLimit: &hashsecret.RateLimit{Requests: limit, Period: time.Hour}}
		if err := f.s.index.Upsert(hashsecret.Name(hashsecret.KindAPIKey, "team-a", "billing"), rec); err != nil {
			t.Fatal(err)
		}
	}
	return fixtures[0], fixtures[1], k.String(), redis
}

func TestTwoReplicasShareOneLimitThroughRedis(t *testing.T) {
	a, b, key, _ := twoReplicas(t, ratelimit.FailOpen, 4)
	// Alternating replicas: four requests pass between them, not four each.
	for i := range 4 {
		f := []*fixture{a, b}[i%2]
		if rec := f.authzFrom(outside, key); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d, want 200", i+1, rec.Code)
		}
	}
	for _, f := range []*fixture{a, b} {
		rec := f.authzFrom(outside, key)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get(wire.HeaderCode) != "RATE_LIMITED" {
			t.Fatalf("the fifth request: %d, want 429 RATE_LIMITED on either replica", rec.Code)
		}
	}
}

// Redis stopped mid-test: with --rate-limit-store-failure=open a limited
// key passes uncounted (no live RateLimit counters, only the policy), with
// closed it is refused 429; either way no request waits long for Redis.
func TestRedisStoppedMidTest(t *testing.T) {
	for mode, want := range map[ratelimit.FailureMode]int{ratelimit.FailOpen: http.StatusOK, ratelimit.FailClosed: http.StatusTooManyRequests} {
		t.Run(string(mode), func(t *testing.T) {
			a, _, key, redis := twoReplicas(t, mode, 100)
			if rec := a.authzFrom(outside, key); rec.Code != http.StatusOK || rec.Header().Get("RateLimit") == "" {
				t.Fatalf("with Redis up: %d %v", rec.Code, rec.Header())
			}
			redis.Stop()
			for i := range 3 {
				start := time.Now()
				rec := a.authzFrom(outside, key)
				if took := time.Since(start); took > time.Second {
					t.Errorf("request %d waited %v for a stopped Redis", i+1, took)
				}
				if rec.Code != want {
					t.Fatalf("request %d with Redis stopped: %d, want %d", i+1, rec.Code, want)
				}
				if rec.Header().Get("RateLimit") != "" || rec.Header().Get("RateLimit-Policy") == "" {
					t.Errorf("uncounted: the policy, no live counters: %v", rec.Header())
				}
				if want == http.StatusTooManyRequests && (rec.Header().Get("Retry-After") == "" || rec.Header().Get(wire.HeaderCode) != "RATE_LIMITED") {
					t.Errorf("fail closed: %v", rec.Header())
				}
			}
			if rec := a.authzFrom(outside, a.apiKey("unlimited")); rec.Code != http.StatusOK {
				t.Errorf("a key without a limit never needs the store: %d", rec.Code)
			}
		})
	}
}

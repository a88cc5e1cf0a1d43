package keyindex_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
)

// fleet is n realistic, distinct API key records and their plaintext keys.
func fleet(tb testing.TB, owner string, n int) ([]*hashsecret.Record, []string) {
	tb.Helper()
	recs := make([]*hashsecret.Record, n)
	keys := make([]string, n)
	for i := range n {
		k := generate(tb, "kw")
		recs[i] = apiKeyRecord(fmt.Sprintf("team-%d", i%50), fmt.Sprintf("%s-%d", owner, i), versionOf(k, t0.Add(-time.Hour), nil))
		recs[i].ExpiresAt = at(90 * 24 * time.Hour)
		keys[i] = k.String()
	}
	return recs, keys
}

// loadIndex indexes n records and returns the index's own heap bytes per key:
// the records fed to it are allocated before the first measurement and
// still alive at the second, so they are not counted.
func loadIndex(tb testing.TB, n int) (*keyindex.Index, []string, float64) {
	tb.Helper()
	recs, keys := fleet(tb, "service", n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := keyindex.New()
	for _, r := range recs {
		mustUpsert(tb, x, r)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(recs)
	return x, keys, float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func TestMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 20k keys")
	}
	x, keys, perKey := loadIndex(t, 20_000)
	t.Logf("%.0f heap bytes per indexed key", perKey)
	if perKey > 1024 {
		t.Errorf("the index takes %.0f bytes per key, want < 1 KiB", perKey)
	}
	if x.Len() != len(keys) || x.Versions() != len(keys) {
		t.Errorf("Len, Versions = %d, %d, want %d", x.Len(), x.Versions(), len(keys))
	}
}

// TestConcurrentValidationAndChanges is meant for -race: readers validate
// while writers replace, shrink and delete records. Keys whose records are
// only ever re-upserted must stay valid throughout.
func TestConcurrentValidationAndChanges(t *testing.T) {
	const stableN, churnN, rounds = 20, 20, 1000
	stableRecs, stableKeys := fleet(t, "stable", stableN)
	churnRecs, churnKeys := fleet(t, "churn", churnN)
	x := keyindex.New()
	for _, r := range stableRecs {
		mustUpsert(t, x, r)
	}
	id, secret := accessKey(t)
	pair := pairRecord("team-a", "deployer", id, secret, t0.Add(-time.Hour), nil)

	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range rounds {
				r := churnRecs[(i+w)%churnN]
				name := hashName(r.Kind, r.Namespace, r.Name)
				_ = x.Upsert(name, r)
				_ = x.Upsert(name, apiKeyRecord(r.Namespace, r.Name, *r.Current, *r.Current))
				s := stableRecs[i%stableN]
				_ = x.Upsert(hashName(s.Kind, s.Namespace, s.Name), s)
				_ = x.Upsert(hashName(pair.Kind, pair.Namespace, pair.Name), pair)
				x.Delete(name)
				x.Delete(hashName(pair.Kind, pair.Namespace, pair.Name))
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for i := range rounds {
				if got := x.ValidateAPIKey(stableKeys[i%stableN], t0); got.Code != keyindex.Valid {
					t.Errorf("a stable key gave %s during changes", got.Code)
				}
				if got := x.ValidateAPIKey(churnKeys[i%churnN], t0); got.Code != keyindex.Valid && got.Code != keyindex.NotFound {
					t.Errorf("a changing key gave %s", got.Code)
				}
				if got, _ := x.ValidateAccessKey(id, secret, t0); got.Code != keyindex.Valid && got.Code != keyindex.NotFound {
					t.Errorf("a changing pair gave %s", got.Code)
				}
				_ = x.PairActive("team-a", "deployer", id, t0)
				_, _ = x.Len(), x.Versions()
			}
		})
	}
	wg.Wait()
	if x.Len() != stableN {
		t.Errorf("Len = %d after churn, want %d", x.Len(), stableN)
	}
}

// BenchmarkValidateAPIKey validates valid keys in indexes of growing size;
// B/key is the index's heap per key for that size.
func BenchmarkValidateAPIKey(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			x, keys, perKey := loadIndex(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if x.ValidateAPIKey(keys[i%len(keys)], t0).Code != keyindex.Valid {
					b.Fatal("a loaded key did not validate")
				}
				i++
			}
			// After the loop: b.Loop's first call resets reported metrics.
			b.ReportMetric(perKey, "B/key")
		})
	}
}

// BenchmarkValidateAPIKeyFailures measures the answers to wrong input.
func BenchmarkValidateAPIKeyFailures(b *testing.B) {
	x, keys, _ := loadIndex(b, 10_000)
	k, err := keymaterial.Parse(keys[0])
	if err != nil {
		b.Fatal(err)
	}
	wrongSecret := withChecksum("kw_" + k.ID + "_" + strings.Repeat("A", 32))
	for name, tc := range map[string]struct {
		key  string
		want keyindex.Code
	}{
		"unknown id":       {generate(b, "kw").String(), keyindex.NotFound},
		"wrong secret":     {wrongSecret, keyindex.NotFound},
		"bad checksum":     {keys[0][:len(keys[0])-1] + "!", keyindex.InvalidFormat},
		"unknown imported": {strings.Repeat("aB3$xY7!qZ", 4), keyindex.InvalidFormat},
		"oversized":        {strings.Repeat("x", 1<<20), keyindex.InvalidFormat},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if x.ValidateAPIKey(tc.key, t0).Code != tc.want {
					b.Fatal("unexpected code")
				}
			}
		})
	}
}

func BenchmarkValidateAPIKeyParallel(b *testing.B) {
	x, keys, _ := loadIndex(b, 10_000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if x.ValidateAPIKey(keys[i%len(keys)], t0).Code != keyindex.Valid {
				b.Error("a loaded key did not validate")
				return
			}
			i++
		}
	})
}

func BenchmarkUpsert(b *testing.B) {
	recs, _ := fleet(b, "service", 10_000)
	x := keyindex.New()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := recs[i%len(recs)]
		if err := x.Upsert(hashName(r.Kind, r.Namespace, r.Name), r); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

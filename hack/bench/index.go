package main

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/webhook/keyserver/feed"
)

var indexSizes = []int{1_000, 10_000, 100_000}

// cacheObjects is how many decoded objects the cache estimate builds.
const cacheObjects = 10_000

type indexSize struct {
	N             int
	HeapPerKey    float64 // the index's own heap per key
	P50, P90, P99 time.Duration
}

// indexResult is figure 2.
type indexResult struct {
	Sizes   []indexSize
	Samples int // timed validations per size
	// Heap per object in an informer cache, as decoded from the API
	// server's JSON: the key server's hash Secret cache (with its
	// transform, feed.StripHashSecret, applied), and for
	// information the controllers' caches per APIKey (its hash and delivery
	// Secrets and the APIKey itself, unstripped).
	CacheKeyServer   float64
	CacheControllers float64
	RecordBytes      int // the hash Secret's record.json
	HashSecretJSON   int
	// Served is the same scale seen through the whole key server;
	// ServedRatio the median of its per-round ratios (benchIndexServed).
	Served      []servedSize
	ServedRatio float64
}

func (r *indexResult) ratio() float64 {
	return float64(r.Sizes[len(r.Sizes)-1].P50) / float64(r.Sizes[0].P50)
}

func (r *indexResult) servedRatio() float64 { return r.ServedRatio }

// perKey is the target figure: index at the largest size plus the key
// server's cache.
func (r *indexResult) perKey() float64 { return r.Sizes[len(r.Sizes)-1].HeapPerKey + r.CacheKeyServer }

// fleet is n distinct API key records shaped as the controller writes them,
// and their plaintexts.
func fleet(n int, now time.Time) ([]*hashsecret.Record, []string, error) {
	recs := make([]*hashsecret.Record, n)
	keys := make([]string, n)
	for i := range n {
		k, err := keymaterial.Generate("kw")
		if err != nil {
			return nil, nil, err
		}
		name := fmt.Sprintf("service-%06d", i)
		recs[i] = &hashsecret.Record{
			Kind: hashsecret.KindAPIKey, Namespace: fmt.Sprintf("team-%02d", i%50), Name: name, Subject: name,
			Groups: []string{"reporting"}, Scopes: []string{"invoices:read"}, Access: "ReadOnly",
			Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), Hint: keymaterial.Hint(k), NotBefore: now.Add(-time.Hour)},
		}
		keys[i] = k.String()
	}
	return recs, keys, nil
}

// loadIndexes builds reps indexes of n records each; the heap figure
// excludes the records fed to them (allocated before the first reading,
// alive at the second), as internal/keyindex's TestMemoryPerKey does.
// Several small indexes are built so that a small size's figure is not lost
// in the heap's noise.
func loadIndexes(n, reps int, now time.Time) ([]*keyindex.Index, [][]string, float64, error) {
	recs := make([][]*hashsecret.Record, reps)
	keys := make([][]string, reps)
	for i := range reps {
		var err error
		if recs[i], keys[i], err = fleet(n, now); err != nil {
			return nil, nil, 0, err
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	xs := make([]*keyindex.Index, reps)
	for i := range reps {
		xs[i] = keyindex.New()
		for _, r := range recs[i] {
			if err := xs[i].Upsert(hashsecret.Name(r.Kind, r.Namespace, r.Name), r); err != nil {
				return nil, nil, 0, err
			}
		}
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(recs)
	return xs, keys, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n*reps), nil
}

func kubeCodecs() serializer.CodecFactory { return serializer.NewCodecFactory(kube.Scheme()) }

// cacheCost decodes n copies of each raw object (each renamed, as distinct
// objects are), applies transform, and keeps them as a client-go indexer
// does (a map by namespace/name plus the namespace index), one store per
// kind. It returns the heap per set of objects.
func cacheCost(n int, raws [][]byte, transform func(kruntime.Object)) (float64, error) {
	dec := kubeCodecs().UniversalDeserializer()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	stores := make([]map[string]any, len(raws))
	indices := make([]map[string]map[string]struct{}, len(raws))
	for k := range raws {
		stores[k] = map[string]any{}
		indices[k] = map[string]map[string]struct{}{}
	}
	for i := range n {
		for k, raw := range raws {
			o, _, err := dec.Decode(raw, nil, nil)
			if err != nil {
				return 0, err
			}
			mo, ok := o.(metav1.Object)
			if !ok {
				return 0, fmt.Errorf("%T has no metadata", o)
			}
			mo.SetName(mo.GetName() + "-" + strconv.Itoa(i))
			if transform != nil {
				transform(o)
			}
			key := mo.GetNamespace() + "/" + mo.GetName()
			stores[k][key] = o
			set := indices[k][mo.GetNamespace()]
			if set == nil {
				set = map[string]struct{}{}
				indices[k][mo.GetNamespace()] = set
			}
			set[key] = struct{}{}
		}
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(stores)
	runtime.KeepAlive(indices)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), nil
}

// stripLikeKeyServer applies the key server's cache transform.
func stripLikeKeyServer(o kruntime.Object) { _, _ = feed.StripHashSecret(o) }

// stripMinimal is a what-if: the key server's transform, also dropping
// the metadata validation never reads.
func benchIndex(lg *loadGen, shapes *objectShapes, samples int) (*indexResult, error) {
	progress("figure 2: index scale (%v keys) and heap per key", indexSizes)
	res := &indexResult{Samples: samples, HashSecretJSON: len(shapes.hashSecret)}
	if o, _, err := kubeCodecs().UniversalDeserializer().Decode(shapes.hashSecret, nil, nil); err == nil {
		if sec, ok := o.(*corev1.Secret); ok {
			res.RecordBytes = len(sec.Data[hashsecret.DataRecord])
		}
	}
	now := time.Now()
	idx := make([]*keyindex.Index, len(indexSizes))
	keys := make([][]string, len(indexSizes))
	for i, n := range indexSizes {
		reps := max(1, indexSizes[len(indexSizes)-1]/n/5)
		xs, ks, perKey, err := loadIndexes(n, reps, now)
		if err != nil {
			return nil, err
		}
		idx[i], keys[i] = xs[0], ks[0]
		res.Sizes = append(res.Sizes, indexSize{N: n, HeapPerKey: perKey})
		progress("  %d keys indexed (%d indexes of that size): %.0f heap bytes per key", n, reps, perKey)
	}
	// Validation latency: random valid keys, each call timed, sizes
	// interleaved in rounds so drift hits them alike.
	const rounds = 30
	lat := make([][]time.Duration, len(indexSizes))
	for i := range lat {
		lat[i] = make([]time.Duration, 0, samples)
	}
	per := samples / rounds
	for r := range rounds {
		for j := range indexSizes {
			i := (j + r) % len(indexSizes)
			x, ks := idx[i], keys[i]
			for range per {
				// A fresh copy: a presented key arrives in a new request
				// buffer, not in the bench's large slice of keys.
				k := strings.Clone(ks[rand.IntN(len(ks))])
				t := time.Now()
				v := x.ValidateAPIKey(k, now)
				d := time.Since(t)
				if v.Code != keyindex.Valid {
					return nil, fmt.Errorf("an indexed key gave %s", v.Code)
				}
				lat[i] = append(lat[i], d)
			}
		}
	}
	for i := range res.Sizes {
		slices.Sort(lat[i])
		s := &res.Sizes[i]
		s.P50, s.P90, s.P99 = quantile(lat[i], 0.5), quantile(lat[i], 0.9), quantile(lat[i], 0.99)
		progress("  %d keys: validation p50 %s p90 %s p99 %s", s.N, fmtDurNs(s.P50), fmtDurNs(s.P90), fmtDurNs(s.P99))
	}
	idx, keys, lat = nil, nil, nil
	runtime.GC()
	served, ratio, err := benchIndexServed(lg, now)
	if err != nil {
		return nil, err
	}
	res.Served, res.ServedRatio = served, ratio
	runtime.GC()

	if res.CacheKeyServer, err = cacheCost(cacheObjects, [][]byte{shapes.hashSecret}, stripLikeKeyServer); err != nil {
		return nil, err
	}
	if res.CacheControllers, err = cacheCost(cacheObjects, [][]byte{shapes.hashSecret, shapes.deliverySecret, shapes.apiKey}, nil); err != nil {
		return nil, err
	}
	progress("  informer caches: %.0f B per hash Secret (key server); %.0f B per APIKey (controllers)",
		res.CacheKeyServer, res.CacheControllers)
	return res, nil
}

func fmtDurNs(d time.Duration) string {
	if d < 10*time.Microsecond {
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	}
	return fmtDur(d)
}

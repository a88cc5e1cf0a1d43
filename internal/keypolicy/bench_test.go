package keypolicy

import (
	"fmt"
	"runtime"
	"testing"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// benchPolicies are n policies of n namespaces, each with one exact host
// and one rule, as issue 14's benchmark asks.
func benchPolicies(n int) []kw.KeyPolicy {
	out := make([]kw.KeyPolicy, n)
	for i := range out {
		out[i] = *kp(fmt.Sprintf("team-%d/api", i), created(i), hosts(fmt.Sprintf("api-%d.example.com", i)),
			rules(kw.KeyPolicyRule{PathPrefix: "/v1", Methods: methods("GET"), RequiredScopes: []string{"read"}}))
	}
	return out
}

// BenchmarkSelect: choosing among n policies costs the same for every n
// (exact hosts are a map lookup). It reports the heap a compiled policy
// costs in the table.
func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			objs := benchPolicies(n)
			table, perPolicy := measure(objs)
			host := fmt.Sprintf("api-%d.example.com", n/2)
			b.ReportAllocs()
			for b.Loop() {
				if table.Select(host, "/v1/items/7?x=1").Policy == nil {
					b.Fatal("no policy")
				}
			}
			b.ReportMetric(perPolicy, "heapB/policy")
		})
	}
}

// BenchmarkSelectAndDecide is the key server's work per request once the
// key is validated: select among 1,000 policies, then decide.
func BenchmarkSelectAndDecide(b *testing.B) {
	table := Build(benchPolicies(1000))
	id := Identity{Namespace: "team-500", Subject: "svc", Scopes: []string{"read"}}
	b.ReportAllocs()
	for b.Loop() {
		d := Decide(Input{Method: "GET", Target: table.Select("api-500.example.com", "/v1/items/7"), Identity: id})
		if !d.Allowed() {
			b.Fatal(d.Reason)
		}
	}
}

// measure builds the table from objs and returns it with the heap it holds
// per policy (compiled policies and index; not the objects themselves).
func measure(objs []kw.KeyPolicy) (*Table, float64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	table := Build(objs)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(objs)
	return table, float64(after.HeapAlloc-before.HeapAlloc) / float64(len(objs))
}

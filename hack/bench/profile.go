package main

import (
	"os"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// profileSummary is where the CPU went while an endpoint was loaded at half
// its max rate: the whole process, load generator included.
type profileSummary struct {
	TotalSeconds float64
	Top          []share // functions by self time
	Buckets      []share // self time by what the code is
	Inclusive    []share // time under chosen functions (callees included)
}

type share struct {
	Name  string
	Share float64 // of all samples
}

// buckets classify a sample by its leaf function, first match wins.
var buckets = []struct{ name, prefixes string }{
	{"P-256 / ECDSA arithmetic", "crypto/internal/fips140/nistec crypto/internal/fips140/ecdsa crypto/ecdsa crypto/internal/fips140/bigmod crypto/elliptic"},
	{"SHA-256", "crypto/internal/fips140/sha256 crypto/sha256"},
	{"other crypto", "crypto/ vendor/golang.org/x/crypto"},
	{"JSON", "encoding/json sigs.k8s.io/json"},
	{"go-jose", "github.com/go-jose"},
	{"Keyward", "github.com/keyward"},
	{"Prometheus metrics", "github.com/prometheus"},
	{"net/http", "net/http net/textproto net/url mime"},
	{"syscalls and network", "syscall. internal/poll net. internal/runtime/syscall runtime/internal/syscall"},
	{"garbage collection", "runtime.gc runtime.scanobject runtime.greyobject runtime.markBits runtime.findObject runtime.(*gcWork) runtime.(*mspan) runtime.sweepone runtime.(*sweepLocked) runtime.wbBuf runtime.bulkBarrier runtime.(*gcBits) runtime.scanblock runtime.scanstack runtime.typePointers runtime.(*mheap)"},
	{"memory allocation", "runtime.mallocgc runtime.(*mcache) runtime.(*mcentral) runtime.memclr runtime.nextFreeFast runtime.newobject runtime.makeslice runtime.growslice runtime.memmove runtime.heapSetType"},
	{"scheduler and other runtime", "runtime. internal/runtime"},
}

// inclusive are the functions whose time, callees included, the report shows.
var inclusive = []struct{ name, fn string }{
	// The wrapper's closure is named after limited, or after New when
	// the compiler inlines limited there.
	{"key server handlers (after routing)", "keyward/webhook/keyserver.(*Server).limited keyward/webhook/keyserver.New.(*Server).limited"},
	{"  token signing (tokens.Issuer.Issue)", "keyward/internal/tokens.Issuer.Issue"},
	{"  token validation (tokens.Validator.Validate)", "keyward/internal/tokens.Validator.Validate"},
	{"  index lookup (keyindex ValidateAPIKey/AccessKey)", "keyward/internal/keyindex.(*Index).Validate"},
	{"  Prometheus metrics", "github.com/prometheus/client_golang"},
	{"ECDSA sign (ecdsa.SignASN1)", "crypto/ecdsa.SignASN1"},
	{"ECDSA verify (ecdsa.VerifyASN1)", "crypto/ecdsa.VerifyASN1"},
	{"net/http server connections", "net/http.(*conn).serve"},
	{"HTTP client (the load, same for all)", "net/http.(*Client).do net/http.(*persistConn).readLoop net/http.(*persistConn).writeLoop main.(*loadGen).probe"},
	{"garbage collector workers", "runtime.gcBgMarkWorker"},
}

func summarizeProfile(path string) (*profileSummary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, err
	}
	vi := len(p.SampleType) - 1 // cpu nanoseconds
	var total int64
	self := map[string]int64{}
	bucket := map[string]int64{}
	incl := map[string]int64{}
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		leaf := "?"
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 {
			leaf = s.Location[0].Line[0].Function.Name
		}
		self[leaf] += v
		bucket[classify(leaf)] += v
		seen := map[string]bool{}
		for _, loc := range s.Location {
			for _, ln := range loc.Line {
				for _, in := range inclusive {
					if seen[in.name] {
						continue
					}
					for _, fn := range strings.Fields(in.fn) {
						if strings.Contains(ln.Function.Name, fn) {
							seen[in.name] = true
							incl[in.name] += v
							break
						}
					}
				}
			}
		}
	}
	if total == 0 {
		return &profileSummary{}, nil
	}
	sum := &profileSummary{TotalSeconds: float64(total) / 1e9}
	of := func(m map[string]int64) []share {
		var out []share
		for k, v := range m {
			out = append(out, share{k, float64(v) / float64(total)})
		}
		slices.SortFunc(out, func(a, b share) int {
			if a.Share != b.Share {
				if a.Share > b.Share {
					return -1
				}
				return 1
			}
			return strings.Compare(a.Name, b.Name)
		})
		return out
	}
	sum.Top = of(self)
	if len(sum.Top) > 8 {
		sum.Top = sum.Top[:8]
	}
	sum.Buckets = of(bucket)
	for _, in := range inclusive {
		if v, ok := incl[in.name]; ok {
			sum.Inclusive = append(sum.Inclusive, share{in.name, float64(v) / float64(total)})
		}
	}
	return sum, nil
}

func classify(fn string) string {
	for _, b := range buckets {
		for _, p := range strings.Fields(b.prefixes) {
			if strings.HasPrefix(fn, p) {
				return b.name
			}
		}
	}
	return "other"
}

func (p *profileSummary) inclusive(name string) float64 {
	for _, s := range p.Inclusive {
		if strings.TrimSpace(s.Name) == strings.TrimSpace(name) || strings.HasPrefix(strings.TrimSpace(s.Name), name) {
			return s.Share
		}
	}
	return 0
}

package keyserver

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// The hot path: GET /v1/authz answered 200, measured without httptest's
// request parsing and recorder (BenchmarkAuthz pays for both on every
// request), so that what is left is the key server's own work next to a
// bare handler's. The request is built once and the response writer keeps
// nothing, as net/http's own per-request cost is the same for both.

// discardWriter is a ResponseWriter that keeps the status and a header map
// as net/http's response does (a fresh map per request).
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// hotRequests are the request shapes measured: the bench's figure 1a (the
// key alone) and what the nginx block sends (original URI and method, a
// client address).
func hotRequests(cred string) map[string]*http.Request {
	plain := httptest.NewRequest(http.MethodGet, "/v1/authz", nil)
	plain.RemoteAddr = "203.0.113.7:4242"
	plain.Header.Set("Authorization", "Bearer "+cred)
	nginx := httptest.NewRequest(http.MethodGet, "/v1/authz", nil)
	nginx.RemoteAddr = "203.0.113.7:4242"
	nginx.Host = "api.example.com"
	for k, v := range map[string]string{
		"Authorization": "Bearer " + cred, "X-Original-Uri": "/v1/invoices/42?page=2",
		"X-Original-Method": "GET", "X-Forwarded-For": "198.51.100.9", "User-Agent": "curl/8.5.0",
	} {
		nginx.Header.Set(k, v)
	}
	return map[string]*http.Request{"plain": plain, "nginx": nginx}
}

// serveOnce answers r with h into a fresh writer; it returns the status.
func serveOnce(h http.Handler, r *http.Request, w *discardWriter) int {
	r.Body = http.NoBody // the wrapper replaces it with a bounded reader
	w.h, w.code = make(http.Header), 0
	h.ServeHTTP(w, r)
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

var bareHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHotPath: the bare handler, then /v1/authz with an API key and a
// Keyward JWT, for both request shapes. Compare with benchstat across
// -count runs; -cpu 1,2 shows contention (RunParallel). Besides ns/op (wall
// time, which other jobs on a shared machine stretch), it reports the
// process's CPU time per request, cpu-ns/op, which they stretch less.
func BenchmarkHotPath(b *testing.B) {
	f := newCredFixture(b)
	// A key with a local rate limit never reached: the cost of counting.
	// The fixture's clock stands still, so the budget never refills: the
	// burst is what is never reached.
	k, err := keymaterial.Generate("kw")
	if err != nil {
		b.Fatal(err)
	}
	indexPut(b, f.s, &hashsecret.Record{
		Kind: hashsecret.KindAPIKey, Namespace: "team-a", Name: "limited", Subject: "limited-subject",
		Groups: []string{"reporting"}, Scopes: []string{"invoices:read"}, Access: string(kw.AccessReadWrite),
		RateLimit: &hashsecret.RateLimit{Requests: 1_000_000, Period: time.Second, Burst: 1 << 40},
		Current:   &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)},
	})
	for _, c := range []struct{ name, cred string }{{"apikey", f.apiKey}, {"jwt", f.token}, {"limited", k.String()}} {
		for shape, r := range hotRequests(c.cred) {
			for _, h := range []struct {
				name string
				h    http.Handler
			}{{"bare", bareHandler}, {"authz", f.s.Handler()}} {
				if h.name == "bare" && c.name != "apikey" {
					continue // the bare handler does not read the credential
				}
				b.Run(h.name+"/"+c.name+"/"+shape, func(b *testing.B) {
					if code := serveOnce(h.h, r, &discardWriter{}); code != http.StatusOK {
						b.Fatalf("status %d", code)
					}
					b.ReportAllocs()
					cpu0 := processCPU()
					defer func() {
						b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
					}()
					b.RunParallel(func(pb *testing.PB) {
						r := r.Clone(r.Context()) // one request per goroutine
						w := &discardWriter{}
						for pb.Next() {
							if serveOnce(h.h, r, w) != http.StatusOK {
								b.Error("not 200")
								return
							}
						}
					})
				})
			}
		}
	}
}

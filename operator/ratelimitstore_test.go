package operator

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	"github.com/keyward/keyward/internal/ratelimit"
)

func TestRateLimitStoreFlags(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("keyward", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if o.RateLimitStore != "" || o.RateLimitStoreFailure.String() != "open" {
		t.Fatalf("defaults: store %q, failure %q; want each replica on its own, open", o.RateLimitStore, o.RateLimitStoreFailure)
	}
	if err := fs.Parse([]string{"--rate-limit-store=rediss://redis.keyward-system.svc:6379/0", "--rate-limit-store-failure=closed"}); err != nil {
		t.Fatal(err)
	}
	if o.RateLimitStore != "rediss://redis.keyward-system.svc:6379/0" || o.RateLimitStoreFailure != ratelimit.FailClosed {
		t.Fatalf("parsed: %q %q", o.RateLimitStore, o.RateLimitStoreFailure)
	}
	if err := fs.Parse([]string{"--rate-limit-store-failure=sometimes"}); err == nil {
		t.Fatal("an unknown failure mode was accepted")
	}
}

func TestRateLimitStoreFromFlags(t *testing.T) {
	rec := events.NewFakeRecorder(4)
	for _, local := range []string{"", "local"} {
		store, closer, err := rateLimitStore(Options{RateLimitStore: local}, rec, nil, logr.Discard())
		if err != nil || store != nil || closer != nil {
			t.Fatalf("--rate-limit-store=%q: %v %v %v, want none (the key server's local store)", local, store, closer, err)
		}
	}
	for _, bad := range []string{"http://redis:6379", "redis://", "redis://redis:notaport"} {
		if _, _, err := rateLimitStore(Options{RateLimitStore: bad}, rec, nil, logr.Discard()); err == nil {
			t.Errorf("--rate-limit-store=%s was accepted", bad)
		}
	}
	store, closer, err := rateLimitStore(Options{RateLimitStore: "redis://:s3cret@127.0.0.1:1/0"}, rec, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = closer.Close() }()
	if _, ok := store.(*ratelimit.Guard); !ok {
		t.Fatalf("a Redis store must be guarded (--rate-limit-store-failure): %T", store)
	}
}

// The store's transitions become one event each on the key server's Pod,
// never one per request, and without a Pod a log line only.
func TestRateLimitStoreTransitionsAreEventsOnThePod(t *testing.T) {
	pod := podOf(func(name string) string {
		return map[string]string{"POD_NAME": "key-server-7d9f", "POD_NAMESPACE": "keyward-system", "POD_UID": "0b6c"}[name]
	})
	if pod == nil || pod.Name != "key-server-7d9f" || pod.Namespace != "keyward-system" || pod.UID != "0b6c" {
		t.Fatalf("podOf: %+v", pod)
	}
	rec := events.NewFakeRecorder(8)
	notify := storeTransitions(rec, pod, "redis://redis:6379/0", ratelimit.FailClosed, logr.Discard())
	notify(false, errors.New("dial tcp 10.0.0.9:6379: connect: connection refused"))
	notify(true, nil)
	got := drain(rec)
	if len(got) != 2 {
		t.Fatalf("events: %q", got)
	}
	if !strings.HasPrefix(got[0], "Warning RateLimitStoreUnavailable") || !strings.Contains(got[0], "closed") || !strings.Contains(got[0], "connection refused") {
		t.Errorf("unavailable: %q", got[0])
	}
	if !strings.HasPrefix(got[1], "Normal RateLimitStoreAvailable") {
		t.Errorf("available: %q", got[1])
	}

	if podOf(func(string) string { return "" }) != nil {
		t.Error("a Pod without POD_NAME")
	}
	rec = events.NewFakeRecorder(8)
	storeTransitions(rec, nil, "redis://redis:6379/0", ratelimit.FailOpen, logr.Discard())(false, errors.New("down"))
	if got := drain(rec); len(got) != 0 {
		t.Errorf("events without a Pod: %q", got)
	}
}

// A Redis that is not there: the first limited request finds out, and the
// Pod gets one Warning, without the password.
func TestAnUnreachableRedisIsReportedOnce(t *testing.T) {
	rec := events.NewFakeRecorder(8)
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace = "key-server-1", "keyward-system"
	store, closer, err := rateLimitStore(Options{RateLimitStore: "redis://:s3cret@127.0.0.1:1/0"}, rec, pod, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = closer.Close() }()
	for range 5 {
		r, err := store.Allow(context.Background(), "apikey/team-a/x", ratelimit.Limit{Requests: 1, Period: time.Second})
		if err != nil || !r.Allowed || !r.Unchecked {
			t.Fatalf("fail open: %+v %v", r, err)
		}
	}
	got := drain(rec)
	if len(got) != 1 || !strings.HasPrefix(got[0], "Warning RateLimitStoreUnavailable") || strings.Contains(got[0], "s3cret") {
		t.Fatalf("events: %q", got)
	}
}

func drain(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

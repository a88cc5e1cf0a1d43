package keymetrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestObserveAndForget(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	Observe("apikey", "team-a", "billing", true, &exp, nil)
	if got := testutil.ToFloat64(expiration.WithLabelValues("apikey", "team-a", "billing")); got != 1_900_000_000 {
		t.Fatalf("expiration = %v", got)
	}
	if got := testutil.ToFloat64(ready.WithLabelValues("apikey", "team-a", "billing")); got != 1 {
		t.Fatalf("ready = %v", got)
	}
	if n := testutil.CollectAndCount(nextRotation); n != 0 {
		t.Fatalf("a key without rotation has %d next-rotation series", n)
	}
	Observe("apikey", "team-a", "billing", false, nil, nil)
	if n := testutil.CollectAndCount(expiration); n != 0 {
		t.Fatal("a key that no longer expires kept its expiration series")
	}
	Forget("apikey", "team-a", "billing")
	if n := testutil.CollectAndCount(ready); n != 0 {
		t.Fatal("a deleted key kept its series")
	}
}

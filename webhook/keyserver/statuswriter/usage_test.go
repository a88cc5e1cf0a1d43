package statuswriter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/usage"
)

// deltas is due's writes of counts, by key.
func deltas(u *LastUsed, now time.Time) map[usageKey]usage.Delta {
	out := map[usageKey]usage.Delta{}
	for _, w := range u.due(now) {
		out[w.key] = w.delta
	}
	return out
}

func TestUsageIsCountedExactlyUnderConcurrencyAndWrittenAtMostOnceAMinute(t *testing.T) {
	u := NewLastUsed()
	k := usageKey{hashsecret.KindAPIKey, "ns", "a"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				u.Count(k.kind, k.namespace, k.name, (i+g)%4 != 0)
			}
		})
	}
	wg.Wait()
	d := deltas(u, t0)[k]
	if d.Accepted != 6000 || d.Refused != 2000 || len(d.Hours) != 1 || d.Hours[0].Accepted != 6000 {
		t.Fatalf("first batch: %+v, want 6000 accepted and 2000 refused in one hour", d)
	}
	u.Count(k.kind, k.namespace, k.name, true)
	if got := deltas(u, t0.Add(59*time.Second)); len(got) != 0 {
		t.Fatalf("within the minute: %v", got)
	}
	// Counted within the minute, written after it, and not lost meanwhile.
	u.Count(k.kind, k.namespace, k.name, false)
	if got := deltas(u, t0.Add(time.Minute))[k]; got.Accepted != 1 || got.Refused != 1 {
		t.Fatalf("after the minute: %+v", got)
	}
	if got := deltas(u, t0.Add(5*time.Minute)); len(got) != 0 {
		t.Fatalf("nothing counted, yet written: %v", got)
	}
}

func TestAFailedWriteKeepsItsCountsForTheNextBatch(t *testing.T) {
	u := NewLastUsed()
	k := usageKey{hashsecret.KindAccessKeyPair, "ns", "p"}
	u.Touch(k.kind, k.namespace, k.name, t0)
	u.Count(k.kind, k.namespace, k.name, true)
	ws := u.due(t0)
	if len(ws) != 1 {
		t.Fatalf("%d writes due", len(ws))
	}
	u.retry(ws[0], t0) // the API server said no
	u.Count(k.kind, k.namespace, k.name, true)
	ws = u.due(t0.Add(time.Minute))
	if len(ws) != 1 || ws[0].delta.Accepted != 2 || !ws[0].used.Equal(t0) {
		t.Fatalf("next batch: %+v, want 2 accepted and the use again", ws)
	}
}

func TestADeletedKeysCountsAreDropped(t *testing.T) {
	u := NewLastUsed()
	k := usageKey{hashsecret.KindAPIKey, "ns", "gone"}
	u.Count(k.kind, k.namespace, k.name, true)
	ws := u.due(t0)
	u.forget(ws[0].key) // the write found it deleted
	u.retry(ws[0], t0)  // and a late retry brings nothing back
	if got := u.due(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("a deleted key is still written: %+v", got)
	}
	n := 0
	u.entries.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d entries kept", n)
	}
}

// The request path: no allocation once a key has its entry.
func TestTouchCountAndUseDoNotAllocate(t *testing.T) {
	u := NewLastUsed()
	u.Touch(hashsecret.KindAPIKey, "ns", "a", t0)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		u.Touch(hashsecret.KindAPIKey, "ns", "a", now)
		u.Count(hashsecret.KindAPIKey, "ns", "a", true)
		u.Use(hashsecret.KindAPIKey, "ns", "a", now, false)
	}); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

// Use is Touch and Count: the use is kept and the outcome counted.
func TestUseTouchesAndCounts(t *testing.T) {
	u := NewLastUsed()
	u.Use(hashsecret.KindAPIKey, "ns", "a", t0, true)
	u.Use(hashsecret.KindAPIKey, "ns", "a", t0.Add(2*time.Second), false)
	u.Use(hashsecret.KindAPIKey, "ns", "", t0, true) // no key named: nothing
	if a, r := u.Counted(hashsecret.KindAPIKey, "ns", "a"); a != 1 || r != 1 {
		t.Fatalf("counted %d accepted, %d refused; want 1, 1", a, r)
	}
	ws := u.due(t0.Add(time.Minute))
	if len(ws) != 1 || !ws[0].used.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("due %+v, want one write with the last use", ws)
	}
}

// TestFlushKeepsCountsAcrossAnAPIServerErrorAndDropsThemForADeletedKey: a
// write the API server refuses is written in full by the next batch; a key
// found deleted takes its counts with it.
func TestFlushKeepsCountsAcrossAnAPIServerErrorAndDropsThemForADeletedKey(t *testing.T) {
	key := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	fail := true
	c := fake.NewClientBuilder().WithScheme(kube.Scheme()).WithObjects(key).WithStatusSubresource(key).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if fail {
				return apierrors.NewInternalError(errors.New("etcd is away"))
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		}}).Build()
	clk := clocktesting.NewFakePassiveClock(t0)
	u := NewLastUsed()
	w := &UsageWriter{LastUsed: u, Client: c, Clock: clk}
	u.Count(hashsecret.KindAPIKey, "ns", "a", true)
	u.Count(hashsecret.KindAPIKey, "ns", "a", false)
	u.Count(hashsecret.KindAPIKey, "ns", "gone", true)
	w.Flush(context.Background())
	if n := u.pendingCounts(); n != 2 {
		t.Fatalf("after a failed write and a deleted key: %d counts pending, want the failed write's 2", n)
	}
	fail = false
	u.Count(hashsecret.KindAPIKey, "ns", "a", true)
	clk.SetTime(t0.Add(time.Minute))
	w.Flush(context.Background())
	got := &kw.APIKey{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(key), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Usage == nil || got.Status.Usage.Accepted != 2 || got.Status.Usage.Refused != 1 {
		t.Fatalf("usage %+v, want 2 accepted and 1 refused", got.Status.Usage)
	}
}

// The request path's cost: Touch and Count (two lookups) against Use (one).
func BenchmarkTouchAndCount(b *testing.B) {
	u := NewLastUsed()
	now := t0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		u.Touch(hashsecret.KindAPIKey, "team-00", "key-000123", now)
		u.Count(hashsecret.KindAPIKey, "team-00", "key-000123", true)
	}
}

func BenchmarkUse(b *testing.B) {
	u := NewLastUsed()
	now := t0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		u.Use(hashsecret.KindAPIKey, "team-00", "key-000123", now, true)
	}
}

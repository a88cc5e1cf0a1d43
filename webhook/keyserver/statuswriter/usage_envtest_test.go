package statuswriter

import (
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/internal/usage"
)

// pending is what u counted and has not written (harvested or not).
func (u *LastUsed) pendingCounts() (n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.entries.Range(func(_, v any) bool {
		e := v.(*usageEntry)
		n += e.accepted.Load() + e.refused.Load() + e.pending.Accepted + e.pending.Refused
		return true
	})
	return n
}

// TestTwoReplicasWritingAtOnceLoseNoCounts: two key server replicas count
// requests of the same keys and write back at the same moments, round
// after round, across an hour boundary; the totals and the hours in status
// are exactly the sum of what both counted. A merge patch without the
// resourceVersion precondition loses one replica's counts here.
func TestTwoReplicasWritingAtOnceLoseNoCounts(t *testing.T) {
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	k8s, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	keys := []usageKey{
		{hashsecret.KindAPIKey, "default", "billing"},
		{hashsecret.KindAPIKey, "default", "reports"},
		{hashsecret.KindAccessKeyPair, "default", "ci"},
	}
	for _, k := range keys {
		var obj client.Object
		if k.kind == hashsecret.KindAPIKey {
			obj = &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: k.namespace, Name: k.name}, Spec: kw.APIKeySpec{SecretName: k.name}}
		} else {
			obj = &kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Namespace: k.namespace, Name: k.name}, Spec: kw.AccessKeyPairSpec{SecretName: k.name}}
		}
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Date(2026, 11, 22, 12, 50, 0, 0, time.UTC)
	type replica struct {
		u   *LastUsed
		clk *clocktesting.FakePassiveClock
		w   *UsageWriter
	}
	var reps []replica
	for range 2 {
		c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		u, clk := NewLastUsed(), clocktesting.NewFakePassiveClock(start)
		reps = append(reps, replica{u, clk, &UsageWriter{LastUsed: u, Client: c, Clock: clk}})
	}
	const rounds = 20 // one a minute: 12:50 to 13:09
	var wantA, wantR int64
	for round := range rounds {
		for ri, r := range reps {
			for ki, k := range keys {
				// Each replica's last use; the later one, replica 0's, stays.
				r.u.Touch(k.kind, k.namespace, k.name, start.Add(time.Duration(round)*time.Minute-time.Duration(ri)*30*time.Second))
				for i := range 3 + ri + ki + round%3 {
					accepted := i%3 != 0
					r.u.Count(k.kind, k.namespace, k.name, accepted)
					if accepted {
						wantA++
					} else {
						wantR++
					}
				}
			}
			r.clk.SetTime(start.Add(time.Duration(round) * time.Minute))
		}
		var wg sync.WaitGroup
		for _, r := range reps {
			wg.Go(func() { r.w.Flush(ctx) })
		}
		wg.Wait()
	}
	// What a conflict left over goes in the next batches.
	for i := 0; reps[0].u.pendingCounts()+reps[1].u.pendingCounts() != 0; i++ {
		if i == 20 {
			t.Fatalf("counts still pending after 20 more batches: %d and %d", reps[0].u.pendingCounts(), reps[1].u.pendingCounts())
		}
		for _, r := range reps {
			r.clk.SetTime(r.clk.Now().Add(time.Minute))
			r.w.Flush(ctx)
		}
	}

	var gotA, gotR, hourA, hourR int64
	for _, k := range keys {
		var obj client.Object = &kw.APIKey{}
		if k.kind == hashsecret.KindAccessKeyPair {
			obj = &kw.AccessKeyPair{}
		}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, obj); err != nil {
			t.Fatal(err)
		}
		var u *kw.KeyUsage
		var last *metav1.Time
		switch o := obj.(type) {
		case *kw.APIKey:
			u, last = o.Status.Usage, o.Status.LastUsedAt
		case *kw.AccessKeyPair:
			u, last = o.Status.Usage, o.Status.LastUsedAt
		}
		if u == nil {
			t.Fatalf("%s: no usage written", k.name)
		}
		if want := start.Add((rounds - 1) * time.Minute); last == nil || !last.Time.Equal(want) {
			t.Fatalf("%s: lastUsedAt %v, want the later replica's %v", k.name, last, want)
		}
		gotA, gotR = gotA+u.Accepted, gotR+u.Refused
		if len(u.Hours) != 2 {
			t.Fatalf("%s: hours %+v, want 12:00 and 13:00", k.name, u.Hours)
		}
		for _, h := range u.Hours {
			hourA, hourR = hourA+h.Accepted, hourR+h.Refused
		}
		if l := usage.Last24h(u, start.Add(time.Hour)); l.Accepted != u.Accepted || l.Refused != u.Refused {
			t.Fatalf("%s: last 24 h %+v, totals %d/%d", k.name, l, u.Accepted, u.Refused)
		}
	}
	if gotA != wantA || gotR != wantR || hourA != wantA || hourR != wantR {
		t.Fatalf("written: %d accepted, %d refused (hours %d, %d); counted %d, %d", gotA, gotR, hourA, hourR, wantA, wantR)
	}
}

package statuswriter

import (
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestLastUseIsWrittenAtMostOnceAMinutePerKey(t *testing.T) {
	u := NewLastUsed()
	u.Touch(hashsecret.KindAPIKey, "ns", "a", t0)
	if got := uses(u, t0); len(got) != 1 {
		t.Fatalf("first use: %d due, want 1", len(got))
	}
	u.Touch(hashsecret.KindAPIKey, "ns", "a", t0.Add(time.Second))
	if got := uses(u, t0.Add(59*time.Second)); len(got) != 0 {
		t.Fatalf("within the minute: %d due, want 0", len(got))
	}
	if got := uses(u, t0.Add(time.Minute)); len(got) != 1 || !got[usageKey{hashsecret.KindAPIKey, "ns", "a"}].Equal(t0.Add(time.Second)) {
		t.Fatalf("after the minute: %v", got)
	}
	if got := uses(u, t0.Add(3*time.Minute)); len(got) != 0 {
		t.Fatal("an unused key was written again")
	}
}

// TestLastUseKeepsTheSecondThatIsWritten: uses within one second are one
// use (lastUsedAt has second precision), and a use in a later second is
// always kept, whatever order concurrent Touches land in.
func TestLastUseKeepsTheSecondThatIsWritten(t *testing.T) {
	u := NewLastUsed()
	k := usageKey{hashsecret.KindAPIKey, "ns", "a"}
	u.Touch(k.kind, k.namespace, k.name, t0.Add(100*time.Millisecond))
	if got := uses(u, t0.Add(time.Second)); !got[k].Equal(t0.Add(100 * time.Millisecond)) {
		t.Fatalf("first use: %v", got)
	}
	u.Touch(k.kind, k.namespace, k.name, t0.Add(900*time.Millisecond)) // the second already written
	if got := uses(u, t0.Add(5*time.Minute)); len(got) != 0 {
		t.Fatalf("a use in the second already written was written again: %v", got)
	}
	// Concurrent uses across seconds: the latest second wins.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				u.Touch(k.kind, k.namespace, k.name, t0.Add(time.Duration(10+(i*8+g)%100)*time.Second))
			}
		})
	}
	wg.Wait()
	if got := uses(u, t0.Add(10*time.Minute)); !got[k].Equal(t0.Add(109 * time.Second)) {
		t.Fatalf("after concurrent uses: %v, want %v", got, t0.Add(109*time.Second))
	}
}

// uses is due's writes of a last use, by key.
func uses(u *LastUsed, now time.Time) map[usageKey]time.Time {
	out := map[usageKey]time.Time{}
	for _, w := range u.due(now) {
		if !w.used.IsZero() {
			out[w.key] = w.used
		}
	}
	return out
}

package statuswriter

import (
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestLastUseIsWrittenAtMostOnceAMinutePerKey(t *testing.T) {
	u := NewLastUsed()
	u.Touch(hashsecret.KindAPIKey, "ns", "a", t0)
	if got := u.due(t0); len(got) != 1 {
		t.Fatalf("first use: %d due, want 1", len(got))
	}
	u.Touch(hashsecret.KindAPIKey, "ns", "a", t0.Add(time.Second))
	if got := u.due(t0.Add(59 * time.Second)); len(got) != 0 {
		t.Fatalf("within the minute: %d due, want 0", len(got))
	}
	if got := u.due(t0.Add(time.Minute)); len(got) != 1 || !got[usageKey{hashsecret.KindAPIKey, "ns", "a"}].Equal(t0.Add(time.Second)) {
		t.Fatalf("after the minute: %v", got)
	}
	if got := u.due(t0.Add(3 * time.Minute)); len(got) != 0 {
		t.Fatal("an unused key was written again")
	}
}

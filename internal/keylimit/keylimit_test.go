package keylimit

import (
	"strconv"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestALimiterTakesItsSettingsOrTheDefaults(t *testing.T) {
	cases := map[string]struct {
		burst     int
		refill    time.Duration
		wantBurst int
		wantWait  time.Duration
	}{
		"defaults":   {wantBurst: 2, wantWait: time.Minute},
		"configured": {burst: 5, refill: 10 * time.Second, wantBurst: 5, wantWait: 10 * time.Second},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(t0)
			l := New(c.burst, c.refill, 2, time.Minute, clk)
			for i := range c.wantBurst {
				if d := l.Wait("team-a", "billing"); d != 0 {
					t.Fatalf("Wait %v within the burst, at %d", d, i+1)
				}
				if _, ok := l.Take("team-a", "billing"); !ok {
					t.Fatalf("refused within the burst, at %d", i+1)
				}
			}
			if wait, ok := l.Take("team-a", "billing"); ok || wait != c.wantWait {
				t.Fatalf("after the burst: ok=%v wait=%v, want a wait of %v", ok, wait, c.wantWait)
			}
			if d := l.Wait("team-a", "billing"); d != c.wantWait {
				t.Fatalf("Wait %v, want %v", d, c.wantWait)
			}
			if _, ok := l.Take("team-a", "payroll"); !ok {
				t.Fatal("another key was refused")
			}
			clk.Step(c.wantWait / 2)
			if d := l.Wait("team-a", "billing"); d != c.wantWait/2 {
				t.Fatalf("half a refill later, Wait %v, want %v", d, c.wantWait/2)
			}
			clk.Step(c.wantWait / 2)
			if _, ok := l.Take("team-a", "billing"); !ok {
				t.Fatal("refused after the refill")
			}
		})
	}
}

func TestWaitSpendsNothingAndTracksNothing(t *testing.T) {
	l := New(1, time.Minute, 0, 0, clocktesting.NewFakeClock(t0))
	for range 5 {
		if d := l.Wait("team-a", "billing"); d != 0 {
			t.Fatalf("Wait %v", d)
		}
	}
	if l.Len() != 0 {
		t.Fatalf("Wait made %d buckets", l.Len())
	}
	if _, ok := l.Take("team-a", "billing"); !ok {
		t.Fatal("Wait spent a token")
	}
}

func TestALimiterStaysBoundedUnderManyKeys(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	l := New(2, time.Minute, 0, 0, clk)
	l.max = 64
	for i := range 1000 {
		l.Take("team-a", strconv.Itoa(i))
		if l.Len() > l.max {
			t.Fatalf("%d buckets tracked, bound %d", l.Len(), l.max)
		}
	}
	// Buckets that refilled are forgotten first: they owe nothing.
	l = New(2, time.Hour, 0, 0, clk)
	l.max = 64
	l.Take("team-a", "busy")
	l.Take("team-a", "busy")
	for i := range l.max - 1 {
		l.Take("team-b", strconv.Itoa(i))
	}
	clk.Step(time.Hour) // team-b's buckets are full again, busy's holds 1
	l.Take("team-c", "new")
	if l.Len() != 2 {
		t.Fatalf("%d buckets after eviction, want busy's and the new one", l.Len())
	}
	if _, ok := l.Take("team-a", "busy"); !ok {
		t.Fatal("busy's refilled token was refused")
	}
	if _, ok := l.Take("team-a", "busy"); ok {
		t.Fatal("a key over its limit was forgotten while refilled buckets could go")
	}
}

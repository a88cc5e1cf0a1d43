package ratelimit

import (
	"math"
	"testing"
	"time"
)

// call is one request in a GCRA table test: at time at (since the start),
// under limit, with the answer wanted.
type call struct {
	at    time.Duration
	limit Limit
	want  Result
}

func TestGCRAStep(t *testing.T) {
	perMin10 := Limit{Requests: 10, Period: time.Minute} // T = 6s, burst 10
	burst2 := Limit{Requests: 10, Period: time.Minute, Burst: 2}
	perMin100 := Limit{Requests: 100, Period: time.Minute} // T = 600ms, burst 100
	allowed := func(remaining int, reset time.Duration) Result {
		return Result{Allowed: true, Remaining: remaining, ResetAfter: reset}
	}
	refused := func(retry, reset time.Duration) Result {
		return Result{RetryAfter: retry, ResetAfter: reset}
	}
	// burst10 is ten requests at once under perMin10, all allowed.
	burst10 := func(at time.Duration) []call {
		var cs []call
		for i := range 10 {
			cs = append(cs, call{at, perMin10, allowed(9-i, time.Duration(i+1)*6*time.Second)})
		}
		return cs
	}
	cases := map[string][]call{
		"a new bucket allows the burst at once, then refuses until one interval passes": append(burst10(0),
			call{0, perMin10, refused(6*time.Second, time.Minute)},
			call{time.Second, perMin10, refused(5*time.Second, 59*time.Second)},
		),
		"a spent bucket allows one request per interval (the steady rate), no more": append(burst10(0),
			call{6 * time.Second, perMin10, allowed(0, time.Minute)},
			call{6 * time.Second, perMin10, refused(6*time.Second, time.Minute)},
			call{12 * time.Second, perMin10, allowed(0, time.Minute)},
			call{18*time.Second - time.Nanosecond, perMin10, refused(time.Nanosecond, 54*time.Second+time.Nanosecond)},
			call{18 * time.Second, perMin10, allowed(0, time.Minute)},
		),
		"a refused request spends nothing: retrying early does not push the retry further": append(burst10(0),
			call{3 * time.Second, perMin10, refused(3*time.Second, 57*time.Second)},
			call{4 * time.Second, perMin10, refused(2*time.Second, 56*time.Second)},
			call{5 * time.Second, perMin10, refused(time.Second, 55*time.Second)},
			call{6 * time.Second, perMin10, allowed(0, time.Minute)},
		),
		"after the reset time the bucket is whole again": append(burst10(0),
			call{time.Minute, perMin10, allowed(9, 6*time.Second)},
		),
		"a bucket unused long after its reset is a new one": {
			{0, perMin10, allowed(9, 6*time.Second)},
			{24 * time.Hour, perMin10, allowed(9, 6*time.Second)},
		},
		"half the budget spent, half the reset time to wait": {
			{0, perMin10, allowed(9, 6*time.Second)},
			{0, perMin10, allowed(8, 12*time.Second)},
			{0, perMin10, allowed(7, 18*time.Second)},
			{0, perMin10, allowed(6, 24*time.Second)},
			{0, perMin10, allowed(5, 30*time.Second)},
			{15 * time.Second, perMin10, allowed(6, 21*time.Second)},
		},
		"a burst smaller than the rate: two at once, then one per interval": {
			{0, burst2, allowed(1, 6*time.Second)},
			{0, burst2, allowed(0, 12*time.Second)},
			{0, burst2, refused(6*time.Second, 12*time.Second)},
			{6 * time.Second, burst2, allowed(0, 12*time.Second)},
		},
		"a burst larger than the rate": {
			{0, Limit{Requests: 1, Period: time.Second, Burst: 3}, allowed(2, time.Second)},
			{0, Limit{Requests: 1, Period: time.Second, Burst: 3}, allowed(1, 2*time.Second)},
			{0, Limit{Requests: 1, Period: time.Second, Burst: 3}, allowed(0, 3*time.Second)},
			{0, Limit{Requests: 1, Period: time.Second, Burst: 3}, refused(time.Second, 3*time.Second)},
		},
		// The bucket keeps a time (TAT), not a count: what was spent is
		// owed in time, and a new limit measures that debt in its own
		// interval.
		"a limit raised after spending: the debt in time carries over": append(burst10(0),
			// 60s owed = 100 requests at 600ms: the new burst is spent too.
			call{0, perMin100, refused(600*time.Millisecond, time.Minute)},
			call{600 * time.Millisecond, perMin100, allowed(0, time.Minute)},
			call{30 * time.Second, perMin100, allowed(48, 31200*time.Millisecond)},
		),
		"a limit lowered after spending: the old spending counts in the new interval": {
			{0, perMin100, allowed(99, 600*time.Millisecond)},
			{0, perMin100, allowed(98, 1200*time.Millisecond)},
			// 1.2s owed; at 6s an interval, 1.2s+6s of 60s.
			{0, perMin10, allowed(8, 7200*time.Millisecond)},
		},
	}
	for name, calls := range cases {
		t.Run(name, func(t *testing.T) {
			var tat time.Duration
			for i, c := range calls {
				var got Result
				tat, got = gcra(c.at, tat, c.limit)
				if got != c.want {
					t.Fatalf("call %d at %v: got %+v, want %+v", i+1, c.at, got, c.want)
				}
			}
		})
	}
}

func TestGCRAWithExtremeLimitsNeitherOverflowsNorDividesByZero(t *testing.T) {
	now := 50 * 365 * 24 * time.Hour // a replica up for 50 years
	for name, l := range map[string]Limit{
		"one request in the longest period":         {Requests: 1, Period: math.MaxInt64},
		"the largest burst over the longest period": {Requests: 1, Period: math.MaxInt64, Burst: math.MaxInt},
		"more requests than nanoseconds":            {Requests: math.MaxInt, Period: time.Second},
		"the largest burst at the highest rate":     {Requests: math.MaxInt, Period: 1, Burst: math.MaxInt},
	} {
		t.Run(name, func(t *testing.T) {
			var tat time.Duration
			for i := range 1000 {
				var r Result
				tat, r = gcra(now, tat, l)
				if r.Remaining < 0 || r.RetryAfter < 0 || r.ResetAfter < 0 || tat < now {
					t.Fatalf("call %d: %+v, TAT %v before now %v", i+1, r, tat, now)
				}
				if i == 0 && !r.Allowed {
					t.Fatalf("the first request of a new bucket was refused: %+v", r)
				}
			}
		})
	}
}

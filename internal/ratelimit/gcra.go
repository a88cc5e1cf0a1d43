package ratelimit

import "time"

// maxSpan bounds every interval and burst the local store computes with, so
// that a bucket's times (a replica's uptime plus two spans) never overflow a
// time.Duration: a limit with a longer period behaves as one of 50 years.
const maxSpan = 50 * 365 * 24 * time.Hour

// gcra is one request under limit l at time now, against a bucket whose
// theoretical arrival time (TAT) is tat, both measured from the same origin:
// the Generic Cell Rate Algorithm exactly as redis_rate's Lua script runs it
// (AllowN with n = 1), so that both stores answer alike. It returns the TAT
// to store (tat itself when the request is refused: a refusal spends
// nothing) and the answer.
//
// The bucket is a single time, not a count: each request pushes the TAT one
// emission interval T = Period/Requests later, and a request is allowed
// while the TAT it would leave is at most Burst intervals ahead of now. A
// bucket whose TAT is past is the same as a new one, which is why the local
// store may forget it.
func gcra(now, tat time.Duration, l Limit) (time.Duration, Result) {
	interval, burstOffset := spans(l)
	return gcraStep(now, tat, interval, burstOffset)
}

// gcraStep is gcra with l's spans computed.
func gcraStep(now, tat, interval, burstOffset time.Duration) (time.Duration, Result) {
	tat = max(tat, now)
	newTAT := tat + interval
	allowAt := newTAT - burstOffset
	diff := now - allowAt
	if diff < 0 {
		return tat, Result{RetryAfter: -diff, ResetAfter: tat - now}
	}
	return newTAT, Result{Allowed: true, Remaining: int(diff / interval), ResetAfter: newTAT - now}
}

// spans returns l's emission interval (Period/Requests) and burst offset
// (interval × burst), each at least a nanosecond and at most maxSpan. l must
// not be zero.
func spans(l Limit) (interval, burstOffset time.Duration) {
	interval = min(max(l.Period/time.Duration(l.Requests), 1), maxSpan)
	burst := time.Duration(l.EffectiveBurst())
	if burst > maxSpan/interval {
		return interval, maxSpan
	}
	return interval, interval * burst
}

// Package usage merges the request counts a key server replica gathered
// into a key's status.usage: totals since creation and hourly buckets of the
// last 24 hours. The functions are pure; statuswriter does the writing.
package usage

import (
	"math"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// Hour is the requests counted in the hour starting at Start (Unix seconds,
// on the hour).
type Hour struct {
	Start             int64
	Accepted, Refused int64
}

// Delta is what one replica counted for one key and has not written yet.
type Delta struct {
	Accepted, Refused int64
	// Hours holds only hours inside the window (see Add); older ones are
	// in the totals alone.
	Hours []Hour
}

// IsZero: nothing to write.
func (d Delta) IsZero() bool { return d.Accepted == 0 && d.Refused == 0 }

// skew is how far ahead of a replica's clock an hour written by another
// replica may start and still be kept: replicas' clocks differ by seconds,
// and one that has passed the hour must not see its bucket dropped by one
// that has not.
const skew = time.Hour

// window is the first and last hour start kept at now: the current hour and
// the 23 before it, and one hour ahead for clock skew.
func window(now time.Time) (first, last int64) {
	cur := now.Truncate(time.Hour).Unix()
	return cur - int64(kw.UsageHours-1)*3600, cur + int64(skew/time.Second)
}

// Add counts accepted and refused requests in the hour of now, and drops
// hours that have left the window (their requests stay in the totals).
func (d *Delta) Add(accepted, refused int64, now time.Time) {
	d.Merge(Delta{Accepted: accepted, Refused: refused,
		Hours: []Hour{{Start: now.Truncate(time.Hour).Unix(), Accepted: accepted, Refused: refused}}}, now)
}

// Merge adds o to d (a write that failed puts its delta back this way).
func (d *Delta) Merge(o Delta, now time.Time) {
	d.Accepted, d.Refused = add(d.Accepted, o.Accepted), add(d.Refused, o.Refused)
	d.Hours = mergeHours(d.Hours, o.Hours, now)
}

// Apply returns cur (nil: none yet) with d added: totals, hourly buckets
// (hours out of the window dropped, at most kw.UsageHours kept) and last24h
// recomputed at now. Whatever cur holds (written by an older version,
// another replica's clock, or anyone allowed to write status) it returns a
// valid, bounded value: counts are clamped at zero, hours are put on the
// hour, and duplicates are summed.
func Apply(cur *kw.KeyUsage, d Delta, now time.Time) *kw.KeyUsage {
	out := &kw.KeyUsage{}
	var hours []Hour
	if cur != nil {
		out.Accepted, out.Refused = max(cur.Accepted, 0), max(cur.Refused, 0)
		hours = make([]Hour, 0, len(cur.Hours))
		for _, h := range cur.Hours {
			hours = append(hours, Hour{Start: h.Start.Truncate(time.Hour).Unix(), Accepted: max(h.Accepted, 0), Refused: max(h.Refused, 0)})
		}
	}
	out.Accepted, out.Refused = add(out.Accepted, d.Accepted), add(out.Refused, d.Refused)
	for _, h := range mergeHours(hours, d.Hours, now) {
		out.Hours = append(out.Hours, kw.UsageHour{Start: metav1.NewTime(time.Unix(h.Start, 0).UTC()), Accepted: h.Accepted, Refused: h.Refused})
	}
	out.Last24h = Last24h(out, now)
	return out
}

// Last24h sums u's hours in the window at now.
func Last24h(u *kw.KeyUsage, now time.Time) kw.UsageCount {
	var c kw.UsageCount
	if u == nil {
		return c
	}
	first, last := window(now)
	for _, h := range u.Hours {
		if s := h.Start.Unix(); s >= first && s <= last {
			c.Accepted, c.Refused = add(c.Accepted, max(h.Accepted, 0)), add(c.Refused, max(h.Refused, 0))
		}
	}
	return c
}

// mergeHours sums a and b by hour, keeps the hours in the window, oldest
// first, at most kw.UsageHours (the oldest go first when skew makes one
// more). It does not modify a or b.
func mergeHours(a, b []Hour, now time.Time) []Hour {
	first, last := window(now)
	out := make([]Hour, 0, min(len(a)+len(b), kw.UsageHours+1))
	for _, src := range [][]Hour{a, b} {
		for _, h := range src {
			if h.Start < first || h.Start > last {
				continue
			}
			i, found := slices.BinarySearchFunc(out, h.Start, func(x Hour, s int64) int { return cmpInt(x.Start, s) })
			if found {
				out[i].Accepted, out[i].Refused = add(out[i].Accepted, h.Accepted), add(out[i].Refused, h.Refused)
				continue
			}
			out = slices.Insert(out, i, h)
		}
	}
	if n := len(out) - kw.UsageHours; n > 0 {
		out = out[n:]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// add is a+b for counts, saturating rather than wrapping negative.
func add(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

package usage

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

var now = time.Date(2026, 11, 22, 12, 30, 0, 0, time.UTC)

// at is the hour start h hours from now's hour.
func at(h int) time.Time { return now.Truncate(time.Hour).Add(time.Duration(h) * time.Hour) }

func hour(h int, a, r int64) kw.UsageHour {
	return kw.UsageHour{Start: metav1.NewTime(at(h)), Accepted: a, Refused: r}
}

func dh(h int, a, r int64) Hour { return Hour{Start: at(h).Unix(), Accepted: a, Refused: r} }

func TestApply(t *testing.T) {
	full := &kw.KeyUsage{Accepted: 1000, Refused: 100}
	for h := -23; h <= 0; h++ {
		full.Hours = append(full.Hours, hour(h, 1, 1))
	}
	for _, tc := range []struct {
		name  string
		cur   *kw.KeyUsage
		delta Delta
		want  *kw.KeyUsage
	}{
		{"first write", nil, Delta{Accepted: 3, Refused: 1, Hours: []Hour{dh(0, 3, 1)}},
			&kw.KeyUsage{Accepted: 3, Refused: 1, Last24h: kw.UsageCount{Accepted: 3, Refused: 1}, Hours: []kw.UsageHour{hour(0, 3, 1)}}},
		{"deltas are added to the same hour and the totals",
			&kw.KeyUsage{Accepted: 10, Refused: 2, Hours: []kw.UsageHour{hour(-1, 4, 0), hour(0, 6, 2)}},
			Delta{Accepted: 5, Refused: 1, Hours: []Hour{dh(0, 5, 1)}},
			&kw.KeyUsage{Accepted: 15, Refused: 3, Last24h: kw.UsageCount{Accepted: 15, Refused: 3}, Hours: []kw.UsageHour{hour(-1, 4, 0), hour(0, 11, 3)}}},
		{"a new hour is appended in order",
			&kw.KeyUsage{Accepted: 4, Hours: []kw.UsageHour{hour(-1, 4, 0)}},
			Delta{Accepted: 1, Hours: []Hour{dh(0, 1, 0)}},
			&kw.KeyUsage{Accepted: 5, Last24h: kw.UsageCount{Accepted: 5}, Hours: []kw.UsageHour{hour(-1, 4, 0), hour(0, 1, 0)}}},
		{"hours older than 24 h leave the window but not the totals",
			&kw.KeyUsage{Accepted: 9, Hours: []kw.UsageHour{hour(-30, 5, 0), hour(-24, 3, 0), hour(-23, 1, 0)}},
			Delta{Accepted: 1, Hours: []Hour{dh(-25, 1, 0)}},
			&kw.KeyUsage{Accepted: 10, Last24h: kw.UsageCount{Accepted: 1}, Hours: []kw.UsageHour{hour(-23, 1, 0)}}},
		{"a full day rolls: the oldest hour goes, the new one comes", full,
			Delta{Refused: 2, Hours: []Hour{dh(1, 0, 2)}},
			func() *kw.KeyUsage {
				// now+1h is within the skew allowance: 25 hours, the oldest dropped.
				u := &kw.KeyUsage{Accepted: 1000, Refused: 102, Last24h: kw.UsageCount{Accepted: 23, Refused: 25}}
				for h := -22; h <= 0; h++ {
					u.Hours = append(u.Hours, hour(h, 1, 1))
				}
				u.Hours = append(u.Hours, hour(1, 0, 2))
				return u
			}()},
		{"junk in status: far-future and unaligned hours, duplicates, negatives",
			&kw.KeyUsage{Accepted: -5, Refused: 1, Hours: []kw.UsageHour{
				hour(5000, 1<<40, 0), hour(0, 2, 0), {Start: metav1.NewTime(at(0).Add(17 * time.Minute)), Accepted: 3, Refused: -7},
			}},
			Delta{Accepted: 1, Hours: []Hour{dh(0, 1, 0)}},
			&kw.KeyUsage{Accepted: 1, Refused: 1, Last24h: kw.UsageCount{Accepted: 6}, Hours: []kw.UsageHour{hour(0, 6, 0)}}},
		{"totals saturate instead of wrapping",
			&kw.KeyUsage{Accepted: math.MaxInt64 - 1},
			Delta{Accepted: 5, Hours: []Hour{dh(0, 5, 0)}},
			&kw.KeyUsage{Accepted: math.MaxInt64, Last24h: kw.UsageCount{Accepted: 5}, Hours: []kw.UsageHour{hour(0, 5, 0)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Apply(tc.cur, tc.delta, now)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("Apply (-want +got):\n%s", d)
			}
			if len(got.Hours) > kw.UsageHours {
				t.Fatalf("%d hours kept", len(got.Hours))
			}
		})
	}
}

func TestDeltaAddKeepsOnlyTheWindowButAllTheTotals(t *testing.T) {
	var d Delta
	d.Add(2, 1, at(-30))
	d.Add(1, 0, at(0).Add(5*time.Minute))
	d.Add(1, 1, at(0).Add(50*time.Minute))
	want := Delta{Accepted: 4, Refused: 2, Hours: []Hour{dh(0, 2, 1)}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	// A failed write's delta merged back: an hour that left the window
	// meanwhile keeps only its totals.
	d.Merge(Delta{Accepted: 1, Hours: []Hour{dh(-24, 1, 0)}}, now)
	if d.Accepted != 5 || len(d.Hours) != 1 {
		t.Fatalf("after merge: %+v", d)
	}
}

func TestLast24hIsComputedAtTheReadersClock(t *testing.T) {
	u := &kw.KeyUsage{Hours: []kw.UsageHour{hour(-23, 1, 0), hour(0, 2, 1)}}
	if got := Last24h(u, now); got != (kw.UsageCount{Accepted: 3, Refused: 1}) {
		t.Fatalf("now: %+v", got)
	}
	if got := Last24h(u, now.Add(time.Hour)); got != (kw.UsageCount{Accepted: 2, Refused: 1}) {
		t.Fatalf("an hour later: %+v", got)
	}
	if got := Last24h(u, now.Add(48*time.Hour)); got != (kw.UsageCount{}) {
		t.Fatalf("two days later: %+v", got)
	}
	if got := Last24h(nil, now); got != (kw.UsageCount{}) {
		t.Fatalf("nil: %+v", got)
	}
}

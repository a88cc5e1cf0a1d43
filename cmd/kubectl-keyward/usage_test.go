package main

import (
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

func TestUsageIsShownAsOfTheReadersClock(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 30, 0, 0, time.UTC)
	hour := func(h int, a, r int64) kw.UsageHour {
		return kw.UsageHour{Start: metav1.NewTime(now.Truncate(time.Hour).Add(time.Duration(h) * time.Hour)), Accepted: a, Refused: r}
	}
	// last24h as written two days ago: the plugin recomputes it.
	u := &kw.KeyUsage{Accepted: 1200, Refused: 30, Last24h: kw.UsageCount{Accepted: 999, Refused: 9},
		Hours: []kw.UsageHour{hour(-30, 900, 9), hour(-5, 7, 1), hour(0, 5, 2)}}
	for _, c := range []struct {
		name        string
		u           *kw.KeyUsage
		column      string
		total, last string
	}{
		{"never counted", nil, "-", "<none counted>", "<none counted>"},
		{"counted", u, "12/3", "1200 accepted, 30 refused (since creation)", "12 accepted, 3 refused"},
		{"nothing in the last day", &kw.KeyUsage{Accepted: 4, Hours: []kw.UsageHour{hour(-24, 4, 0)}}, "0/0", "4 accepted, 0 refused (since creation)", "0 accepted, 0 refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := usedColumn(c.u, now); got != c.column {
				t.Errorf("column %q, want %q", got, c.column)
			}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 8, 1, ' ', 0)
			writeUsage(tw, c.u, now)
			_ = tw.Flush()
			want := "Requests: " + c.total + "\nLast 24h: " + c.last + "\n"
			if b.String() != want {
				t.Errorf("describe:\n%s\nwant:\n%s", b.String(), want)
			}
		})
	}
}

package main

import (
	"fmt"
	"io"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/usage"
)

// usedColumn is list's USED 24H: accepted/refused in the 24 hours before
// now, from status.usage's hours (its last24h is as of the last write, and
// a key unused since would keep showing old requests).
func usedColumn(u *kw.KeyUsage, now time.Time) string {
	if u == nil {
		return "-"
	}
	c := usage.Last24h(u, now)
	return fmt.Sprintf("%d/%d", c.Accepted, c.Refused)
}

// writeUsage is describe's lines about status.usage.
func writeUsage(w io.Writer, u *kw.KeyUsage, now time.Time) {
	if u == nil {
		fmt.Fprintf(w, "Requests:\t<none counted>\nLast 24h:\t<none counted>\n")
		return
	}
	c := usage.Last24h(u, now)
	fmt.Fprintf(w, "Requests:\t%d accepted, %d refused (since creation)\n", u.Accepted, u.Refused)
	fmt.Fprintf(w, "Last 24h:\t%d accepted, %d refused\n", c.Accepted, c.Refused)
}

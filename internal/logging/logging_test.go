package logging

import (
	"testing"

	"github.com/go-logr/logr/funcr"
)

func TestCappedDropsLevelsAboveTheCap(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 100})
	l := Capped(base).WithName("n").WithValues("k", "v")

	cases := map[string]struct {
		level int
		want  bool
	}{
		"the reconcile lines of controller-runtime are kept":  {level: 5, want: true},
		"request URLs are dropped":                            {level: 6, want: false},
		"request bodies, which can hold Secrets, are dropped": {level: 8, want: false},
		"the default level is kept":                           {level: 0, want: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			lines = nil
			l.V(c.level).Info("msg")
			if got := len(lines) == 1; got != c.want {
				t.Fatalf("V(%d) printed=%v, want %v", c.level, got, c.want)
			}
			if l.V(c.level).Enabled() != c.want {
				t.Fatalf("V(%d).Enabled() = %v, want %v", c.level, !c.want, c.want)
			}
		})
	}
}

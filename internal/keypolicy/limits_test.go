package keypolicy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/ratelimit"
)

func rateLimit(requests int32, period time.Duration, burst int32) option {
	return func(p *kw.KeyPolicy) {
		p.Spec.RateLimit = &kw.RateLimit{Requests: requests, Period: metav1.Duration{Duration: period}, Burst: burst}
	}
}

func allowedCIDRs(cidrs ...string) option {
	return func(p *kw.KeyPolicy) {
		for _, c := range cidrs {
			p.Spec.AllowedCIDRs = append(p.Spec.AllowedCIDRs, kw.CIDR(c))
		}
	}
}

func TestCompileLimits(t *testing.T) {
	p := Compile(kp("billing/api", rateLimit(100, time.Minute, 10), allowedCIDRs("10.0.0.0/8", "2001:db8::1")))
	if p.Invalid() != "" {
		t.Fatalf("Invalid() = %q", p.Invalid())
	}
	if want := (ratelimit.Limit{Requests: 100, Period: time.Minute, Burst: 10}); p.RateLimit() != want {
		t.Errorf("RateLimit() = %+v, want %+v", p.RateLimit(), want)
	}
	cidrs := p.AllowedCIDRs()
	for addr, want := range map[string]bool{"10.3.2.1": true, "2001:db8::1": true, "2001:db8::2": false, "192.0.2.1": false} {
		if got := cidrs.Allows(netip.MustParseAddr(addr)); got != want {
			t.Errorf("AllowedCIDRs().Allows(%s) = %v, want %v", addr, got, want)
		}
	}

	none := Compile(kp("billing/api"))
	if !none.RateLimit().IsZero() || none.AllowedCIDRs().IsSet() {
		t.Errorf("a policy without limits has %+v, set %v", none.RateLimit(), none.AllowedCIDRs().IsSet())
	}
}

// A stored policy the schema would refuse today is invalid (it refuses every
// request on its hosts) rather than applied with a limit or list it cannot
// mean.
func TestCompileRefusesLimitsOutsideTheSchema(t *testing.T) {
	var many []string
	for i := range 65 {
		many = append(many, fmt.Sprintf("10.%d.0.0/16", i))
	}
	for name, tc := range map[string]struct {
		opt     option
		invalid string
	}{
		"no requests":          {rateLimit(0, time.Minute, 0), "spec.rateLimit.requests"},
		"a period under 1s":    {rateLimit(1, time.Millisecond, 0), "spec.rateLimit.period"},
		"a period over a day":  {rateLimit(1, 25*time.Hour, 0), "spec.rateLimit.period"},
		"a negative burst":     {rateLimit(1, time.Minute, -1), "spec.rateLimit.burst"},
		"a CIDR that is not":   {allowedCIDRs("10.0.0.0/8", "nope"), "spec.allowedCIDRs[1]"},
		"more than 64 entries": {allowedCIDRs(many...), "spec.allowedCIDRs: at most 64"},
	} {
		t.Run(name, func(t *testing.T) {
			p := Compile(kp("billing/api", tc.opt))
			if !strings.Contains(p.Invalid(), tc.invalid) {
				t.Errorf("Invalid() = %q, want it to mention %q", p.Invalid(), tc.invalid)
			}
		})
	}
}

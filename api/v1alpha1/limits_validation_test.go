package v1alpha1_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

// spec.rateLimit and spec.allowedCIDRs on the three kinds that carry them.
// A tenant writes its own keys' limits and lists: the schema is what keeps
// them within what the key server can count and match cheaply (attack 4 of
// issue 15: absurd limits, huge lists).

func limit(requests int32, period string, burst int32) *kw.RateLimit {
	return &kw.RateLimit{Requests: requests, Period: *dur(period), Burst: burst}
}

func cidrs(ss ...string) []kw.CIDR {
	out := make([]kw.CIDR, len(ss))
	for i, s := range ss {
		out[i] = kw.CIDR(s)
	}
	return out
}

// limitsOf returns where o carries its rateLimit and allowedCIDRs.
func limitsOf(o client.Object) (**kw.RateLimit, *[]kw.CIDR) {
	switch o := o.(type) {
	case *kw.APIKey:
		return &o.Spec.RateLimit, &o.Spec.AllowedCIDRs
	case *kw.AccessKeyPair:
		return &o.Spec.RateLimit, &o.Spec.AllowedCIDRs
	case *kw.KeyPolicy:
		return &o.Spec.RateLimit, &o.Spec.AllowedCIDRs
	}
	panic(fmt.Sprintf("%T carries no limits", o))
}

var _ = Describe("rateLimit and allowedCIDRs validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	kinds := map[string]func(ns string) client.Object{
		"APIKey":        func(ns string) client.Object { return validKey(ns) },
		"AccessKeyPair": func(ns string) client.Object { return validPair(ns) },
		"KeyPolicy":     func(ns string) client.Object { return validPolicy(ns) },
	}

	for kind, newObj := range kinds {
		It(kind+" accepts limits and lists within the bounds, single addresses included", func() {
			o := newObj(ns)
			rl, cs := limitsOf(o)
			*rl = limit(100, "1m", 20)
			*cs = cidrs("10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "2001:db8::1", "0.0.0.0/0")
			Expect(k8s.Create(ctx, o)).To(Succeed())

			// A Go client writes the period back as time.Duration.String().
			*rl = &kw.RateLimit{Requests: 86400, Period: metav1.Duration{Duration: 24 * time.Hour}}
			Expect(k8s.Update(ctx, o)).To(Succeed())
			*rl = limit(1000000, "1s", 1000000)
			Expect(k8s.Update(ctx, o)).To(Succeed())
			*rl, *cs = nil, nil
			Expect(k8s.Update(ctx, o)).To(Succeed())
		})

		DescribeTable(kind+" refuses",
			func(rateLimit *kw.RateLimit, list []kw.CIDR, message string) {
				o := newObj(ns)
				rl, cs := limitsOf(o)
				*rl, *cs = rateLimit, list
				expectInvalid(k8s.Create(ctx, o), message)
			},
			Entry("no requests", limit(0, "1m", 0), nil, "spec.rateLimit.requests"),
			Entry("negative requests", limit(-1, "1m", 0), nil, "spec.rateLimit.requests"),
			Entry("issue 15 attack 4: more than a million requests a second", limit(2000000, "1s", 0), nil,
				"rateLimit.requests must be at most 1000000 per second of period"),
			Entry("issue 15 attack 4: a billion and one requests", limit(1000000001, "24h", 0), nil, "spec.rateLimit.requests"),
			Entry("a period under a second", limit(10, "500ms", 0), nil, "spec.rateLimit.period"),
			Entry("a period with a fraction of a second", limit(10, "1.5s", 0), nil, "spec.rateLimit.period"),
			Entry("a zero period", limit(10, "0s", 0), nil, "rateLimit.period must be between 1s and 24h"),
			Entry("issue 15 attack 4: a period over a day", limit(10, "25h", 0), nil, "rateLimit.period must be between 1s and 24h"),
			Entry("a negative burst", limit(10, "1m", -1), nil, "spec.rateLimit.burst"),
			Entry("issue 15 attack 4: a burst that takes over a day to refill", limit(1, "1h", 25), nil,
				"rateLimit.burst must refill within 24h"),
			Entry("a CIDR that is not one", nil, cidrs("10.0.0.0/33"), "allowedCIDRs"),
			Entry("a host name", nil, cidrs("example.com"), "allowedCIDRs"),
			Entry("an address with a zone", nil, cidrs("fe80::1%eth0"), "allowedCIDRs"),
			Entry("a CIDR with host bits set, which reads as a typo", nil, cidrs("10.1.2.3/8"),
				"must be written as the network's first address"),
			Entry("an IPv4-mapped IPv6 address, which never matches a client", nil, cidrs("::ffff:192.0.2.7"), "allowedCIDRs"),
			Entry("an IPv4-mapped IPv6 network", nil, cidrs("::ffff:192.0.2.0/120"), "allowedCIDRs"),
			Entry("an empty entry", nil, cidrs(""), "allowedCIDRs"),
			Entry("the same CIDR twice", nil, cidrs("10.0.0.0/8", "10.0.0.0/8"), "Duplicate value"),
			Entry("issue 15 attack 4: more than 64 CIDRs", nil, func() []kw.CIDR {
				var out []kw.CIDR
				for i := range 65 {
					out = append(out, kw.CIDR(fmt.Sprintf("10.0.%d.0/24", i)))
				}
				return out
			}(), "Too many: 65: must have at most 64 items"),
		)
	}
})

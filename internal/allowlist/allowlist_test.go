package allowlist

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestAllows(t *testing.T) {
	a := netip.MustParseAddr
	cases := map[string]struct {
		entries []string
		addr    netip.Addr
		want    bool
	}{
		"no list allows any address":                     {nil, a("203.0.113.9"), true},
		"an empty list allows any address":               {[]string{}, a("203.0.113.9"), true},
		"no list allows even an unknown address":         {nil, netip.Addr{}, true},
		"an address inside a network":                    {[]string{"10.0.0.0/8"}, a("10.200.0.1"), true},
		"an address outside every network":               {[]string{"10.0.0.0/8", "192.168.0.0/16"}, a("172.16.0.1"), false},
		"the second network allows":                      {[]string{"10.0.0.0/8", "192.168.0.0/16"}, a("192.168.3.4"), true},
		"a single address stands for itself":             {[]string{"192.0.2.7"}, a("192.0.2.7"), true},
		"a single address is not its network":            {[]string{"192.0.2.7"}, a("192.0.2.8"), false},
		"IPv6 network":                                   {[]string{"2001:db8::/32"}, a("2001:db8:1::5"), true},
		"IPv6 single address":                            {[]string{"2001:db8::1"}, a("2001:db8::2"), false},
		"an IPv4 client is not in an IPv6 network":       {[]string{"::/0"}, a("10.0.0.1"), false},
		"0.0.0.0/0 is every IPv4 address":                {[]string{"0.0.0.0/0"}, a("198.51.100.1"), true},
		"an unknown client address is refused by a list": {[]string{"0.0.0.0/0", "::/0"}, netip.Addr{}, false},
		"an IPv4-mapped client is read as IPv4":          {[]string{"10.0.0.0/8"}, a("::ffff:10.1.2.3"), true},
		"a client address with a zone is read without":   {[]string{"fe80::/10"}, a("fe80::1%eth0"), true},
		// Fail closed: an entry the key server cannot read must never turn
		// a list into "any address".
		"an unreadable entry alone allows nothing":      {[]string{"not-a-cidr"}, a("10.0.0.1"), false},
		"an unreadable entry leaves the others working": {[]string{"garbage", "10.0.0.0/8"}, a("10.0.0.1"), true},
		"host bits set are masked":                      {[]string{"10.1.2.3/8"}, a("10.9.9.9"), true},
		"an IPv4-mapped network is read as IPv4":        {[]string{"::ffff:10.0.0.0/104"}, a("10.1.1.1"), true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Parse(c.entries).Allows(c.addr); got != c.want {
				t.Errorf("Parse(%q).Allows(%v) = %v, want %v", c.entries, c.addr, got, c.want)
			}
		})
	}
}

// A list longer than MaxEntries (a record not written by today's
// controller) allows nothing rather than a prefix of it, and holds no more
// than MaxEntries prefixes.
func TestTooManyEntriesAllowNothing(t *testing.T) {
	var entries []string
	for i := range MaxEntries + 1 {
		entries = append(entries, fmt.Sprintf("10.%d.0.0/16", i))
	}
	l := Parse(entries)
	if l.Allows(netip.MustParseAddr("10.0.0.1")) {
		t.Error("a list over the bound allowed an address")
	}
	if !l.IsSet() {
		t.Error("a list over the bound reads as unset")
	}
	if len(l.prefixes) > MaxEntries {
		t.Errorf("kept %d prefixes, more than %d", len(l.prefixes), MaxEntries)
	}
}

func TestEqual(t *testing.T) {
	x, y := Parse([]string{"10.0.0.0/8"}), Parse([]string{"10.0.0.0/8"})
	if !x.Equal(y) || x.Equal(Parse(nil)) || Parse(nil).Equal(Parse([]string{"bad"})) {
		t.Error("Equal compares the wrong things")
	}
}

func BenchmarkAllows(b *testing.B) {
	var entries []string
	for i := range MaxEntries {
		entries = append(entries, fmt.Sprintf("10.%d.0.0/16", i))
	}
	l := Parse(entries)
	addr := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Allows(addr)
	}
}

package keyserver

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	many := strings.TrimSuffix(strings.Repeat("10.9.9.9,", maxForwardedHops+5), ",")
	cases := map[string]struct {
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string // "" for the zero Addr
	}{
		"no trusted proxies: the peer, X-Forwarded-For ignored":    {peer: "203.0.113.5:1234", xff: []string{"192.0.2.1"}, want: "203.0.113.5"},
		"an untrusted peer: its forwarded header ignored":          {peer: "203.0.113.5:1234", xff: []string{"192.0.2.1"}, trusted: proxies, want: "203.0.113.5"},
		"a trusted peer without X-Forwarded-For: the peer":         {peer: "10.0.0.1:1234", trusted: proxies, want: "10.0.0.1"},
		"a trusted peer: the entry it appended":                    {peer: "10.0.0.1:1234", xff: []string{"203.0.113.5"}, trusted: proxies, want: "203.0.113.5"},
		"the right-most untrusted entry, not the client's claim":   {peer: "10.0.0.1:1234", xff: []string{"192.0.2.66, 203.0.113.5, 10.1.2.3"}, trusted: proxies, want: "203.0.113.5"},
		"several headers are one list, in order":                   {peer: "10.0.0.1:1234", xff: []string{"192.0.2.66", "203.0.113.5", "10.1.2.3"}, trusted: proxies, want: "203.0.113.5"},
		"the last header's last entry comes first":                 {peer: "10.0.0.1:1234", xff: []string{"192.0.2.66, 10.1.2.3", "203.0.113.5"}, trusted: proxies, want: "203.0.113.5"},
		"every hop trusted: the left-most":                         {peer: "10.0.0.1:1234", xff: []string{"10.3.3.3, 10.2.2.2"}, trusted: proxies, want: "10.3.3.3"},
		"garbage stops at the last trusted hop":                    {peer: "10.0.0.1:1234", xff: []string{"203.0.113.5, not-an-ip, 10.1.2.3"}, trusted: proxies, want: "10.1.2.3"},
		"garbage right after the peer: the peer":                   {peer: "10.0.0.1:1234", xff: []string{"unknown"}, trusted: proxies, want: "10.0.0.1"},
		"an over-long entry is garbage":                            {peer: "10.0.0.1:1234", xff: []string{strings.Repeat("1", 300)}, trusted: proxies, want: "10.0.0.1"},
		"empty entries are skipped":                                {peer: "10.0.0.1:1234", xff: []string{" 203.0.113.5 ,, ", ""}, trusted: proxies, want: "203.0.113.5"},
		"IPv6 peer and entry":                                      {peer: "[fd00::1]:443", xff: []string{"2001:db8::5"}, trusted: proxies, want: "2001:db8::5"},
		"IPv6 in brackets, with a port":                            {peer: "[fd00::1]:443", xff: []string{"[2001:db8::5]:8080"}, trusted: proxies, want: "2001:db8::5"},
		"IPv6 in brackets":                                         {peer: "[fd00::1]:443", xff: []string{"[2001:db8::5]"}, trusted: proxies, want: "2001:db8::5"},
		"IPv4 with a port":                                         {peer: "10.0.0.1:1234", xff: []string{"203.0.113.5:5555"}, trusted: proxies, want: "203.0.113.5"},
		"an IPv6 zone is dropped":                                  {peer: "10.0.0.1:1234", xff: []string{"fe80::1%eth0"}, trusted: proxies, want: "fe80::1"},
		"IPv4-mapped IPv6 is IPv4, for the entry":                  {peer: "10.0.0.1:1234", xff: []string{"::ffff:203.0.113.5"}, trusted: proxies, want: "203.0.113.5"},
		"IPv4-mapped IPv6 is IPv4, for the peer":                   {peer: "[::ffff:10.0.0.1]:1234", xff: []string{"203.0.113.5"}, trusted: proxies, want: "203.0.113.5"},
		"more trusted hops than the bound: the last one looked at": {peer: "10.0.0.1:1234", xff: []string{"203.0.113.5, " + many}, trusted: proxies, want: "10.9.9.9"},
		"a peer that is no IP address":                             {peer: "@", xff: []string{"203.0.113.5"}, trusted: proxies, want: ""},
		"a zone in brackets, with a port":                          {peer: "10.0.0.1:1234", xff: []string{"[fe80::1%eth0]:80"}, trusted: proxies, want: "fe80::1"},
		"a port out of range is still an address":                  {peer: "10.0.0.1:1234", xff: []string{"203.0.113.5:99999"}, trusted: proxies, want: "203.0.113.5"},
		"a bare IPv6 address is not read as one with a port":       {peer: "10.0.0.1:1234", xff: []string{"2001:db8::5:80"}, trusted: proxies, want: "2001:db8::5:80"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/authz", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got := clientAddr(r, c.trusted)
			want := netip.Addr{}
			if c.want != "" {
				want = netip.MustParseAddr(c.want)
			}
			if got != want {
				t.Fatalf("clientAddr = %v, want %v", got, want)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    []string
		wantErr bool
	}{
		"empty":                       {in: "", want: nil},
		"CIDRs and addresses":         {in: "10.0.0.0/8, 192.168.1.5,fd00::/8", want: []string{"10.0.0.0/8", "192.168.1.5/32", "fd00::/8"}},
		"host bits are masked":        {in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		"IPv4-mapped is IPv4":         {in: "::ffff:10.0.0.0/104", want: []string{"10.0.0.0/8"}},
		"an IPv6 address is a /128":   {in: "2001:db8::1", want: []string{"2001:db8::1/128"}},
		"empty items are skipped":     {in: " ,10.0.0.0/8,, ", want: []string{"10.0.0.0/8"}},
		"a name is refused":           {in: "gateway.example", wantErr: true},
		"a bad prefix length":         {in: "10.0.0.0/33", wantErr: true},
		"a zone is refused":           {in: "fe80::1%eth0", wantErr: true},
		"one bad item fails the list": {in: "10.0.0.0/8,nope", wantErr: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseTrustedProxies(c.in)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			var gotS []string
			for _, p := range got {
				gotS = append(gotS, p.String())
			}
			if strings.Join(gotS, " ") != strings.Join(c.want, " ") {
				t.Fatalf("got %v, want %v", gotS, c.want)
			}
		})
	}
}

package operator

import (
	"flag"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/keypolicy"
)

func TestFlagDefaults(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("keyward", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ got, want any }{
		"controllers run by default":                         {o.EnableControllers, true},
		"the key server runs by default":                     {o.EnableKeyServer, true},
		"admission webhooks run by default":                  {o.EnableAdmissionWebhooks, true},
		"the key server listens on :8443":                    {o.KeyServerBindAddress, ":8443"},
		"plain HTTP unless a cert dir is given":              {o.KeyServerCertDir, ""},
		"two pairs per subject, as DCE":                      {o.MaxPairsPerSubject, 2},
		"no cap on APIKeys per namespace":                    {o.MaxAPIKeysPerNamespace, 0},
		"signing keys rotate every 30 days":                  {o.SigningKeyPeriod, 30 * 24 * time.Hour},
		"the DCE GET token endpoint is off":                  {o.EnableDCETokenGET, false},
		"leader election is opt-in (the Deployment sets it)": {o.LeaderElect, false},
		"no trusted proxies: the TCP peer is the client":     {len(o.TrustedProxies), 0},
		"two self-rotations per key at once":                 {o.SelfRotationBurst, 2},
		"then one self-rotation a minute":                    {o.SelfRotationRefill, time.Minute},
		"twenty tokens per pair at once":                     {o.TokenBurst, 20},
		"then ten tokens a second":                           {o.TokenRefill, 100 * time.Millisecond},
		"two rotations by annotation per key at once":        {o.AnnotationRotationBurst, 2},
		"then one by annotation a minute":                    {o.AnnotationRotationRefill, time.Minute},
		"a host no KeyPolicy names is refused":               {o.DefaultPolicy, keypolicy.ModeDeny},
		"Envoy's gRPC ext_authz on :50051":                   {o.ExtAuthzGRPCBindAddress, ":50051"},
		"which runs with the key server":                     {o.extAuthzEnabled(), true},
		"accepted requests are not logged":                   {o.LogAcceptedDecisions, false},
		"refused ones at up to 50 lines a second":            {o.DecisionLogRate, 50.0},
		"after a burst of 100":                               {o.DecisionLogBurst, 100},
	}
	for name, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", name, c.got, c.want)
		}
	}
}

func TestTheExtAuthzListenerRunsWithTheKeyServerUnlessDisabled(t *testing.T) {
	for name, c := range map[string]struct {
		o    Options
		want bool
	}{
		"the default address":                                      {Options{EnableKeyServer: true, ExtAuthzGRPCBindAddress: ":50051"}, true},
		"0 disables it, as other bind addresses":                   {Options{EnableKeyServer: true, ExtAuthzGRPCBindAddress: "0"}, false},
		"Options built in code leave it off":                       {Options{EnableKeyServer: true}, false},
		"no key server, no listener (the controllers' Deployment)": {Options{ExtAuthzGRPCBindAddress: ":50051"}, false},
	} {
		if got := c.o.extAuthzEnabled(); got != c.want {
			t.Errorf("%s: enabled %v, want %v", name, got, c.want)
		}
	}
}

func TestTrustedProxiesFlag(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("keyward", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse([]string{"--trusted-proxies=10.0.0.0/8, 192.168.1.5", "--trusted-proxies=fd00::/8"}); err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.5/32"), netip.MustParsePrefix("fd00::/8")}
	if !slices.Equal(o.TrustedProxies, want) {
		t.Fatalf("TrustedProxies = %v, want %v", o.TrustedProxies, want)
	}
	fs = flag.NewFlagSet("keyward", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	(&Options{}).BindFlags(fs)
	if err := fs.Parse([]string{"--trusted-proxies=gateway.example"}); err == nil {
		t.Fatal("a host name was accepted as a trusted proxy")
	}
}

func TestNewManagerRefusesToRunNothing(t *testing.T) {
	if _, err := NewManager(nil, Options{}); err == nil {
		t.Fatal("a manager with every part disabled was built")
	}
}

func TestTheTokenReviewListenerIsOffByDefault(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("keyward", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse([]string{"--token-review-cluster-groups=platform/admins, ci/deployers", "--token-review-cluster-groups=ops/oncall"}); err != nil {
		t.Fatal(err)
	}
	if o.TokenReviewBindAddress != "" {
		t.Fatalf("TokenReview listens on %q by default", o.TokenReviewBindAddress)
	}
	if got := strings.Join(o.TokenReviewClusterGroups, ","); got != "platform/admins,ci/deployers,ops/oncall" {
		t.Fatalf("cluster groups %q", got)
	}
}

func TestTokenReviewFlagsThatCannotWorkAreRefused(t *testing.T) {
	ok := Options{EnableKeyServer: true, TokenReviewBindAddress: ":8444", KeyServerCertDir: "/certs", TokenReviewClientCA: "/ca/ca.crt"}
	cases := map[string]struct {
		mut   func(*Options)
		fails bool
	}{
		"listener, TLS and client CA":            {func(*Options) {}, false},
		"disabled":                               {func(o *Options) { *o = Options{EnableKeyServer: true} }, false},
		"no client CA: anyone could call it":     {func(o *Options) { o.TokenReviewClientCA = "" }, true},
		"no TLS: no client certificate either":   {func(o *Options) { o.KeyServerCertDir = "" }, true},
		"no key server to answer from":           {func(o *Options) { o.EnableKeyServer = false }, true},
		"a client CA for a disabled listener":    {func(o *Options) { o.TokenReviewBindAddress = "" }, true},
		"an allow-list entry that is not ns/grp": {func(o *Options) { o.TokenReviewClusterGroups = []string{"admins"} }, true},
	}
	for name, c := range cases {
		o := ok
		c.mut(&o)
		tro, err := o.tokenReview(nil)
		if (err != nil) != c.fails {
			t.Errorf("%s: error %v, want failure %v", name, err, c.fails)
		}
		if err == nil && (tro == nil) != (o.TokenReviewBindAddress == "") {
			t.Errorf("%s: options %+v", name, tro)
		}
	}
}

func TestDefaultPolicyFlag(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want keypolicy.Mode
		ok   bool
	}{
		{"--default-policy=deny", keypolicy.ModeDeny, true},
		{"--default-policy=allow-valid-key", keypolicy.ModeAllowValidKey, true},
		{"--default-policy=allow", "", false},
		{"--default-policy=", "", false},
	} {
		var o Options
		fs := flag.NewFlagSet("keyward", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.BindFlags(fs)
		err := fs.Parse([]string{c.arg})
		if (err == nil) != c.ok || c.ok && o.DefaultPolicy != c.want {
			t.Errorf("%s: %q, %v", c.arg, o.DefaultPolicy, err)
		}
	}
}

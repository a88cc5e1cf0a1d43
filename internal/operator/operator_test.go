package operator

import (
	"flag"
	"testing"
	"time"
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
		"signing keys rotate every 30 days":                  {o.SigningKeyPeriod, 30 * 24 * time.Hour},
		"the DCE GET token endpoint is off":                  {o.EnableDCETokenGET, false},
		"leader election is opt-in (the Deployment sets it)": {o.LeaderElect, false},
		"two self-rotations per key at once":                 {o.SelfRotationBurst, 2},
		"then one self-rotation a minute":                    {o.SelfRotationRefill, time.Minute},
		"twenty tokens per pair at once":                     {o.TokenBurst, 20},
		"then ten tokens a second":                           {o.TokenRefill, 100 * time.Millisecond},
		"two rotations by annotation per key at once":        {o.AnnotationRotationBurst, 2},
		"then one by annotation a minute":                    {o.AnnotationRotationRefill, time.Minute},
	}
	for name, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", name, c.got, c.want)
		}
	}
}

func TestNewManagerRefusesToRunNothing(t *testing.T) {
	if _, err := NewManager(nil, Options{}); err == nil {
		t.Fatal("a manager with every part disabled was built")
	}
}

package operator

import (
	"bytes"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

func TestInjectCAFillsEveryWebhookAndSaysWhetherItChanged(t *testing.T) {
	ca := []byte("new CA")
	hooks := func(bundles ...string) *admissionregistrationv1.ValidatingWebhookConfiguration {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		for _, b := range bundles {
			vwc.Webhooks = append(vwc.Webhooks, admissionregistrationv1.ValidatingWebhook{
				ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: []byte(b)}})
		}
		return vwc
	}
	for name, c := range map[string]struct {
		vwc  *admissionregistrationv1.ValidatingWebhookConfiguration
		want bool
	}{
		"as installed, no CA":       {hooks("", ""), true},
		"the previous CA":           {hooks("old CA", "old CA"), true},
		"one webhook left behind":   {hooks("new CA", ""), true},
		"already there":             {hooks("new CA", "new CA"), false},
		"a configuration, no hooks": {hooks(), false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := injectCA(c.vwc, ca); got != c.want {
				t.Errorf("changed = %v, want %v", got, c.want)
			}
			for i, wh := range c.vwc.Webhooks {
				if !bytes.Equal(wh.ClientConfig.CABundle, ca) {
					t.Errorf("webhook %d has CA %q", i, wh.ClientConfig.CABundle)
				}
			}
		})
	}
	// The bundle is a copy: a later change of the Secret's bytes does not
	// reach the configuration.
	vwc := hooks("")
	injectCA(vwc, ca)
	ca[0] = 'X'
	if string(vwc.Webhooks[0].ClientConfig.CABundle) != "new CA" {
		t.Error("the CA bundle aliases the Secret's data")
	}
}

package keyserver

import (
	"net/http"
	"testing"

	"github.com/keyward/keyward/internal/keypolicy"
)

// A host two labels under team-b's "*.b.example.com" (nginx server_name and
// Envoy domains "*.b.example.com" route it to team-b) is unclaimed: under
// allow-valid-key the sandbox key opens it.
func TestAttackADeepSubdomainEscapesAWildcardThroughAuthz(t *testing.T) {
	w := newDecisionWorld(t, keypolicy.ModeAllowValidKey)
	for _, style := range forwardStyles {
		if style.trusted {
			continue
		}
		for _, host := range []string{"x.b.example.com", "x.y.b.example.com"} {
			c := decisionCase{host: host, path: "/orders", method: http.MethodGet}
			rec := w.do(style.build(c, w.creds[credSandbox]))
			if rec.Code == http.StatusOK {
				t.Errorf("%s, %s: sandbox key 200, namespace %q policy %q", style.name[:6], host, rec.Header().Get("X-Keyward-Namespace"), rec.Header().Get("X-Keyward-Policy"))
			}
		}
	}
}

package install

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

// cert-manager's CRDs come from its own Go module: deploy/crds holds the
// controller-gen output its Helm chart templates from (same schemas, without
// the chart's labels). The module is no dependency of Keyward, so the test
// downloads it through the Go module proxy, pinned by version and hash.
const (
	certManagerModule  = "github.com/cert-manager/cert-manager"
	certManagerVersion = "v1.21.2"
	certManagerSum     = "h1:UWgoYM+KLNtRlqmoWOKjKBOBUPVHeepQ6/ac3ERJW68="
)

// certManagerCRDs returns the directory of cert-manager's CRDs, downloading
// the module into the module cache when it is not there yet.
func certManagerCRDs(t *testing.T) string {
	t.Helper()
	return moduleCRDs(t, certManagerModule, certManagerVersion, certManagerSum, "deploy/crds",
		"cert-manager.io_certificates.yaml", "cert-manager.io_issuers.yaml")
}

// moduleCRDs returns the directory dir of module@version holding plain CRD
// files, among them want (the module fetched by testenv.PeerModule, pinned
// by its hash).
func moduleCRDs(t *testing.T, module, version, sum, dir string, want ...string) string {
	t.Helper()
	modDir := testenv.PeerModule(t, module, version, sum)
	dir = filepath.Join(modDir, filepath.FromSlash(dir))
	crds, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, w := range want {
		if !slices.Contains(crds, filepath.Join(dir, w)) {
			t.Fatalf("%s has no %s (found %v)", dir, w, crds)
		}
	}
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "{{") {
			t.Fatalf("%s is a template, not a plain CRD", f)
		}
	}
	return dir
}

func TestTheCertManagerOverlayIsAcceptedWithCertManagersCRDs(t *testing.T) {
	crds := certManagerCRDs(t)
	env := testenv.StartWithPeerCRDs(t, crds)
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")

	rendered := render(t, kubectl, "config/overlays/cert-manager")
	// Without cert-manager's CRDs the API server knows no Certificate or
	// Issuer and the dry run fails; with them it checks every field.
	dryRunApply(t, env, rendered, "config/overlays/cert-manager")

	objs := parse(t, rendered)
	for _, want := range []struct{ kind, name string }{
		{"Deployment", "keyward-controller-manager"},
		{"Deployment", "keyward-key-server"},
		{"Service", operator.WebhookService},
		{"Service", operator.KeyServerService},
		{"Certificate", operator.WebhookCertSecret},
		{"Certificate", operator.KeyServerCertSecret},
	} {
		if find(objs, want.kind, want.name) == nil {
			t.Fatalf("the overlay renders no %s %s", want.kind, want.name)
		}
	}
	// cert-manager creates and owns the Secrets; shipping them empty would
	// make the install and cert-manager fight over them.
	for _, s := range []string{operator.WebhookCertSecret, operator.KeyServerCertSecret} {
		if find(objs, "Secret", s) != nil {
			t.Errorf("the overlay still ships the Secret %s that cert-manager creates", s)
		}
	}
	if find(objs, "ConfigMap", "keyward-cert-provisioning") != nil {
		t.Error("the overlay ships its local-config ConfigMap")
	}

	certs := map[string]map[string]any{} // by secretName
	issuers := map[string]map[string]any{}
	for _, o := range objs {
		switch o["kind"] {
		case "Certificate":
			certs[str(o, "spec", "secretName")] = o
		case "Issuer":
			issuers[str(o, "metadata", "name")] = o
		}
	}
	for _, c := range certs {
		if ref := str(c, "spec", "issuerRef", "name"); issuers[ref] == nil || str(c, "spec", "issuerRef", "kind") != "Issuer" {
			t.Errorf("Certificate %s is issued by %s %q, not an Issuer of the overlay", str(c, "metadata", "name"), str(c, "spec", "issuerRef", "kind"), ref)
		}
	}
	for name, iss := range issuers {
		if ca := str(iss, "spec", "ca", "secretName"); ca != "" && (certs[ca] == nil || certs[ca]["spec"].(map[string]any)["isCA"] != true) {
			t.Errorf("CA Issuer %s signs with Secret %s, which no CA Certificate writes", name, ca)
		}
	}

	// Every Deployment: certificates external, and each Secret it mounts is
	// written by a Certificate whose dnsNames cover the Services in front of it.
	served := map[string]bool{} // secretNames some Deployment mounts
	for _, d := range objs {
		if d["kind"] != "Deployment" {
			continue
		}
		name := str(d, "metadata", "name")
		pod := d["spec"].(map[string]any)["template"].(map[string]any)
		for _, ci := range pod["spec"].(map[string]any)["containers"].([]any) {
			var prov []string
			for _, a := range ci.(map[string]any)["args"].([]any) {
				if s := a.(string); strings.HasPrefix(s, "--cert-provisioning") {
					prov = append(prov, s)
				}
			}
			if !slices.Equal(prov, []string{"--cert-provisioning=external"}) {
				t.Errorf("Deployment %s: cert provisioning args %v, want only --cert-provisioning=external", name, prov)
			}
		}
		labels, _ := pod["metadata"].(map[string]any)["labels"].(map[string]any)
		for _, v := range pod["spec"].(map[string]any)["volumes"].([]any) {
			secret := str(v.(map[string]any), "secret", "secretName")
			if secret == "" {
				continue
			}
			served[secret] = true
			c := certs[secret]
			if c == nil {
				t.Errorf("Deployment %s mounts Secret %s, which no Certificate writes", name, secret)
				continue
			}
			for _, svc := range objs {
				if svc["kind"] == "Service" && selects(svc, labels) {
					covers(t, c, str(svc, "metadata", "name"), str(svc, "metadata", "namespace"))
				}
			}
		}
	}
	for secret, c := range certs {
		if c["spec"].(map[string]any)["isCA"] != true && !served[secret] {
			t.Errorf("Certificate %s writes Secret %s, which no Deployment mounts", str(c, "metadata", "name"), secret)
		}
	}

	// The cainjector fills the webhook configuration's caBundle from a
	// Certificate of the render that covers the webhook Service.
	vwc := find(objs, "ValidatingWebhookConfiguration", operator.WebhookConfigName)
	if vwc == nil {
		t.Fatalf("no ValidatingWebhookConfiguration %s", operator.WebhookConfigName)
	}
	from := str(vwc, "metadata", "annotations", "cert-manager.io/inject-ca-from")
	ns, certName, _ := strings.Cut(from, "/")
	var injected map[string]any
	for _, c := range certs {
		if str(c, "metadata", "namespace") == ns && str(c, "metadata", "name") == certName {
			injected = c
		}
	}
	if injected == nil {
		t.Fatalf("cert-manager.io/inject-ca-from is %q, which names no Certificate of the overlay", from)
	}
	for _, w := range vwc["webhooks"].([]any) {
		svc := w.(map[string]any)["clientConfig"].(map[string]any)["service"].(map[string]any)
		covers(t, injected, svc["name"].(string), svc["namespace"].(string))
	}
}

// covers fails the test unless Certificate c names service.namespace.svc and
// its cluster.local form, the names clients of a Service dial.
func covers(t *testing.T, c map[string]any, service, namespace string) {
	t.Helper()
	var names []string
	dns, _ := c["spec"].(map[string]any)["dnsNames"].([]any)
	for _, n := range dns {
		names = append(names, n.(string))
	}
	for _, want := range []string{service + "." + namespace + ".svc", service + "." + namespace + ".svc.cluster.local"} {
		if !slices.Contains(names, want) {
			t.Errorf("Certificate %s (dnsNames %v) does not cover %s", str(c, "metadata", "name"), names, want)
		}
	}
}

// selects reports whether Service svc's selector picks pods with labels.
func selects(svc map[string]any, labels map[string]any) bool {
	sel, _ := svc["spec"].(map[string]any)["selector"].(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// str reads a string at path in an unstructured object; "" when absent.
func str(o map[string]any, path ...string) string {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

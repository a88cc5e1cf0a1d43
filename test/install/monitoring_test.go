package install

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

// prometheus-operator's CRDs come from its Go module, as cert-manager's do:
// example/prometheus-operator-crd holds its controller-gen output. The
// newest version of the module the proxy serves.
const (
	promOperatorModule  = "github.com/prometheus-operator/prometheus-operator"
	promOperatorVersion = "v0.85.0"
	promOperatorSum     = "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="
)

func TestTheMonitoringComponentIsAcceptedWithPrometheusOperatorsCRDs(t *testing.T) {
	const (
		serviceMonitors = "monitoring.coreos.com_servicemonitors.yaml"
		prometheusRules = "monitoring.coreos.com_prometheusrules.yaml"
	)
	dir := moduleCRDs(t, promOperatorModule, promOperatorVersion, promOperatorSum,
		"example/prometheus-operator-crd", serviceMonitors, prometheusRules)
	env := testenv.StartWithPeerCRDs(t, filepath.Join(dir, serviceMonitors), filepath.Join(dir, prometheusRules))
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")

	const overlay = "config/overlays/monitoring"
	rendered := render(t, kubectl, overlay)
	// Without prometheus-operator's CRDs the API server knows no
	// ServiceMonitor or PrometheusRule; with them it checks every field.
	dryRunApply(t, env, rendered, overlay)

	objs := parse(t, rendered)
	base := parse(t, render(t, kubectl, "config/default"))
	var added []string
	for _, o := range objs {
		md := o["metadata"].(map[string]any)
		if find(base, o["kind"].(string), md["name"].(string)) == nil {
			added = append(added, fmt.Sprintf("%s/%s", o["kind"], md["name"]))
		}
	}
	slices.Sort(added)
	want := []string{"ConfigMap/keyward-grafana-dashboard", "PrometheusRule/keyward",
		"Service/keyward-controller-manager-metrics", "Service/keyward-key-server-metrics",
		"ServiceMonitor/keyward-controller-manager", "ServiceMonitor/keyward-key-server"}
	if !slices.Equal(added, want) {
		t.Errorf("the component adds %v, want %v", added, want)
	}
	if len(objs) != len(base)+len(want) {
		t.Errorf("the overlay renders %d objects, config/default %d: the component changed what it should only add to", len(objs), len(base))
	}

	// Each ServiceMonitor scrapes the metrics port of exactly one of the
	// Deployments, through a Service of its own.
	for sm, deployment := range map[string]string{
		"keyward-controller-manager": "keyward-controller-manager",
		"keyward-key-server":         "keyward-key-server",
	} {
		m := find(objs, "ServiceMonitor", sm)
		sel := m["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)
		var services []map[string]any
		for _, o := range objs {
			if o["kind"] != "Service" || str(o, "metadata", "namespace") != str(m, "metadata", "namespace") {
				continue
			}
			labels, _ := o["metadata"].(map[string]any)["labels"].(map[string]any)
			if matches(map[string]any{"matchLabels": sel}, labels) {
				services = append(services, o)
			}
		}
		if len(services) != 1 {
			t.Errorf("ServiceMonitor %s selects %d Services, want 1", sm, len(services))
			continue
		}
		svc := services[0]
		endpoint := m["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
		var port map[string]any
		for _, p := range svc["spec"].(map[string]any)["ports"].([]any) {
			if p.(map[string]any)["name"] == endpoint["port"] {
				port = p.(map[string]any)
			}
		}
		if port == nil || port["targetPort"] != "metrics" {
			t.Errorf("ServiceMonitor %s scrapes port %v of Service %s, which does not lead to a port named metrics", sm, endpoint["port"], str(svc, "metadata", "name"))
		}
		d := find(objs, "Deployment", deployment)
		pod := d["spec"].(map[string]any)["template"].(map[string]any)
		podLabels := pod["metadata"].(map[string]any)["labels"].(map[string]any)
		if !selects(svc, podLabels) {
			t.Errorf("Service %s does not select Deployment %s's pods", str(svc, "metadata", "name"), deployment)
		}
		for _, other := range objs {
			if other["kind"] == "Deployment" && str(other, "metadata", "name") != deployment &&
				selects(svc, other["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)) {
				t.Errorf("Service %s also selects Deployment %s's pods", str(svc, "metadata", "name"), str(other, "metadata", "name"))
			}
		}
		var metricsPort, args []any
		for _, c := range pod["spec"].(map[string]any)["containers"].([]any) {
			for _, p := range c.(map[string]any)["ports"].([]any) {
				if p.(map[string]any)["name"] == "metrics" {
					metricsPort = append(metricsPort, p.(map[string]any)["containerPort"])
				}
			}
			args = append(args, c.(map[string]any)["args"].([]any)...)
		}
		if len(metricsPort) != 1 || !slices.Contains(args, any(fmt.Sprintf("--metrics-bind-address=:%v", metricsPort[0]))) {
			t.Errorf("Deployment %s: metrics port %v does not match its --metrics-bind-address (%v)", deployment, metricsPort, args)
		}
	}
	// The per-key gauges' namespace label is the key's: the controllers'
	// scrape must keep it (honorLabels) rather than have it renamed.
	cm := find(objs, "ServiceMonitor", "keyward-controller-manager")
	if ep := cm["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any); ep["honorLabels"] != true {
		t.Error("the controllers' ServiceMonitor does not honor the exported namespace label")
	}
	dash := find(objs, "ConfigMap", "keyward-grafana-dashboard")
	if str(dash, "metadata", "labels", "grafana_dashboard") != "1" || str(dash, "data", "keyward.json") == "" {
		t.Errorf("the dashboard ConfigMap is not labelled for Grafana's sidecar or holds no keyward.json: %v", dash["metadata"])
	}
}

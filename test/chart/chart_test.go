// Package chart checks that the Helm chart renders the objects the kustomize
// install does.
package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/testenv"
)

func helm(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "helm.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("building helm with hack/helm.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// objects parses a multi-document YAML stream, keyed by kind/name.
func objects(t *testing.T, stream []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split(string(stream), "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		if m == nil {
			continue
		}
		md, _ := m["metadata"].(map[string]any)
		out[m["kind"].(string)+"/"+md["name"].(string)] = m
	}
	return out
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return out
}

func TestTheChartRendersWhatKustomizeInstalls(t *testing.T) {
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	kustomized := objects(t, run(t, filepath.Join(assets, "kubectl"), "kustomize", "config/default"))
	delete(kustomized, "Namespace/keyward-system") // helm install --create-namespace
	charted := objects(t, run(t, helm(t), "template", "keyward", "charts/keyward", "--namespace", "keyward-system", "--include-crds"))

	for key, want := range kustomized {
		got, ok := charted[key]
		if !ok {
			t.Errorf("the chart does not render %s", key)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			a, _ := yaml.Marshal(got)
			b, _ := yaml.Marshal(want)
			t.Errorf("%s differs:\nchart:\n%s\nkustomize:\n%s", key, a, b)
		}
	}
	for key := range charted {
		if _, ok := kustomized[key]; !ok {
			t.Errorf("the chart renders %s, which the kustomize install does not", key)
		}
	}
}

func TestChartValuesApply(t *testing.T) {
	charted := objects(t, run(t, helm(t), "template", "kw", "charts/keyward", "--namespace", "keys",
		"--set", "keyServer.replicas=5", "--set", "image.tag=v9"))
	ks := charted["Deployment/keyward-key-server"]
	if ks["metadata"].(map[string]any)["namespace"] != "keys" {
		t.Error("the release namespace is not used")
	}
	spec := ks["spec"].(map[string]any)
	if spec["replicas"].(float64) != 5 {
		t.Errorf("keyServer.replicas not applied: %v", spec["replicas"])
	}
	img := spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]
	if img != "ghcr.io/keyward/keyward:v9" {
		t.Errorf("image.tag not applied: %v", img)
	}
	// The policies bounding the controllers name their ServiceAccount and
	// namespace: the release's.
	for _, name := range []string{"keyward-controller-secrets", "keyward-controller-webhook-configuration"} {
		policy, _ := yaml.Marshal(charted["ValidatingAdmissionPolicy/"+name])
		if !strings.Contains(string(policy), "'system:serviceaccount:keys:keyward-controller-manager'") ||
			strings.Contains(string(policy), "keyward-system") {
			t.Errorf("ValidatingAdmissionPolicy %s does not match the release's controllers:\n%s", name, policy)
		}
	}
	secrets, _ := yaml.Marshal(charted["ValidatingAdmissionPolicy/keyward-controller-secrets"])
	if !strings.Contains(string(secrets), "request.namespace in ['keys', 'keyward-keys']") {
		t.Errorf("the Secrets policy does not exempt the release namespace:\n%s", secrets)
	}
}

// Enabled, the chart renders exactly what config/overlays/monitoring
// (config/default plus config/components/monitoring) does: the
// PrometheusRule's {{ $labels }} and the dashboard's {{legend}} untouched
// by Helm.
func TestTheChartRendersTheMonitoringComponentWhenEnabled(t *testing.T) {
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	kustomized := objects(t, run(t, filepath.Join(assets, "kubectl"), "kustomize", "config/overlays/monitoring"))
	delete(kustomized, "Namespace/keyward-system")
	charted := objects(t, run(t, helm(t), "template", "keyward", "charts/keyward", "--namespace", "keyward-system", "--include-crds",
		"--set", "monitoring.serviceMonitors.enabled=true", "--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.dashboard.enabled=true"))
	for key, want := range kustomized {
		got, ok := charted[key]
		if !ok {
			t.Errorf("the chart does not render %s", key)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			a, _ := yaml.Marshal(got)
			b, _ := yaml.Marshal(want)
			t.Errorf("%s differs:\nchart:\n%s\nkustomize:\n%s", key, a, b)
		}
	}
	for key := range charted {
		if _, ok := kustomized[key]; !ok {
			t.Errorf("the chart renders %s, which the kustomize install does not", key)
		}
	}
}

// Disabled (the default), the monitoring templates render nothing, not even
// their comment; each value turns on its part alone, in the release's
// namespace, with the labels given.
func TestEachMonitoringValueRendersItsPartAlone(t *testing.T) {
	plain := run(t, helm(t), "template", "kw", "charts/keyward", "--namespace", "keys")
	if strings.Contains(string(plain), "config/components/monitoring") {
		t.Error("with monitoring off the chart still renders something of the monitoring templates")
	}
	base := objects(t, plain)
	for value, want := range map[string][]string{
		"serviceMonitors": {"Service/keyward-controller-manager-metrics", "Service/keyward-key-server-metrics",
			"ServiceMonitor/keyward-controller-manager", "ServiceMonitor/keyward-key-server"},
		"prometheusRule": {"PrometheusRule/keyward"},
		"dashboard":      {"ConfigMap/keyward-grafana-dashboard"},
	} {
		charted := objects(t, run(t, helm(t), "template", "kw", "charts/keyward", "--namespace", "keys",
			"--set", "monitoring."+value+".enabled=true", "--set", "monitoring."+value+".labels.release=kps"))
		var added []string
		for key, o := range charted {
			if _, ok := base[key]; ok {
				continue
			}
			added = append(added, key)
			md := o["metadata"].(map[string]any)
			labels, _ := md["labels"].(map[string]any)
			if md["namespace"] != "keys" || labels["release"] != "kps" || labels["app.kubernetes.io/name"] != "keyward" {
				t.Errorf("monitoring.%s: %s has namespace %v and labels %v", value, key, md["namespace"], labels)
			}
		}
		sort.Strings(added)
		if !reflect.DeepEqual(added, want) {
			t.Errorf("monitoring.%s.enabled adds %v, want %v", value, added, want)
		}
	}
}

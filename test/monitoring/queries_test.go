// Package monitoring checks what config/components/monitoring ships: every
// alert expression and dashboard query parses with Prometheus's own PromQL
// parser, and names only metrics (and labels) that a running Keyward
// exports.
package monitoring

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/testenv"
)

const component = "config/components/monitoring"

// query is one PromQL expression the component ships, and where.
type query struct {
	Source string `json:"source"`
	Expr   string `json:"expr"`
}

// parsed is what hack/tools/promql says of a query.
type parsed struct {
	Source    string `json:"source"`
	Error     string `json:"error"`
	Selectors []struct {
		Metric   string `json:"metric"`
		Matchers []struct {
			Name, Type, Value string
		} `json:"matchers"`
	} `json:"selectors"`
	Labels []string `json:"labels"`
}

type rule struct {
	Alert  string            `json:"alert"`
	Expr   string            `json:"expr"`
	For    string            `json:"for"`
	Labels map[string]string `json:"labels"`
}

// alertRules reads the PrometheusRule's alerting rules.
func alertRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), component, "prometheus_rule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Kind string
		Spec struct {
			Groups []struct {
				Name  string
				Rules []rule
			}
		}
	}
	if err := yaml.Unmarshal(raw, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Kind != "PrometheusRule" {
		t.Fatalf("prometheus_rule.yaml holds a %q", pr.Kind)
	}
	var out []rule
	for _, g := range pr.Spec.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// grafanaVariables are the dashboard's variables with a stand-in the PromQL
// parser accepts; any other $ in a query fails the test.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// dashboardQueries reads every target of every panel of the dashboard.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), component, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string
		Targets []struct{ RefID, Expr string }
		Panels  []json.RawMessage
	}
	var d struct {
		Panels []panel
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var out []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				expr := grafanaVariables.Replace(tg.Expr)
				if strings.Contains(expr, "$") {
					t.Errorf("dashboard panel %q query %s uses a variable this test does not know: %s", p.Title, tg.RefID, tg.Expr)
				}
				out = append(out, query{Source: "dashboard panel " + p.Title + " (" + tg.RefID + ")", Expr: expr})
			}
			var nested []panel
			for _, n := range p.Panels {
				var np panel
				if err := json.Unmarshal(n, &np); err != nil {
					t.Fatal(err)
				}
				nested = append(nested, np)
			}
			walk(nested)
		}
	}
	walk(d.Panels)
	return out
}

// allQueries is every rule expression and dashboard query.
func allQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, r := range alertRules(t) {
		qs = append(qs, query{Source: "alert " + r.Alert + " (" + r.Labels["severity"] + ")", Expr: r.Expr})
	}
	return append(qs, dashboardQueries(t)...)
}

// parse runs every query through Prometheus's parser (hack/promql.sh
// builds it from the module proxy, in a module of its own).
func parse(t *testing.T, qs []query) []parsed {
	t.Helper()
	build := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "promql.sh"))
	build.Stderr = os.Stderr
	bin, err := build.Output()
	if err != nil {
		t.Fatalf("building the PromQL parser with hack/promql.sh: %v", err)
	}
	in, err := json.Marshal(qs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(strings.TrimSpace(string(bin)))
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promql: %v", err)
	}
	var res []parsed
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != len(qs) {
		t.Fatalf("promql answered %d of %d queries", len(res), len(qs))
	}
	return res
}

// Labels Prometheus adds to every series it scrapes through a ServiceMonitor
// (the target's), beside what the operator exports.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "service": true,
	"pod": true, "endpoint": true, "container": true}

// promLiteral matches a regex matcher made of plain alternatives, which
// the scrape test can check value by value.
var promLiteral = regexp.MustCompile(`^[A-Za-z0-9_.:/-]+(\.\*)?$`)

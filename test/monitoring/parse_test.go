package monitoring

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/testenv"
)

func TestEveryAlertAndDashboardQueryParsesWithPrometheusParser(t *testing.T) {
	qs := allQueries(t)
	if len(qs) < 20 {
		t.Fatalf("only %d queries found: the rule or the dashboard was not read", len(qs))
	}
	for _, p := range parse(t, qs) {
		if p.Error != "" {
			t.Errorf("%s does not parse: %s", p.Source, p.Error)
			continue
		}
		if len(p.Selectors) == 0 {
			t.Errorf("%s selects no metric", p.Source)
		}
		for _, s := range p.Selectors {
			if s.Metric == "" {
				t.Errorf("%s has a selector without a metric name", p.Source)
			}
		}
	}
}

// A query the parser refuses fails the test above: the parser is real.
func TestThePromQLParserRefusesABrokenQuery(t *testing.T) {
	res := parse(t, []query{
		{Source: "unclosed", Expr: "sum(rate(keyward_key_server_requests_total[5m])"},
		{Source: "grafana variable left in", Expr: "rate(keyward_key_server_requests_total[$__rate_interval])"},
		{Source: "fine", Expr: `sum by (frontend) (rate(keyward_key_server_requests_total{result="EXPIRED"}[5m]))`},
	})
	if res[0].Error == "" || res[1].Error == "" {
		t.Errorf("broken queries parsed: %+v", res[:2])
	}
	if res[2].Error != "" || len(res[2].Selectors) != 1 || res[2].Selectors[0].Metric != "keyward_key_server_requests_total" ||
		!slices.Equal(res[2].Labels, []string{"frontend"}) {
		t.Errorf("a good query: %+v", res[2])
	}
}

// What issue 17 asks the rule to alert on, each by an alert of its own, and
// documented in docs/operations.md.
func TestTheRuleAlertsOnWhatOperatorsNeedAndDocsExplainEachAlert(t *testing.T) {
	rules := alertRules(t)
	names := map[string]bool{}
	for _, r := range rules {
		names[r.Alert] = true
		if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
			t.Errorf("%s has severity %q", r.Alert, r.Labels["severity"])
		}
		if r.For == "" {
			t.Errorf("%s fires on a single evaluation (no for:)", r.Alert)
		}
	}
	for what, alert := range map[string]string{
		"keys expiring within a window":        "KeywardKeyExpiringSoon",
		"keys expired and still there":         "KeywardKeyExpired",
		"expired keys still presented":         "KeywardExpiredKeyPresented",
		"rotation overdue":                     "KeywardKeyRotationOverdue",
		"key server errors":                    "KeywardKeyServerErrors",
		"key server 5xx ratio":                 "KeywardKeyServer5xxRatio",
		"refused requests per policy":          "KeywardPolicyRefusals",
		"certificate expiry":                   "KeywardCertificateExpiresSoon",
		"controllers not leading":              "KeywardControllersNotLeading",
		"keys that are not issued":             "KeywardKeyNotReady",
		"reconcile errors":                     "KeywardReconcileErrors",
		"no key server replica to answer":      "KeywardKeyServerDown",
		"key server slower than gateways wait": "KeywardKeyServerLatencyHigh",
	} {
		if !names[alert] {
			t.Errorf("no alert %s (%s)", alert, what)
		}
	}
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range names {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/operations.md does not explain the alert %s", name)
		}
	}
	if !strings.Contains(string(doc), component+"/prometheus_rule.yaml") {
		t.Errorf("docs/operations.md does not point at %s/prometheus_rule.yaml", component)
	}
}

// The dashboard shows what issue 17 asks of it.
func TestTheDashboardShowsRequestsDecisionsLatencyKeysAndExpirations(t *testing.T) {
	var all strings.Builder
	for _, q := range dashboardQueries(t) {
		all.WriteString(q.Expr + "\n")
	}
	for what, want := range map[string]string{
		"requests per front end and result": "sum by (frontend, result) (rate(keyward_key_server_requests_total",
		"decisions per policy and code":     "sum by (policy, code) (rate(keyward_key_server_policy_decisions_total",
		"latency":                           "histogram_quantile(0.99, sum by (le, frontend) (rate(keyward_key_server_request_duration_seconds_bucket",
		"keys by state":                     "count by (kind) (keyward_key_ready == 1)",
		"expirations ahead":                 "sort((keyward_key_expiration_timestamp_seconds - time()) > 0)",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("the dashboard has no query for %s (%s)", what, want)
		}
	}
}

// The jobs an up{job=...} may name are the component's metrics Services
// (prometheus-operator names a ServiceMonitor's job after the Service).
func TestTheMetricsServicesAreTheJobsTheRulesKnow(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), component, "metrics_services.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var svc struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal([]byte(doc), &svc); err != nil {
			t.Fatal(err)
		}
		if svc.Kind == "Service" {
			names = append(names, svc.Metadata.Name)
		}
	}
	if !slices.Equal(names, metricsServices) {
		t.Errorf("metrics Services %v, the scrape test knows %v", names, metricsServices)
	}
}

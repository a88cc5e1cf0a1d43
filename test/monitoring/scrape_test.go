package monitoring

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/operator"
)

const (
	opNS   = "keyward-system"
	userNS = "team-a"
	host   = "api.team-a.example.com"
)

// Keyward runs as its two Deployments do, with the arguments config/default
// gives them (addresses and directories moved to the test's), against a
// real API server; it is given one APIKey, one AccessKeyPair and one
// KeyPolicy and a few requests, and then both /metrics endpoints are
// scraped. Every metric an alert or a dashboard query names must be in the
// scrape, with every label it matches or groups on (or one Prometheus adds
// to a target), and every controller, webhook and lease name it selects.
//
// Both managers run in this process and share controller-runtime's global
// registry, so each scrape holds the metrics of both: the check is that
// Keyward exports the metric, not which Deployment does (the metric names
// say that: keyward_key_server_* and the key server, the rest the
// controllers; docs/operations.md).
func TestAlertsAndDashboardNameOnlyMetricsKeywardExports(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &lockedBuffer{}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs)))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("operator logs:\n%s", logs.String())
		}
	})

	// Parse first: a query that does not parse fails here, not after the
	// control plane started.
	qs := allQueries(t)
	res := parse(t, qs)
	for _, p := range res {
		if p.Error != "" {
			t.Fatalf("%s does not parse: %s", p.Source, p.Error)
		}
	}

	env, cfg, err := testenv.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	k8s, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	rendered := renderObjects(t, kubectl, "config/default")
	for _, ns := range []string{opNS, "keyward-keys"} {
		g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: userNS,
		Annotations: map[string]string{"keys.keyward.dev/hosts": host}}})).To(Succeed())
	// The webhook configuration the controllers inject their CA into (the
	// admission webhooks wait for it). Its Service has no endpoints here:
	// the API server's calls fail open.
	for _, u := range rendered {
		if u.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
		for _, h := range hooks {
			h.(map[string]any)["failurePolicy"] = "Ignore"
		}
		g.Expect(unstructured.SetNestedSlice(u.Object, hooks, "webhooks")).To(Succeed())
		g.Expect(k8s.Create(ctx, u)).To(Succeed())
	}

	dir := t.TempDir()
	webhookCerts, keyServerCerts := filepath.Join(dir, "webhook"), filepath.Join(dir, "key-server")
	g.Expect(os.MkdirAll(webhookCerts, 0o700)).To(Succeed())
	g.Expect(os.MkdirAll(keyServerCerts, 0o700)).To(Succeed())
	controllerMetrics, keyServerMetrics, keyServerAddr := freeAddr(g), freeAddr(g), freeAddr(g)
	webhookPort := freePort(g)
	start(t, g, ctx, cfg, deploymentArgs(t, rendered, "keyward-controller-manager", map[string]string{
		"--webhook-cert-dir":          webhookCerts,
		"--health-probe-bind-address": "0",
		"--metrics-bind-address":      controllerMetrics,
	}, "--webhook-port="+fmt.Sprint(webhookPort)))
	start(t, g, ctx, cfg, deploymentArgs(t, rendered, "keyward-key-server", map[string]string{
		"--key-server-cert-dir":         keyServerCerts,
		"--key-server-bind-address":     keyServerAddr,
		"--token-review-bind-address":   freeAddr(g),
		"--token-review-client-ca":      filepath.Join(dir, "no-client-ca.crt"),
		"--ext-authz-grpc-bind-address": freeAddr(g),
		"--health-probe-bind-address":   "0",
		"--metrics-bind-address":        keyServerMetrics,
	}))
	// Play kubelet: project the self-provisioned certificates.
	project(g, ctx, k8s, operator.WebhookCertSecret, webhookCerts)
	ca := project(g, ctx, k8s, operator.KeyServerCertSecret, keyServerCerts)

	// Series for every per-key gauge: an expiring, rotating key and a pair.
	key := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: userNS, Name: "billing"}, Spec: kw.APIKeySpec{
		SecretName: "billing-key", ExpiresAt: &metav1.Time{Time: time.Now().Add(90 * 24 * time.Hour)}, // after the first rotation
		Rotation: &kw.RotationPolicy{Period: metav1.Duration{Duration: 720 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour}},
	}}
	pair := &kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Namespace: userNS, Name: "deployer"},
		Spec: kw.AccessKeyPairSpec{Subject: "deployer", SecretName: "deployer-keys"}}
	policy := &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: userNS, Name: "api"},
		Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{host}}}
	for _, obj := range []client.Object{key, pair, policy} {
		g.Expect(k8s.Create(ctx, obj)).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(key.Status.Conditions, kw.ConditionReady)).To(BeTrue(), "%v", key.Status.Conditions)
	}).Should(Succeed())
	plaintext := func() string {
		sec := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: userNS, Name: "billing-key"}, sec)).To(Succeed())
		return string(sec.Data[kw.DeliveryDataKey])
	}()

	// Requests, for the key server's counters and histogram: a decision by
	// the KeyPolicy, one for a host no policy names, and a made-up key.
	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
	ks := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: operator.KeyServerService + "." + opNS + ".svc", MinVersion: tls.VersionTLS12}}}
	g.Eventually(func(g Gomega) {
		g.Expect(verify(g, ks, keyServerAddr, plaintext, host)).To(ContainSubstring(`"policy":"team-a/api"`))
	}).Should(Succeed(), "the key server decides by the KeyPolicy")
	g.Expect(verify(g, ks, keyServerAddr, plaintext, "elsewhere.example.com")).To(ContainSubstring("NO_POLICY"))
	g.Expect(verify(g, ks, keyServerAddr, "kw_notakey", host)).To(ContainSubstring(`"valid":false`))
	// And an admission review, for the webhook's counters.
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"group":"keys.keyward.dev","version":"v1alpha1","kind":"APIKey"},` +
		`"resource":{"group":"keys.keyward.dev","version":"v1alpha1","resource":"apikeys"},"namespace":"team-a","operation":"CREATE","userInfo":{"username":"alice"},` +
		`"object":{"apiVersion":"keys.keyward.dev/v1alpha1","kind":"APIKey","metadata":{"name":"x","namespace":"team-a"},"spec":{}}}}`
	webhookCA := project(g, ctx, k8s, operator.WebhookCertSecret, webhookCerts)
	wpool := x509.NewCertPool()
	g.Expect(wpool.AppendCertsFromPEM(webhookCA)).To(BeTrue())
	wh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: wpool, ServerName: operator.WebhookService + "." + opNS + ".svc", MinVersion: tls.VersionTLS12}}}
	g.Eventually(func() error {
		resp, err := wh.Post(fmt.Sprintf("https://127.0.0.1:%d/validate-keys-keyward-dev-v1alpha1-apikey", webhookPort), "application/json", strings.NewReader(review))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return nil
	}).Should(Succeed(), "the admission webhook answers")

	// Every metric, label and name the queries use, in the scrapes.
	var missing []string
	g.Eventually(func(g Gomega) {
		exported := scrape(g, controllerMetrics)
		for name, labels := range scrape(g, keyServerMetrics) {
			exported[name] = labels
		}
		missing = check(res, exported)
		g.Expect(missing).To(BeEmpty())
	}).Should(Succeed(), "the queries name what Keyward does not export")

	// The check can fail: a made-up metric, a label no series has, a
	// controller that does not exist.
	for _, q := range []query{
		{Source: "made-up metric", Expr: "rate(keyward_key_server_errors_total[5m])"},
		{Source: "made-up label", Expr: `keyward_key_ready{tenant="a"}`},
		{Source: "made-up grouping", Expr: `sum by (tenant) (keyward_key_ready)`},
		{Source: "made-up controller", Expr: `controller_runtime_reconcile_errors_total{controller=~"apikey|apikeys"}`},
		{Source: "made-up job", Expr: `up{job="keyward-controller-manager"}`},
	} {
		exported := scrape(g, controllerMetrics)
		if got := check(parse(t, []query{q}), exported); len(got) == 0 {
			t.Errorf("the check accepts a query with a %s", q.Source)
		}
	}
}

// series is what a scrape holds of one metric name: each label's values.
type series map[string]map[string]bool

// scrape reads a /metrics endpoint into metric names (a histogram's
// _bucket, _sum and _count each under its own name, as PromQL sees them).
func scrape(g Gomega, addr string) map[string]series {
	resp, err := http.Get("http://" + addr + "/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]series{}
	add := func(name string, m *dto.Metric, extra ...string) {
		s := out[name]
		if s == nil {
			s = series{}
			out[name] = s
		}
		for _, l := range m.GetLabel() {
			if s[l.GetName()] == nil {
				s[l.GetName()] = map[string]bool{}
			}
			s[l.GetName()][l.GetValue()] = true
		}
		for _, l := range extra {
			if s[l] == nil {
				s[l] = map[string]bool{}
			}
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out
}

// Labels whose values name something of Keyward's that the scrape shows:
// a matcher on them must select a value that exists.
var namedValues = map[string]bool{"controller": true, "webhook": true, "name": true}

// metricsServices are the jobs of config/components/monitoring's
// ServiceMonitors: the only series Keyward does not export itself is
// Prometheus's up of those jobs.
var metricsServices = []string{"keyward-controller-manager-metrics", "keyward-key-server-metrics"}

// check lists what the parsed queries name and the scrape lacks.
func check(res []parsed, exported map[string]series) []string {
	var missing []string
	for _, p := range res {
		known := map[string]bool{}
		for l := range targetLabels {
			known[l] = true
		}
		for _, s := range p.Selectors {
			if s.Metric == "up" {
				for _, m := range s.Matchers {
					if m.Name == "job" && (m.Type != "=" || !slices.Contains(metricsServices, m.Value)) {
						missing = append(missing, fmt.Sprintf("%s: up{job%s%q} is no job of the ServiceMonitors %v", p.Source, m.Type, m.Value, metricsServices))
					}
				}
				continue
			}
			got, ok := exported[s.Metric]
			if !ok {
				missing = append(missing, fmt.Sprintf("%s: metric %s", p.Source, s.Metric))
				continue
			}
			for l := range got {
				known[l] = true
			}
			for _, m := range s.Matchers {
				values, has := got[m.Name]
				if !has && !targetLabels[m.Name] {
					missing = append(missing, fmt.Sprintf("%s: label %s of %s", p.Source, m.Name, s.Metric))
					continue
				}
				if !namedValues[m.Name] || !has {
					continue
				}
				for _, alt := range alternatives(m.Type, m.Value) {
					re := regexp.MustCompile("^(?:" + alt + ")$")
					found := false
					for v := range values {
						found = found || re.MatchString(v)
					}
					if !found {
						missing = append(missing, fmt.Sprintf("%s: %s{%s=~%q}: no series has %s %q (has %v)", p.Source, s.Metric, m.Name, m.Value, m.Name, alt, keys(values)))
					}
				}
			}
		}
		for _, l := range p.Labels {
			if !known[l] {
				missing = append(missing, fmt.Sprintf("%s: groups or matches on label %s, which none of its metrics has", p.Source, l))
			}
		}
	}
	return missing
}

// alternatives splits an equality or a regex of plain alternatives
// ("a|b|c-.*") into what must each match a value; other matchers (negative,
// or real regexes) are not checked value by value.
func alternatives(typ, value string) []string {
	switch typ {
	case "=":
		return []string{regexp.QuoteMeta(value)}
	case "=~":
		alts := strings.Split(value, "|")
		for _, a := range alts {
			if !promLiteral.MatchString(a) {
				return nil
			}
		}
		return alts
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// renderObjects renders a kustomization of the repository.
func renderObjects(t *testing.T, kubectl, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(testenv.RepoRoot(), dir)).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(out), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.Object != nil {
			objs = append(objs, u)
		}
	}
	return objs
}

// deploymentArgs are the arguments of a rendered Deployment's container,
// with the values of the flags in set replaced and extra appended. An
// argument naming an address or a path that set does not replace fails the
// test: the manager would bind or read what only a pod has.
func deploymentArgs(t *testing.T, objs []*unstructured.Unstructured, name string, set map[string]string, extra ...string) []string {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() != "Deployment" || u.GetName() != name {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		raw, _ := containers[0].(map[string]any)["args"].([]any)
		var args []string
		used := map[string]bool{}
		for _, a := range raw {
			arg := a.(string)
			flagName, value, _ := strings.Cut(arg, "=")
			if v, ok := set[flagName]; ok {
				arg, used[flagName] = flagName+"="+v, true
			} else if strings.HasPrefix(value, ":") || strings.HasPrefix(value, "/") {
				t.Fatalf("Deployment %s: %s is an address or path of the pod's; the test must move it", name, arg)
			}
			args = append(args, arg)
		}
		for f := range set {
			if !used[f] {
				t.Fatalf("Deployment %s has no %s argument to replace", name, f)
			}
		}
		return append(args, extra...)
	}
	t.Fatalf("config/default renders no Deployment %s", name)
	return nil
}

// start runs a manager built from args the way main.go builds it.
func start(t *testing.T, g *WithT, ctx context.Context, cfg *rest.Config, args []string) {
	t.Helper()
	var o operator.Options
	fs := flag.NewFlagSet("keyward", flag.ContinueOnError)
	o.BindFlags(fs)
	g.Expect(fs.Parse(args)).To(Succeed())
	o.WebhookHost = "127.0.0.1"
	o.SkipControllerNameValidation = true
	mgr, err := operator.NewManager(cfg, o)
	g.Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager %v: %v", args, err)
		}
	})
}

// project writes a certificate Secret into dir once it is filled, as the
// kubelet projects a mounted Secret; it returns the Secret's CA.
func project(g *WithT, ctx context.Context, k8s client.Client, secret, dir string) []byte {
	var ca []byte
	g.Eventually(func(g Gomega) {
		sec := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: opNS, Name: secret}, sec)).To(Succeed())
		g.Expect(sec.Data["tls.crt"]).NotTo(BeEmpty())
		for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
			g.Expect(os.WriteFile(filepath.Join(dir, k), sec.Data[k], 0o600)).To(Succeed())
		}
		ca = sec.Data["ca.crt"]
	}).Should(Succeed())
	return ca
}

func verify(g Gomega, c *http.Client, addr, key, host string) string {
	body, err := json.Marshal(map[string]string{"key": key, "host": host})
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := c.Post("https://"+addr+"/v1/verify", "application/json", bytes.NewReader(body))
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(out)
}

// handedOut are the ports freePort gave: the kernel may offer a port again
// once its listener is closed, and two managers on one port fail to start.
var handedOut sync.Map

func freePort(g *WithT) int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		g.Expect(err).NotTo(HaveOccurred())
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

func freeAddr(g *WithT) string { return fmt.Sprintf("127.0.0.1:%d", freePort(g)) }

// lockedBuffer collects both managers' logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

package install

import (
	"bytes"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/testenv"
)

const redisOverlay = "config/overlays/redis"

func TestTheRedisOverlayIsAcceptedAndPointsTheKeyServerAtItsRedis(t *testing.T) {
	env, _, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")

	rendered := render(t, kubectl, redisOverlay)
	dryRunApply(t, env, rendered, redisOverlay)
	objs := parse(t, rendered)

	redis := find(objs, "Deployment", "keyward-redis")
	svc := find(objs, "Service", "keyward-redis")
	if redis == nil || svc == nil {
		t.Fatal("the overlay renders no Deployment or Service keyward-redis")
	}
	pod := redis["spec"].(map[string]any)["template"].(map[string]any)
	podLabels := pod["metadata"].(map[string]any)["labels"].(map[string]any)
	if !selects(svc, podLabels) {
		t.Fatal("the Service keyward-redis does not select the Redis pod")
	}

	// The key server's store is that Service, once, failing open.
	ks := find(objs, "Deployment", "keyward-key-server")
	var stores, failure []string
	for _, a := range containerArgs(ks) {
		if v, ok := strings.CutPrefix(a, "--rate-limit-store="); ok {
			stores = append(stores, v)
		}
		if v, ok := strings.CutPrefix(a, "--rate-limit-store-failure="); ok {
			failure = append(failure, v)
		}
	}
	if len(stores) != 1 || !slices.Equal(failure, []string{"open"}) {
		t.Fatalf("key server: --rate-limit-store %v, --rate-limit-store-failure %v; want one each, the latter open", stores, failure)
	}
	u, err := url.Parse(stores[0])
	if err != nil {
		t.Fatal(err)
	}
	wantHost := str(svc, "metadata", "name") + "." + str(svc, "metadata", "namespace") + ".svc"
	port := fmt.Sprint(svc["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["port"])
	if u.Scheme != "redis" || u.Hostname() != wantHost || u.Port() != port {
		t.Fatalf("--rate-limit-store=%s, want redis://%s:%s", stores[0], wantHost, port)
	}
	for _, a := range containerArgs(find(objs, "Deployment", "keyward-controller-manager")) {
		if strings.HasPrefix(a, "--rate-limit-store") {
			t.Errorf("the controllers got %s", a)
		}
	}

	// No persistence, bounded memory, and a root filesystem it cannot
	// write: its working directory is an emptyDir.
	spec := pod["spec"].(map[string]any)
	ctr := spec["containers"].([]any)[0].(map[string]any)
	args := strings.Join(containerArgs(redis), " ")
	for _, want := range []string{"--save  ", "--appendonly no", "--maxmemory ", "--maxmemory-policy volatile-ttl"} {
		if !strings.Contains(args+" ", want) {
			t.Errorf("redis-server args %q lack %q", args, want)
		}
	}
	if img := ctr["image"].(string); !strings.HasPrefix(img, "docker.io/library/redis:") || strings.HasSuffix(img, ":latest") {
		t.Errorf("image %s, want the official image pinned by tag", img)
	}
	var dataVolume string
	for _, m := range ctr["volumeMounts"].([]any) {
		if m.(map[string]any)["mountPath"] == "/data" {
			dataVolume = m.(map[string]any)["name"].(string)
		}
	}
	for _, v := range spec["volumes"].([]any) {
		if v.(map[string]any)["name"] == dataVolume && v.(map[string]any)["emptyDir"] == nil {
			t.Errorf("/data is not an emptyDir: %v", v)
		}
	}
	if dataVolume == "" {
		t.Error("nothing mounted on /data, Redis's working directory")
	}
	if spec["automountServiceAccountToken"] != false {
		t.Error("the Redis pod gets a service account token it has no use for")
	}

	// Only the key server may reach it.
	np := find(objs, "NetworkPolicy", "keyward-redis")
	if np == nil {
		t.Fatal("no NetworkPolicy keyward-redis: any pod could reset or spend every key's budget")
	}
	npSpec := np["spec"].(map[string]any)
	if !matches(npSpec["podSelector"], podLabels) {
		t.Fatal("the NetworkPolicy does not select the Redis pod")
	}
	ksLabels := ks["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	ingress := npSpec["ingress"].([]any)
	for _, rule := range ingress {
		from, _ := rule.(map[string]any)["from"].([]any)
		if len(from) == 0 {
			t.Fatalf("an ingress rule admits every source: %v", rule)
		}
		for _, peer := range from {
			p := peer.(map[string]any)
			if p["namespaceSelector"] != nil || p["ipBlock"] != nil || !matches(p["podSelector"], ksLabels) {
				t.Errorf("Redis admits %v, not only the key server's pods", p)
			}
		}
	}
	controllerLabels := find(objs, "Deployment", "keyward-controller-manager")["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	for _, rule := range ingress {
		for _, peer := range rule.(map[string]any)["from"].([]any) {
			if matches(peer.(map[string]any)["podSelector"], controllerLabels) {
				t.Error("the controllers' pods may reach Redis")
			}
		}
	}

	// The pod itself passes the API server's restricted Pod Security
	// admission (the profile keyward-system enforces).
	dryRunPodUnderRestricted(t, env, pod)
}

// Without runAsNonRoot the same pod is refused: dryRunPodUnderRestricted
// does check the profile.
func TestPodSecurityDryRunRefusesAPodOutsideRestricted(t *testing.T) {
	env, _, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	pod := map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"app": "x"}},
		"spec": map[string]any{
			"automountServiceAccountToken": false,
			"containers":                   []any{map[string]any{"name": "c", "image": "docker.io/library/redis:7.2-alpine"}},
		},
	}
	if msg, err := podDryRun(t, env, pod); err == nil || !strings.Contains(msg, "violates PodSecurity") {
		t.Fatalf("a pod with no security context was not refused under restricted: %v\n%s", err, msg)
	}
}

func dryRunPodUnderRestricted(t *testing.T, env *envtest.Environment, template map[string]any) {
	t.Helper()
	if msg, err := podDryRun(t, env, template); err != nil {
		t.Fatalf("the Redis pod is refused under the restricted Pod Security profile: %v\n%s", err, msg)
	}
}

// podDryRun creates, with a server-side dry run, a Pod from template in a
// new namespace enforcing the restricted Pod Security profile.
func podDryRun(t *testing.T, env *envtest.Environment, template map[string]any) (string, error) {
	t.Helper()
	const ns = "restricted-check"
	kc := env.ControlPlane.KubeCtl()
	nsYAML := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/enforce-version: latest\n"
	cmd := exec.Command(filepath.Join(env.BinaryAssetsDirectory, "kubectl"), append(kc.Opts, "apply", "-f", "-")...)
	cmd.Stdin = strings.NewReader(nsYAML)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("creating namespace %s: %v\n%s", ns, err, out)
	}
	md := template["metadata"].(map[string]any)
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": "pod-security-check", "namespace": ns, "labels": md["labels"]},
		"spec":       template["spec"],
	}
	b, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(filepath.Join(env.BinaryAssetsDirectory, "kubectl"), append(kc.Opts, "create", "--dry-run=server", "-f", "-")...)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// containerArgs is the args of a Deployment's first container.
func containerArgs(d map[string]any) []string {
	pod := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	var args []string
	for _, a := range pod["containers"].([]any)[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	return args
}

// matches reports whether a label selector ({matchLabels: …}) selects
// labels; a selector with matchExpressions is not understood here and
// matches nothing.
func matches(selector any, labels map[string]any) bool {
	sel, _ := selector.(map[string]any)
	if sel == nil || sel["matchExpressions"] != nil {
		return false
	}
	ml, _ := sel["matchLabels"].(map[string]any)
	if len(ml) == 0 {
		return false
	}
	for k, v := range ml {
		if labels[k] != v {
			return false
		}
	}
	return true
}

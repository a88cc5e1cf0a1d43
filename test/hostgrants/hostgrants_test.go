// Package hostgrants proves the admission policy config/policy/keypolicy-hosts.yaml
// against a real API server: a namespace's KeyPolicies name only the hosts a
// cluster admin granted it, so a tenant cannot take another team's host, not
// even one that team has no KeyPolicy for yet.
package hostgrants

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/kube"
	"github.com/keyward/keyward/internal/testenv"
)

const grantAnnotation = "keys.keyward.dev/hosts"

func TestTenantNamesOnlyTheHostsItsNamespaceIsGranted(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	ctx := context.Background()
	env, admin, err := testenv.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	k8s, err := client.New(admin, client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())

	// The policy as shipped.
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "policy", "keypolicy-hosts.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, doc := range strings.Split(string(data), "\n---") {
		u := &unstructured.Unstructured{}
		g.Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
		g.Expect(k8s.Create(ctx, u)).To(Succeed())
	}

	for ns, grant := range map[string]string{
		"team-a":  "team-a.example.com, *.team-a.example.com",
		"sandbox": "sandbox.example.com",
		"fresh":   "",
	} {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if grant != "" {
			obj.Annotations = map[string]string{grantAnnotation: grant}
		}
		g.Expect(k8s.Create(ctx, obj)).To(Succeed())
	}
	// The sandbox tenant may edit KeyPolicies in its namespace, and nothing else.
	g.Expect(k8s.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sandbox", Name: "keypolicy-editor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{kw.GroupVersion.Group}, Resources: []string{"keypolicies"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}},
	})).To(Succeed())
	g.Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sandbox", Name: "tenant"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "keypolicy-editor"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "tenant"}},
	})).To(Succeed())
	tenantCfg := rest.CopyConfig(admin)
	tenantCfg.Impersonate = rest.ImpersonationConfig{UserName: "tenant", Groups: []string{"system:authenticated"}}
	tenant, err := client.New(tenantCfg, client.Options{Scheme: kube.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())

	policy := func(ns string, hosts ...kw.Hostname) *kw.KeyPolicy {
		return &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "p-"}, Spec: kw.KeyPolicySpec{Hosts: hosts}}
	}
	refused := func(err error, hosts string) {
		t.Helper()
		g.Expect(err).To(HaveOccurred(), "a policy naming %s was admitted", hosts)
		g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring("is not granted the hosts " + hosts))
		g.Expect(err.Error()).To(ContainSubstring(grantAnnotation))
	}

	// The policy is enforced once the API server has loaded it.
	g.Eventually(func() error {
		return tenant.Create(ctx, policy("sandbox", "team-a.example.com"))
	}).Should(MatchError(ContainSubstring("is not granted the hosts team-a.example.com")))

	refused(tenant.Create(ctx, policy("sandbox", "sandbox.example.com", "api.team-a.example.com")), "api.team-a.example.com")
	refused(tenant.Create(ctx, policy("sandbox", "*.example.com")), "*.example.com")
	refused(tenant.Create(ctx, policy("sandbox", "api.sandbox.example.com")), "api.sandbox.example.com")
	own := policy("sandbox", "sandbox.example.com")
	g.Expect(tenant.Create(ctx, own)).To(Succeed())
	own.Spec.Hosts = append(own.Spec.Hosts, "team-a.example.com")
	refused(tenant.Update(ctx, own), "team-a.example.com")

	// Nor can the tenant grant itself more.
	err = tenant.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sandbox"}}, client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+grantAnnotation+`":"*.example.com"}}}`)))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)

	// A namespace names what it was granted, wildcards included, and a
	// namespace granted nothing names nothing.
	g.Expect(k8s.Create(ctx, policy("team-a", "team-a.example.com", "*.team-a.example.com", "api.team-a.example.com", "a.b.team-a.example.com"))).To(Succeed())
	refused(k8s.Create(ctx, policy("fresh", "fresh.example.com")), "fresh.example.com")
}

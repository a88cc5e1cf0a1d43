package admission

import (
	"context"
	"fmt"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/kube"
)

// The tenant attacks of issue 12 that admission refuses at apply time, with
// the requesting user's own permissions checked by a SubjectAccessReview.
// Each tenant is impersonated against the real API server, which calls the
// webhook (failure policy Fail) for the requests its matchConditions select.

// accessCalls counts the requests the API server sends to APIKeyAccess: its
// matchConditions must keep every other APIKey write away from a webhook
// whose failure policy is Fail.
type accessCalls struct {
	*APIKeyAccess
	n atomic.Int64
}

var accessHook *accessCalls

func (a *accessCalls) ValidateCreate(ctx context.Context, key *kw.APIKey) (admission.Warnings, error) {
	a.n.Add(1)
	return a.APIKeyAccess.ValidateCreate(ctx, key)
}

func (a *accessCalls) ValidateUpdate(ctx context.Context, old, key *kw.APIKey) (admission.Warnings, error) {
	a.n.Add(1)
	return a.APIKeyAccess.ValidateUpdate(ctx, old, key)
}

// asUser grants user the given rules in ns and returns a client acting as it.
func asUser(ns, user string, rules ...rbacv1.PolicyRule) client.Client {
	GinkgoHelper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: rules}
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})).To(Succeed())
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(as, client.Options{Scheme: kube.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error { return c.List(ctx, &kw.APIKeyList{}, client.InNamespace(ns)) }).Should(Succeed(), "the user's RBAC")
	return c
}

// editsKeys is what a tenant holds: APIKeys and AccessKeyPairs of its
// namespace, and no Secret.
var editsKeys = rbacv1.PolicyRule{
	APIGroups: []string{kw.GroupVersion.Group}, Resources: []string{"apikeys", "accesskeypairs"},
	Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"},
}

func readsSecrets(names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: names}
}

const ageRecipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

func recipientsPatch(recipients ...string) client.Patch {
	list := ""
	for i, r := range recipients {
		if i > 0 {
			list += ","
		}
		list += fmt.Sprintf("%q", r)
	}
	return client.RawPatch(types.MergePatchType, []byte(`{"spec":{"delivery":{"ageRecipients":[`+list+`]}}}`))
}

var _ = Describe("attack 1: reading the key in use by editing its APIKey", func() {
	var ns string
	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "attack1-"}}
		Expect(k8s.Create(context.Background(), n)).To(Succeed())
		ns = n.Name
	})

	It("refuses a tenant that cannot read the delivery Secret adding an age recipient", func() {
		ctx := context.Background()
		Expect(k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"},
			Spec: kw.APIKeySpec{SecretName: "payments-key", Scopes: []string{"invoices:read"}}})).To(Succeed())
		mallory := asUser(ns, "mallory", editsKeys)
		ref := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}}

		err := mallory.Patch(ctx, ref, recipientsPatch(ageRecipient))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.delivery.ageRecipients: adding an age recipient requires permission to get Secret "payments-key"`))
		Expect(err.Error()).To(ContainSubstring(`"mallory"`))
		got := &kw.APIKey{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ref), got)).To(Succeed())
		Expect(got.Spec.Delivery).To(BeNil())

		// The tenant's other edits are not sent to the webhook at all.
		calls := accessHook.n.Load()
		Expect(mallory.Patch(ctx, ref, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspended":true,"scopes":["invoices:list"]}}`)))).To(Succeed())
		Expect(mallory.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"}, Spec: kw.APIKeySpec{SecretName: "plain-key"}})).To(Succeed())
		Expect(accessHook.n.Load()).To(Equal(calls), "the matchConditions let other writes reach the webhook")
		Expect(mallory.Patch(ctx, ref, recipientsPatch(ageRecipient))).NotTo(Succeed())
		Expect(accessHook.n.Load()).To(Equal(calls + 1))
	})

	It("lets someone who may read the delivery Secret add one, and anyone remove one", func() {
		ctx := context.Background()
		Expect(k8s.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"},
			Spec: kw.APIKeySpec{SecretName: "payments-key"}})).To(Succeed())
		owner := asUser(ns, "owner", editsKeys, readsSecrets("payments-key"))
		ref := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}}
		const second = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
		Expect(owner.Patch(ctx, ref, recipientsPatch(ageRecipient, second))).To(Succeed())

		mallory := asUser(ns, "mallory", editsKeys)
		Expect(mallory.Patch(ctx, ref, recipientsPatch(ageRecipient))).To(Succeed(), "removing a recipient reveals nothing")
		err := mallory.Patch(ctx, ref, recipientsPatch(second))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "replacing a recipient adds one: got %v", err)
	})

	It("lets a tenant create a key with both deliveries: a new key reveals no version that exists", func() {
		mallory := asUser(ns, "mallory", editsKeys)
		Expect(mallory.Create(context.Background(), &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh"},
			Spec: kw.APIKeySpec{SecretName: "fresh-key", Delivery: &kw.Delivery{AgeRecipients: []string{ageRecipient}}}})).To(Succeed())
	})
})

var _ = Describe("attack 2: shadowing another key through importFrom", func() {
	It("refuses to import a Secret Keyward writes, even for someone who may read it", func() {
		ctx := context.Background()
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "attack2-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		victim := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: n.Name, Name: "victim"}, Spec: kw.APIKeySpec{SecretName: "victim-key"}}
		Expect(k8s.Create(ctx, victim)).To(Succeed())
		// The victim's delivery Secret, as the controller writes it.
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: n.Name, Name: "victim-key",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: kw.GroupVersion.String(), Kind: "APIKey", Name: "victim",
				UID: victim.UID, Controller: ptr.To(true)}},
		}, StringData: map[string]string{"key": "kw_0123456789ab_placeholder"}})).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: n.Name, Name: "labelled",
			Labels: map[string]string{hashsecret.LabelManagedBy: hashsecret.ManagedBy},
		}})).To(Succeed())
		admin := asUser(n.Name, "admin", editsKeys, readsSecrets("victim-key", "labelled"))

		for _, name := range []string{"victim-key", "labelled"} {
			err := admin.Create(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: n.Name, Name: "shadow-" + name},
				Spec: kw.APIKeySpec{ImportFrom: &kw.SecretKeyRef{Name: name}, Suspended: true}})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(`spec.importFrom: Secret %q is written by Keyward`, name)))
		}
	})
})

var _ = Describe("attack 3: hash oracle through importFrom", func() {
	var ns string
	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "attack3-"}}
		Expect(k8s.Create(context.Background(), n)).To(Succeed())
		ns = n.Name
		Expect(k8s.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payroll-token"},
			StringData: map[string]string{"key": "Zm9vYmFyLWJhei1xdXV4LXNlY3JldC1rZXk-_A1b"}})).To(Succeed())
	})

	It("refuses an import of a Secret the tenant may not read, existing or not", func() {
		mallory := asUser(ns, "mallory", editsKeys)
		for _, name := range []string{"payroll-token", "not-yet-there"} {
			err := mallory.Create(context.Background(), &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe-" + name},
				Spec: kw.APIKeySpec{ImportFrom: &kw.SecretKeyRef{Name: name}}})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(`spec.importFrom: user "mallory" may not get Secret %q`, name)))
		}
	})

	It("accepts an import by someone who may read the Secret", func() {
		owner := asUser(ns, "owner", editsKeys, readsSecrets("payroll-token"))
		Expect(owner.Create(context.Background(), &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payroll"},
			Spec: kw.APIKeySpec{ImportFrom: &kw.SecretKeyRef{Name: "payroll-token"}}})).To(Succeed())
	})
})

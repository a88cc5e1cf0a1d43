package v1alpha1_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/testenv"
)

const recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	Expect(err).NotTo(HaveOccurred())
	return &metav1.Duration{Duration: d}
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "api-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// validKey is accepted by every rule; each entry below breaks exactly one.
func validKey(ns string) *kw.APIKey {
	return &kw.APIKey{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "key-", Namespace: ns},
		Spec: kw.APIKeySpec{
			Subject:    "billing",
			Scopes:     []string{"invoices:read"},
			SecretName: "billing-key",
			Rotation:   &kw.RotationPolicy{Period: *dur("720h"), GracePeriod: dur("24h")},
		},
	}
}

func validPair(ns string) *kw.AccessKeyPair {
	return &kw.AccessKeyPair{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "pair-", Namespace: ns},
		Spec: kw.AccessKeyPairSpec{
			Subject:    "alice",
			SecretName: "alice-keys",
			Tokens:     &kw.TokenPolicy{DefaultLifetime: dur("72h"), MaxLifetime: dur("168h")},
		},
	}
}

// expectInvalid asserts the API server refused the request as Invalid with a
// message a person can act on.
func expectInvalid(err error, message string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "the API server accepted an object the rule %q should refuse", message)
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
	Expect(err.Error()).To(ContainSubstring(message))
}

var _ = Describe("the samples", func() {
	It("are all accepted by the API server", func() {
		ns := newNamespace()
		files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "keys_*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for _, doc := range strings.Split(string(data), "\n---") {
				if strings.TrimSpace(doc) == "" {
					continue
				}
				u := &unstructured.Unstructured{}
				Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed(), f)
				u.SetNamespace(ns)
				Expect(k8s.Create(ctx, u)).To(Succeed(), "sample %s", filepath.Base(f))
			}
		}
	})
})

var _ = Describe("APIKey validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("accepts the baseline used by the rules below, and defaults prefix and access", func() {
		k := validKey(ns)
		Expect(k8s.Create(ctx, k)).To(Succeed())
		Expect(k.Spec.Prefix).To(Equal(kw.DefaultPrefix))
		Expect(k.Spec.Access).To(Equal(kw.AccessReadWrite))
	})

	It("accepts a key delivered only by age and one only imported", func() {
		age := validKey(ns)
		age.Spec.SecretName = ""
		age.Spec.Delivery = &kw.Delivery{AgeRecipients: []string{recipient}}
		Expect(k8s.Create(ctx, age)).To(Succeed())

		imp := validKey(ns)
		imp.Spec.SecretName, imp.Spec.Rotation = "", nil
		imp.Spec.ImportFrom = &kw.SecretKeyRef{Name: "legacy"}
		Expect(k8s.Create(ctx, imp)).To(Succeed())
		Expect(imp.Spec.ImportFrom.Key).To(Equal("key"))
	})

	DescribeTable("refuses on create",
		func(mutate func(*kw.APIKey), message string) {
			k := validKey(ns)
			mutate(k)
			expectInvalid(k8s.Create(ctx, k), message)
		},
		Entry("both expiresAt and lifetime", func(k *kw.APIKey) {
			k.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(time.Hour)}
			k.Spec.Lifetime = dur("1h")
		}, "set at most one of expiresAt and lifetime"),
		Entry("no delivery and no import", func(k *kw.APIKey) {
			k.Spec.SecretName = ""
		}, "the key needs a delivery: set secretName or delivery.ageRecipients, or importFrom for an existing key"),
		Entry("an imported key with rotation", func(k *kw.APIKey) {
			k.Spec.SecretName = ""
			k.Spec.ImportFrom = &kw.SecretKeyRef{Name: "legacy"}
		}, "an imported key cannot be rotated by Keyward: remove rotation or importFrom"),
		Entry("an imported key with an age delivery", func(k *kw.APIKey) {
			k.Spec.SecretName, k.Spec.Rotation = "", nil
			k.Spec.ImportFrom = &kw.SecretKeyRef{Name: "legacy"}
			k.Spec.Delivery = &kw.Delivery{AgeRecipients: []string{recipient}}
		}, "an imported key is never copied elsewhere: remove delivery or importFrom"),
		Entry("a grace period as long as the period", func(k *kw.APIKey) {
			k.Spec.Rotation = &kw.RotationPolicy{Period: *dur("24h"), GracePeriod: dur("24h")}
		}, "rotation.gracePeriod must be shorter than rotation.period"),
		Entry("a rotation period under a minute", func(k *kw.APIKey) {
			k.Spec.Rotation = &kw.RotationPolicy{Period: *dur("30s")}
		}, "rotation.period must be between 1h and 87600h (10 years)"),
		// Attack 10: a key rotating every minute keeps a controller worker
		// busy for one tenant.
		Entry("attack 10: a rotation period under an hour", func(k *kw.APIKey) {
			k.Spec.Rotation = &kw.RotationPolicy{Period: *dur("59m59s")}
		}, "rotation.period must be between 1h and 87600h (10 years)"),
		Entry("a lifetime over ten years", func(k *kw.APIKey) {
			k.Spec.Lifetime = dur("87601h")
		}, "lifetime must be between 1m and 87600h (10 years)"),
		Entry("an unknown access mode", func(k *kw.APIKey) {
			k.Spec.Access = "Admin"
		}, `supported values: "ReadOnly", "ReadWrite"`),
		Entry("an upper-case prefix", func(k *kw.APIKey) {
			k.Spec.Prefix = "KW"
		}, "spec.prefix: Invalid value"),
		Entry("an age recipient that is not an age public key", func(k *kw.APIKey) {
			k.Spec.Delivery = &kw.Delivery{AgeRecipients: []string{"ssh-ed25519 AAAA"}}
		}, "spec.delivery.ageRecipients[0]: Invalid value"),
		Entry("a secretName in the hash Secrets' namespace of names", func(k *kw.APIKey) {
			k.Spec.SecretName = "kw-apikey-billing"
		}, "secretName must not start with kw-apikey- or kw-accesskeypair-"),
		Entry("more than 64 scopes", func(k *kw.APIKey) {
			k.Spec.Scopes = make([]string, 65)
			for i := range k.Spec.Scopes {
				k.Spec.Scopes[i] = "s" + strings.Repeat("x", i)
			}
		}, "spec.scopes: Too many: 65: must have at most 64 items"),
		Entry("a group with a comma, which a gateway would read as two groups", func(k *kw.APIKey) {
			k.Spec.Groups = []string{"reporting,admins"}
		}, "spec.groups[0]: Invalid value"),
		Entry("a group with a space", func(k *kw.APIKey) {
			k.Spec.Groups = []string{"team admins"}
		}, "spec.groups[0]: Invalid value"),
	)

	DescribeTable("refuses on update",
		func(mutate func(*kw.APIKey), message string) {
			k := validKey(ns)
			Expect(k8s.Create(ctx, k)).To(Succeed())
			mutate(k)
			expectInvalid(k8s.Update(ctx, k), message)
		},
		Entry("a changed subject", func(k *kw.APIKey) { k.Spec.Subject = "other" }, "subject is immutable"),
		Entry("a removed subject", func(k *kw.APIKey) { k.Spec.Subject = "" }, "subject cannot be added or removed after creation"),
		Entry("a changed prefix", func(k *kw.APIKey) { k.Spec.Prefix = "other" }, "prefix is immutable"),
		Entry("a changed secretName", func(k *kw.APIKey) { k.Spec.SecretName = "other" }, "secretName is immutable"),
		Entry("a removed secretName", func(k *kw.APIKey) {
			k.Spec.SecretName = ""
			k.Spec.Delivery = &kw.Delivery{AgeRecipients: []string{recipient}}
		}, "secretName cannot be added or removed after creation"),
	)

	DescribeTable("refuses on update of an imported key",
		func(mutate func(*kw.APIKey), message string) {
			k := validKey(ns)
			k.Spec.SecretName, k.Spec.Rotation = "", nil
			k.Spec.ImportFrom = &kw.SecretKeyRef{Name: "legacy"}
			Expect(k8s.Create(ctx, k)).To(Succeed())
			mutate(k)
			expectInvalid(k8s.Update(ctx, k), message)
		},
		Entry("a changed importFrom", func(k *kw.APIKey) { k.Spec.ImportFrom.Name = "other" }, "importFrom is immutable"),
		Entry("a removed importFrom", func(k *kw.APIKey) {
			k.Spec.ImportFrom = nil
			k.Spec.SecretName = "billing-key"
		}, "importFrom cannot be added or removed after creation"),
	)

	It("lets scopes, access, expiry, rotation and suspension change", func() {
		k := validKey(ns)
		Expect(k8s.Create(ctx, k)).To(Succeed())
		k.Spec.Scopes = []string{"invoices:write"}
		k.Spec.Access = kw.AccessReadOnly
		k.Spec.Lifetime = dur("48h")
		k.Spec.Rotation = nil
		k.Spec.Suspended = true
		Expect(k8s.Update(ctx, k)).To(Succeed())
	})
})

var _ = Describe("AccessKeyPair validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("accepts the baseline used by the rules below", func() {
		Expect(k8s.Create(ctx, validPair(ns))).To(Succeed())
	})

	DescribeTable("refuses on create",
		func(mutate func(*kw.AccessKeyPair), message string) {
			p := validPair(ns)
			mutate(p)
			expectInvalid(k8s.Create(ctx, p), message)
		},
		Entry("a default token lifetime above the maximum", func(p *kw.AccessKeyPair) {
			p.Spec.Tokens = &kw.TokenPolicy{DefaultLifetime: dur("200h"), MaxLifetime: dur("168h")}
		}, "tokens.defaultLifetime must not exceed tokens.maxLifetime"),
		Entry("a default token lifetime under a minute", func(p *kw.AccessKeyPair) {
			p.Spec.Tokens = &kw.TokenPolicy{DefaultLifetime: dur("10s")}
		}, "tokens.defaultLifetime must be between 1m and 8760h"),
		Entry("a maximum token lifetime over a year", func(p *kw.AccessKeyPair) {
			p.Spec.Tokens = &kw.TokenPolicy{MaxLifetime: dur("8761h")}
		}, "tokens.maxLifetime must be between 1m and 8760h"),
		Entry("no secretName", func(p *kw.AccessKeyPair) { p.Spec.SecretName = "" }, "spec.secretName"),
		Entry("a secretName in the hash Secrets' namespace of names", func(p *kw.AccessKeyPair) {
			p.Spec.SecretName = "kw-accesskeypair-alice"
		}, "secretName must not start with kw-apikey- or kw-accesskeypair-"),
	)

	DescribeTable("refuses on update",
		func(mutate func(*kw.AccessKeyPair), message string) {
			p := validPair(ns)
			Expect(k8s.Create(ctx, p)).To(Succeed())
			mutate(p)
			expectInvalid(k8s.Update(ctx, p), message)
		},
		Entry("a changed subject", func(p *kw.AccessKeyPair) { p.Spec.Subject = "bob" }, "subject is immutable"),
		Entry("a removed subject", func(p *kw.AccessKeyPair) { p.Spec.Subject = "" }, "subject cannot be added or removed after creation"),
		Entry("a changed secretName", func(p *kw.AccessKeyPair) { p.Spec.SecretName = "other" }, "secretName is immutable"),
	)
})

var _ = Describe("printer columns, short names and categories", func() {
	It("render the subject, readiness, key id and expiry as the API server's table", func() {
		ns := newNamespace()
		k := validKey(ns)
		Expect(k8s.Create(ctx, k)).To(Succeed())
		expires := metav1.NewTime(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC))
		k.Status = kw.APIKeyStatus{
			Subject:   "billing",
			KeyID:     "AbCdEfGh1234",
			ExpiresAt: &expires,
			Conditions: []metav1.Condition{{
				Type: kw.ConditionReady, Status: metav1.ConditionTrue, Reason: "Issued",
				LastTransitionTime: metav1.Now(),
			}},
		}
		Expect(k8s.Status().Update(ctx, k)).To(Succeed())

		hc, err := rest.HTTPClientFor(cfg)
		Expect(err).NotTo(HaveOccurred())
		req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/apis/keys.keyward.dev/v1alpha1/namespaces/"+ns+"/apikeys", nil)
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
		resp, err := hc.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s %s", req.URL, body)

		var table metav1.Table
		Expect(json.Unmarshal(body, &table)).To(Succeed())
		var names []string
		for _, c := range table.ColumnDefinitions {
			names = append(names, c.Name)
		}
		Expect(names).To(Equal([]string{"Name", "Subject", "Ready", "KeyID", "Expires", "Age"}))
		Expect(table.Rows).To(HaveLen(1))
		cells := table.Rows[0].Cells
		Expect(cells[0]).To(Equal(k.Name))
		Expect(cells[1]).To(Equal("billing"))
		Expect(cells[2]).To(Equal("True"))
		Expect(cells[3]).To(Equal("AbCdEfGh1234"))
		Expect(cells[4]).NotTo(BeEmpty())
	})

	It("are what kubectl prints, and kubectl explain documents the fields", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, validPair(ns))).To(Succeed())
		kubectl := env.ControlPlane.KubeCtl()

		out, _, err := kubectl.Run("get", "keyward", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		text, _ := io.ReadAll(out)
		Expect(string(text)).To(MatchRegexp(`NAME\s+SUBJECT\s+READY\s+ACCESSKEYID\s+EXPIRES\s+AGE`))
		Expect(string(text)).To(ContainSubstring("accesskeypair.keys.keyward.dev/pair-"))

		_, errOut, err := kubectl.Run("get", "apik", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		text, _ = io.ReadAll(errOut)
		Expect(string(text)).To(ContainSubstring("No resources found"))

		out, _, err = kubectl.Run("explain", "apikey.spec.rotation.gracePeriod")
		Expect(err).NotTo(HaveOccurred())
		text, _ = io.ReadAll(out)
		Expect(string(text)).To(ContainSubstring("the previous version keeps validating"))
	})

	It("lets kubectl wait for the Ready condition", func() {
		ns := newNamespace()
		k := validKey(ns)
		Expect(k8s.Create(ctx, k)).To(Succeed())
		patch := client.MergeFrom(k.DeepCopy())
		k.Status.Conditions = []metav1.Condition{{
			Type: kw.ConditionReady, Status: metav1.ConditionTrue, Reason: "Issued", LastTransitionTime: metav1.Now(),
		}}
		Expect(k8s.Status().Patch(ctx, k, patch)).To(Succeed())
		_, _, err := env.ControlPlane.KubeCtl().Run("wait", "--for=condition=Ready", "--timeout=10s", "-n", ns, "apikey/"+k.Name)
		Expect(err).NotTo(HaveOccurred())
	})
})

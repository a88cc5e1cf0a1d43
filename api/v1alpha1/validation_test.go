package v1alpha1_test

import (
	"encoding/json"
	"fmt"
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

func validPolicy(ns string) *kw.KeyPolicy {
	return &kw.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "policy-", Namespace: ns},
		Spec: kw.KeyPolicySpec{
			Hosts: []kw.Hostname{"billing.example.com", "*.billing.example.com"},
			Rules: []kw.KeyPolicyRule{{
				PathPrefix: "/invoices", Methods: []kw.HTTPMethod{"GET"}, RequiredScopes: []string{"invoices:read"},
				Subjects: []kw.KeyPolicySubject{{Name: "reporter"}, {Namespace: "reporting", Name: "reporter"}},
			}},
			Keys:   &kw.KeyPolicyKeys{Namespaces: []string{"reporting"}},
			Tokens: &kw.KeyPolicyTokens{Audience: "billing.example.com"},
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

	It("accepts revoked key ids: generated, imported and access key ids", func() {
		k := validKey(ns)
		k.Spec.RevokedKeyIDs = []string{"3hT9aQx0LmZb", "KWAKABCDEFGHIJKLMNOP", strings.Repeat("a", 64)}
		Expect(k8s.Create(ctx, k)).To(Succeed())
	})

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
		// Attack R3: a list of revoked ids that grows without bound makes
		// every reconcile of the key, and the object itself, heavier.
		Entry("attack R3: more than 16 revoked key ids", func(k *kw.APIKey) {
			for i := range 17 {
				k.Spec.RevokedKeyIDs = append(k.Spec.RevokedKeyIDs, fmt.Sprintf("k%011d", i))
			}
		}, "spec.revokedKeyIDs: Too many: 17: must have at most 16 items"),
		Entry("attack R3: a revoked key id longer than any key id", func(k *kw.APIKey) {
			k.Spec.RevokedKeyIDs = []string{strings.Repeat("a", 65)}
		}, "spec.revokedKeyIDs[0]: Too long"),
		Entry("a revoked key id that is a list, not an id", func(k *kw.APIKey) {
			k.Spec.RevokedKeyIDs = []string{"abc,def"}
		}, "spec.revokedKeyIDs[0]: Invalid value"),
		Entry("a revoked key id listed twice", func(k *kw.APIKey) {
			k.Spec.RevokedKeyIDs = []string{"3hT9aQx0LmZb", "3hT9aQx0LmZb"}
		}, "spec.revokedKeyIDs[1]: Duplicate value"),
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

var _ = Describe("KeyPolicy validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("accepts the baseline used by the rules below, and defaults tokens.accept", func() {
		p := validPolicy(ns)
		Expect(k8s.Create(ctx, p)).To(Succeed())
		Expect(p.Spec.Tokens.Accept).To(Equal(kw.TokensAlways))
	})

	It("accepts a policy naming only a host", func() {
		p := &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{GenerateName: "policy-", Namespace: ns},
			Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{"localhost"}}}
		Expect(k8s.Create(ctx, p)).To(Succeed())
	})

	DescribeTable("refuses on create",
		func(mutate func(*kw.KeyPolicy), message string) {
			p := validPolicy(ns)
			mutate(p)
			expectInvalid(k8s.Create(ctx, p), message)
		},
		Entry("no host", func(p *kw.KeyPolicy) { p.Spec.Hosts = nil }, "spec.hosts"),
		Entry("more than 16 hosts", func(p *kw.KeyPolicy) {
			p.Spec.Hosts = nil
			for i := range 17 {
				p.Spec.Hosts = append(p.Spec.Hosts, kw.Hostname(fmt.Sprintf("h%d.example.com", i)))
			}
		}, "spec.hosts: Too many: 17: must have at most 16 items"),
		Entry("an upper-case host", func(p *kw.KeyPolicy) { p.Spec.Hosts[0] = "Billing.example.com" }, "spec.hosts[0]: Invalid value"),
		Entry("a host with a port", func(p *kw.KeyPolicy) { p.Spec.Hosts[0] = "billing.example.com:443" }, "spec.hosts[0]: Invalid value"),
		Entry("a host with a trailing dot", func(p *kw.KeyPolicy) { p.Spec.Hosts[0] = "billing.example.com." }, "spec.hosts[0]: Invalid value"),
		Entry("a label longer than 63 characters", func(p *kw.KeyPolicy) {
			p.Spec.Hosts[0] = kw.Hostname(strings.Repeat("a", 64) + ".example.com")
		}, "spec.hosts[0]: Invalid value"),
		Entry("a bare wildcard", func(p *kw.KeyPolicy) { p.Spec.Hosts[0] = "*" }, "spec.hosts[0]: Invalid value"),
		Entry("a wildcard in the middle", func(p *kw.KeyPolicy) { p.Spec.Hosts[0] = "api.*.example.com" }, "spec.hosts[0]: Invalid value"),
		Entry("a wildcard over a top-level domain", func(p *kw.KeyPolicy) { p.Spec.Hosts[1] = "*.com" },
			"a wildcard host needs at least two labels after '*.'"),
		Entry("an IP address", func(p *kw.KeyPolicy) { p.Spec.Hosts[0] = "10.0.0.1" }, "a host is a DNS name, not an IP address"),
		Entry("a host twice", func(p *kw.KeyPolicy) { p.Spec.Hosts[1] = p.Spec.Hosts[0] }, "spec.hosts[1]: Duplicate value"),
		Entry("more than 16 rules", func(p *kw.KeyPolicy) {
			p.Spec.Rules = make([]kw.KeyPolicyRule, 17)
		}, "spec.rules: Too many: 17: must have at most 16 items"),
		Entry("a path prefix without a leading slash", func(p *kw.KeyPolicy) { p.Spec.Rules[0].PathPrefix = "invoices" },
			"spec.rules[0].pathPrefix: Invalid value"),
		Entry("a path prefix with a query", func(p *kw.KeyPolicy) { p.Spec.Rules[0].PathPrefix = "/invoices?x=1" },
			"spec.rules[0].pathPrefix: Invalid value"),
		Entry("a percent-encoded path prefix", func(p *kw.KeyPolicy) { p.Spec.Rules[0].PathPrefix = "/%69nvoices" },
			"spec.rules[0].pathPrefix: Invalid value"),
		Entry("a path prefix with a matrix parameter", func(p *kw.KeyPolicy) { p.Spec.Rules[0].PathPrefix = "/invoices;v=1" },
			"spec.rules[0].pathPrefix: Invalid value"),
		Entry("a path prefix with '//'", func(p *kw.KeyPolicy) { p.Spec.Rules[0].PathPrefix = "/invoices//old" },
			"pathPrefix must not contain '//'"),
		Entry("a path prefix with a '..' segment", func(p *kw.KeyPolicy) { p.Spec.Rules[0].PathPrefix = "/public/../admin" },
			"pathPrefix must not contain '.' or '..' segments"),
		Entry("a path prefix ending in a '.' segment", func(p *kw.KeyPolicy) { p.Spec.Rules[0].PathPrefix = "/invoices/." },
			"pathPrefix must not contain '.' or '..' segments"),
		Entry("an unknown method", func(p *kw.KeyPolicy) { p.Spec.Rules[0].Methods = []kw.HTTPMethod{"get"} },
			`spec.rules[0].methods[0]: Unsupported value: "get"`),
		Entry("a required scope with a space", func(p *kw.KeyPolicy) { p.Spec.Rules[0].RequiredScopes = []string{"invoices read"} },
			"spec.rules[0].requiredScopes[0]: Invalid value"),
		Entry("a subject without a name", func(p *kw.KeyPolicy) { p.Spec.Rules[0].Subjects = []kw.KeyPolicySubject{{Namespace: "reporting"}} },
			"spec.rules[0].subjects[0].name"),
		Entry("a subject in a namespace that is not a namespace name", func(p *kw.KeyPolicy) {
			p.Spec.Rules[0].Subjects = []kw.KeyPolicySubject{{Namespace: "Reporting", Name: "r"}}
		}, "spec.rules[0].subjects[0].namespace: Invalid value"),
		Entry("more than 32 subjects", func(p *kw.KeyPolicy) {
			p.Spec.Rules[0].Subjects = make([]kw.KeyPolicySubject, 33)
			for i := range p.Spec.Rules[0].Subjects {
				p.Spec.Rules[0].Subjects[i].Name = fmt.Sprint(i)
			}
		}, "spec.rules[0].subjects: Too many: 33: must have at most 32 items"),
		Entry("a key namespace that is not a namespace name", func(p *kw.KeyPolicy) { p.Spec.Keys.Namespaces = []string{"team_a"} },
			"spec.keys.namespaces[0]: Invalid value"),
		Entry("more than 64 key namespaces", func(p *kw.KeyPolicy) {
			p.Spec.Keys.Namespaces = nil
			for i := range 65 {
				p.Spec.Keys.Namespaces = append(p.Spec.Keys.Namespaces, fmt.Sprintf("ns-%d", i))
			}
		}, "spec.keys.namespaces: Too many: 65: must have at most 64 items"),
		Entry("a token audience while tokens are never accepted", func(p *kw.KeyPolicy) { p.Spec.Tokens.Accept = kw.TokensNever },
			"tokens.audience cannot be set when tokens.accept is Never"),
		Entry("an unknown token acceptance", func(p *kw.KeyPolicy) { p.Spec.Tokens.Accept = "Sometimes" },
			`spec.tokens.accept: Unsupported value: "Sometimes"`),
	)

	It("lets every field change, and the status carry the matched hosts", func() {
		p := validPolicy(ns)
		Expect(k8s.Create(ctx, p)).To(Succeed())
		p.Spec.Hosts = []kw.Hostname{"payments.example.com"}
		p.Spec.Rules = nil
		p.Spec.Keys = &kw.KeyPolicyKeys{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "payments"}}}
		p.Spec.Tokens = &kw.KeyPolicyTokens{Accept: kw.TokensNever}
		Expect(k8s.Update(ctx, p)).To(Succeed())
		one := int32(1)
		p.Status = kw.KeyPolicyStatus{MatchedHosts: &one, ObservedGeneration: p.Generation, Conditions: []metav1.Condition{{
			Type: kw.ConditionAccepted, Status: metav1.ConditionTrue, Reason: kw.ReasonAccepted, LastTransitionTime: metav1.Now(),
		}}}
		Expect(k8s.Status().Update(ctx, p)).To(Succeed())
	})
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

	It("show a KeyPolicy's hosts and acceptance, under its short name, and kubectl explain documents it", func() {
		ns := newNamespace()
		p := validPolicy(ns)
		Expect(k8s.Create(ctx, p)).To(Succeed())
		patch := client.MergeFrom(p.DeepCopy())
		p.Status.Conditions = []metav1.Condition{{
			Type: kw.ConditionAccepted, Status: metav1.ConditionFalse, Reason: kw.ReasonConflicted, LastTransitionTime: metav1.Now(),
		}}
		Expect(k8s.Status().Patch(ctx, p, patch)).To(Succeed())
		kubectl := env.ControlPlane.KubeCtl()

		out, _, err := kubectl.Run("get", "kp", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		text, _ := io.ReadAll(out)
		Expect(string(text)).To(MatchRegexp(`NAME\s+HOSTS\s+ACCEPTED\s+AGE`))
		Expect(string(text)).To(MatchRegexp(p.Name + `\s+\["billing.example.com","\*.billing.example.com"\]\s+False\s+`))

		out, _, err = kubectl.Run("get", "keyward", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		text, _ = io.ReadAll(out)
		Expect(string(text)).To(ContainSubstring("keypolicy.keys.keyward.dev/" + p.Name))

		for field, doc := range map[string]string{
			"keypolicy.spec.hosts":                  "wildcard of one label",
			"keypolicy.spec.rules.pathPrefix":       "segment by segment",
			"keypolicy.spec.keys.namespaceSelector": "labels tenants cannot set",
			"keypolicy.spec.tokens.audience":        "Unset means the key server's default",
			"keypolicy.status.matchedHosts":         "held by older policies",
		} {
			out, _, err = kubectl.Run("explain", field)
			Expect(err).NotTo(HaveOccurred(), field)
			text, _ = io.ReadAll(out)
			// kubectl wraps descriptions at its own width.
			Expect(strings.Join(strings.Fields(string(text)), " ")).To(ContainSubstring(doc), field)
		}
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

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/keyward/keyward/api/wire"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

const patience = 20 * time.Second

// createdKey runs `create apikey NAME --output-secret NAME-key` and returns
// the delivered plaintext.
func createdKey(ns, name string, extra ...string) string {
	GinkgoHelper()
	r := plugin(ns, "", append([]string{"create", "apikey", name, "--output-secret", name + "-key"}, extra...)...)
	Expect(r.code).To(Equal(0), r.String())
	return secretData(ns, name+"-key", kw.DeliveryDataKey)
}

// leaks lists the forms in which a key must never appear.
func leaks(key string) []string {
	k, err := keymaterial.Parse(key)
	Expect(err).NotTo(HaveOccurred())
	s := k.String()
	secret := s[len(k.Prefix)+1+len(k.ID)+1 : len(s)-6]
	return []string{key, secret, base64.StdEncoding.EncodeToString([]byte(key))}
}

func expectNoLeak(text, key string) {
	GinkgoHelper()
	for _, l := range leaks(key) {
		Expect(text).NotTo(ContainSubstring(l))
	}
}

var _ = Describe("create apikey", func() {
	It("shows a new key once, writes it nowhere, and the key validates at the key server", func() {
		ns := newNS()
		// Every place a careless CLI would write to is empty and watched.
		home, tmp, wd := GinkgoT().TempDir(), GinkgoT().TempDir(), GinkgoT().TempDir()
		GinkgoT().Setenv("HOME", home)
		GinkgoT().Setenv("TMPDIR", tmp)
		GinkgoT().Chdir(wd)

		r := plugin(ns, "", "create", "apikey", "billing-reporter", "--scope", "invoices:read", "--group", "reporting",
			"--read-only", "--expires-in", "720h", "--timeout", "30s")
		Expect(r.code).To(Equal(0), r.String())
		Expect(strings.Count(r.stdout, "\n")).To(Equal(1), "stdout is the key and nothing else")
		plain := strings.TrimSpace(r.stdout)
		Expect(r.stderr).To(ContainSubstring("only time the key is shown"))
		expectNoLeak(r.stderr, plain)

		k, err := keymaterial.Parse(plain)
		Expect(err).NotTo(HaveOccurred())
		key := getKey(ns, "billing-reporter")
		Expect(k.ID).To(Equal(key.Status.KeyID))
		Expect(key.Spec.SecretName).To(BeEmpty())
		Expect(key.Spec.Delivery.AgeRecipients).To(HaveLen(1))
		Expect(key.Spec.Access).To(Equal(kw.AccessReadOnly))
		Expect(key.Spec.Lifetime.Duration).To(Equal(720 * time.Hour))
		Expect(key.Annotations).To(HaveKeyWithValue(annotationShownOnce, "true"))
		// The ciphertext stays, unreadable: its identity is gone.
		Expect(key.Status.AgeDelivery).NotTo(BeNil())
		Expect(key.Status.AgeDelivery.EncryptedKey).NotTo(ContainSubstring(plain))

		Eventually(func() wire.VerifyResponse { return verifyAt(plain) }, patience, 50*time.Millisecond).Should(And(
			HaveField("Valid", true), HaveField("KeyID", key.Status.KeyID),
			HaveField("Subject", "billing-reporter"), HaveField("Scopes", ContainElement("invoices:read"))))

		// Every Secret of the cluster, the hash Secret in the operator
		// namespace included.
		secrets := &corev1.SecretList{}
		Expect(k8s.List(ctx, secrets)).To(Succeed())
		Expect(secrets.Items).To(ContainElement(HaveField("ObjectMeta.Labels", HaveKeyWithValue(hashsecret.LabelOwnerNamespace, ns))),
			"the hash Secret should exist")
		for _, s := range secrets.Items {
			for _, v := range s.Data {
				expectNoLeak(string(v), plain)
			}
		}
		Expect(filesUnder(home)).To(BeEmpty())
		Expect(filesUnder(tmp)).To(BeEmpty())
		Expect(filesUnder(wd)).To(BeEmpty())
	})

	It("with --output-secret delivers the key to a Secret and says where it is", func() {
		ns := newNS()
		r := plugin(ns, "", "create", "apikey", "batch", "--output-secret", "batch-key", "--subject", "batch-jobs",
			"--rotate-every", "720h", "--grace", "1h")
		Expect(r.code).To(Equal(0), r.String())
		Expect(r.stdout).To(ContainSubstring("Secret " + ns + "/batch-key"))
		plain := secretData(ns, "batch-key", kw.DeliveryDataKey)
		expectNoLeak(r.stdout+r.stderr, plain)
		key := getKey(ns, "batch")
		Expect(key.Spec.Delivery).To(BeNil())
		Expect(key.Spec.Rotation.GracePeriod.Duration).To(Equal(time.Hour))
		Expect(r.stdout).To(ContainSubstring(key.Status.KeyID))
		Eventually(func() wire.VerifyResponse { return verifyAt(plain) }, patience, 50*time.Millisecond).Should(And(
			HaveField("Valid", true), HaveField("Subject", "batch-jobs")))
	})

	It("with -o yaml --dry-run=client prints a GitOps object and creates nothing", func() {
		ns := newNS()
		id, err := age.GenerateX25519Identity()
		Expect(err).NotTo(HaveOccurred())
		r := plugin(ns, "", "create", "apikey", "partner-acme", "--age-recipient", id.Recipient().String(),
			"--scope", "orders:read", "--rotate-every", "720h", "-o", "yaml", "--dry-run=client")
		Expect(r.code).To(Equal(0), r.String())
		var obj kw.APIKey
		Expect(yaml.UnmarshalStrict([]byte(r.stdout), &obj)).To(Succeed(), r.stdout)
		Expect(obj.APIVersion).To(Equal("keys.keyward.dev/v1alpha1"))
		Expect(obj.Kind).To(Equal("APIKey"))
		Expect(obj.Name).To(Equal("partner-acme"))
		Expect(obj.Namespace).To(Equal(ns))
		Expect(obj.Spec.Delivery.AgeRecipients).To(Equal([]string{id.Recipient().String()}))
		Expect(obj.Spec.Rotation.Period.Duration).To(Equal(720 * time.Hour))
		Expect(r.stdout).NotTo(ContainSubstring("status"))
		Expect(r.stdout).NotTo(ContainSubstring("creationTimestamp"))

		r = plugin(ns, "", "create", "apikey", "json-one", "--output-secret", "json-one-key", "-o", "json", "--dry-run=client")
		Expect(r.code).To(Equal(0), r.String())
		Expect(json.Unmarshal([]byte(r.stdout), &obj)).To(Succeed())
		Expect(obj.Spec.SecretName).To(Equal("json-one-key"))

		r = plugin(ns, "", "create", "apikey", "no-recipient", "-o", "yaml", "--dry-run=client")
		Expect(r.code).To(Equal(2), r.String())
		Expect(r.stderr).To(And(ContainSubstring("--age-recipient"), ContainSubstring("--output-secret")))
		Expect(r.stdout).To(BeEmpty())

		keys := &kw.APIKeyList{}
		Expect(k8s.List(ctx, keys, client.InNamespace(ns))).To(Succeed())
		Expect(keys.Items).To(BeEmpty())
	})

	It("deletes a shown-once key again when it is not issued in time, since nobody could read it", func() {
		ns := newNS()
		r := plugin(ns, "", "create", "apikey", "impatient", "--timeout", "1ms")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stdout).To(BeEmpty())
		Expect(r.stderr).To(ContainSubstring("deleted again"))
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "impatient"}, &kw.APIKey{}))
		}, patience, 50*time.Millisecond).Should(BeTrue())
	})

	It("refuses wrong command lines with exit code 2", func() {
		ns := newNS()
		for _, args := range [][]string{
			{"create", "apikey"},
			{"create", "secret", "x"},
			{"create", "apikey", "x", "-o", "yaml"},
			{"create", "apikey", "x", "--rotate-every", "720h"},
			{"create", "apikey", "x", "--grace", "1h", "--output-secret", "s"},
			{"create", "apikey", "x", "--age-recipient", "age1notarecipient"},
			{"create", "apikey", "x", "--expires-in", "thirty days"},
			{"nonsense"},
			{},
		} {
			r := plugin(ns, "", args...)
			Expect(r.code).To(Equal(2), "%v: %s", args, r)
		}
		keys := &kw.APIKeyList{}
		Expect(k8s.List(ctx, keys, client.InNamespace(ns))).To(Succeed())
		Expect(keys.Items).To(BeEmpty())
		r := plugin(ns, "", "--help")
		Expect(r.code).To(Equal(0))
		Expect(r.stdout).To(ContainSubstring("decrypt"))
		r = plugin(ns, "", "rotate", "--help")
		Expect(r.code).To(Equal(0))
		Expect(r.stdout).To(ContainSubstring("--wait"))
	})
})

var _ = Describe("list and describe", func() {
	It("show ids, hints and times, never a key", func() {
		ns := newNS()
		first := createdKey(ns, "alpha")
		r := plugin(ns, "", "create", "apikey", "beta", "--subject", "beta-svc")
		Expect(r.code).To(Equal(0), r.String())
		second := strings.TrimSpace(r.stdout)
		alpha, beta := getKey(ns, "alpha"), getKey(ns, "beta")

		r = plugin(ns, "", "list")
		Expect(r.code).To(Equal(0), r.String())
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		Expect(lines).To(HaveLen(3))
		Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "SUBJECT", "KEY", "ID", "HINT", "LAST", "USED", "USED", "24H", "EXPIRES", "STATUS"}))
		Expect(lines[1]).To(And(HavePrefix("alpha"), ContainSubstring(alpha.Status.KeyID), ContainSubstring(alpha.Status.KeyHint), ContainSubstring("Ready")))
		Expect(lines[2]).To(And(HavePrefix("beta"), ContainSubstring("beta-svc"), ContainSubstring(beta.Status.KeyID), ContainSubstring("never")))
		expectNoLeak(r.stdout, first)
		expectNoLeak(r.stdout, second)

		r = plugin(ns, "", "list", "-o", "name")
		Expect(r.code).To(Equal(0), r.String())
		Expect(r.stdout).To(Equal("apikey.keys.keyward.dev/alpha\napikey.keys.keyward.dev/beta\n"))

		for _, format := range []string{"json", "yaml"} {
			r = plugin(ns, "", "list", "-o", format)
			Expect(r.code).To(Equal(0), r.String())
			Expect(r.stdout).To(ContainSubstring(beta.Status.KeyID))
			Expect(r.stdout).NotTo(ContainSubstring("encryptedKey"))
			Expect(r.stdout).NotTo(ContainSubstring("AGE ENCRYPTED"))
			expectNoLeak(r.stdout, first)
			expectNoLeak(r.stdout, second)
		}
		var list struct {
			Items []kw.APIKey `json:"items"`
		}
		r = plugin(ns, "", "list", "-o", "json")
		Expect(json.Unmarshal([]byte(r.stdout), &list)).To(Succeed())
		Expect(list.Items).To(HaveLen(2))

		Eventually(func() string {
			r := plugin(ns, "", "describe", "alpha")
			Expect(r.code).To(Equal(0), r.String())
			return r.stdout
		}, patience, 100*time.Millisecond).Should(And(
			ContainSubstring("Key ID:"), ContainSubstring(alpha.Status.KeyID), ContainSubstring("Secret alpha-key"),
			MatchRegexp(`Ready\s+True\s+Issued`), ContainSubstring("Previous Keys:"),
			MatchRegexp(`Normal\s+Issued`)))
		r = plugin(ns, "", "describe", "alpha")
		Expect(r.stdout).To(MatchRegexp(`Requests:\s+<none counted>`))

		// Usage as the key servers write it: the last 24 h are counted at
		// the plugin's clock, from the hours.
		now := time.Now()
		cur := getKey(ns, "alpha")
		orig := cur.DeepCopy()
		cur.Status.Usage = &kw.KeyUsage{Accepted: 1500, Refused: 40, Hours: []kw.UsageHour{
			{Start: metav1.NewTime(now.Add(-30 * time.Hour).Truncate(time.Hour)), Accepted: 1000, Refused: 30},
			{Start: metav1.NewTime(now.Add(-2 * time.Hour).Truncate(time.Hour)), Accepted: 20, Refused: 3},
			{Start: metav1.NewTime(now.Truncate(time.Hour)), Accepted: 7, Refused: 1},
		}}
		Expect(k8s.Status().Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
		r = plugin(ns, "", "describe", "alpha")
		Expect(r.stdout).To(And(MatchRegexp(`Requests:\s+1500 accepted, 40 refused \(since creation\)`), MatchRegexp(`Last 24h:\s+27 accepted, 4 refused`)))
		r = plugin(ns, "", "list")
		lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
		Expect(strings.Fields(lines[1])).To(ContainElement("27/4"))
		Expect(strings.Fields(lines[2])).To(ContainElement("-"))

		r = plugin(ns, "", "describe", "beta")
		expectNoLeak(r.stdout, second)
		Expect(r.stdout).NotTo(ContainSubstring("AGE ENCRYPTED"))

		r = plugin(ns, "", "describe", "missing")
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(ContainSubstring("not found"))
	})
})

var _ = Describe("rotate, suspend, resume and revoke", func() {
	It("rotate --wait issues a new key version", func() {
		ns := newNS()
		old := createdKey(ns, "rotating", "--rotate-every", "720h", "--grace", "1h")
		oldID := getKey(ns, "rotating").Status.KeyID

		r := plugin(ns, "", "rotate", "rotating", "--wait")
		Expect(r.code).To(Equal(0), r.String())
		key := getKey(ns, "rotating")
		Expect(key.Status.KeyID).NotTo(Equal(oldID))
		Expect(key.Status.RotateRequest).To(Equal(key.Annotations[kw.AnnotationRotate]))
		Expect(r.stdout).To(ContainSubstring(oldID + " -> " + key.Status.KeyID))
		Expect(key.Status.PreviousKeys).To(ContainElement(HaveField("KeyID", oldID)))

		Eventually(func() string { return secretData(ns, "rotating-key", kw.DeliveryDataKey) }, patience).ShouldNot(Equal(old))
		r = plugin(ns, "", "describe", "rotating")
		Expect(r.stdout).To(MatchRegexp(`(?s)Previous Keys:\s+KEY ID\s+VALID UNTIL\s+` + oldID))

		r = plugin(ns, "", "rotate", "rotating")
		Expect(r.code).To(Equal(0), r.String())
		Expect(r.stdout).To(ContainSubstring("rotation requested"))
	})

	It("suspend refuses the key until resume", func() {
		ns := newNS()
		plain := createdKey(ns, "pausable")
		Eventually(func() int { return plugin(ns, plain+"\n", "verify").code }, patience, 50*time.Millisecond).Should(Equal(0))

		r := plugin(ns, "", "suspend", "pausable")
		Expect(r.code).To(Equal(0), r.String())
		Expect(getKey(ns, "pausable").Spec.Suspended).To(BeTrue())
		Eventually(func() string {
			r := plugin(ns, plain+"\n", "verify")
			return fmt.Sprintf("exit %d: %s", r.code, r.stdout)
		}, patience, 50*time.Millisecond).Should(Equal("exit 1: invalid: SUSPENDED\n"))
		Eventually(func() string { return plugin(ns, "", "list").stdout }, patience, 100*time.Millisecond).Should(ContainSubstring("Suspended"))
		r = plugin(ns, "", "rotate", "pausable", "--wait")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring("suspended"))

		r = plugin(ns, "", "resume", "pausable")
		Expect(r.code).To(Equal(0), r.String())
		Expect(getKey(ns, "pausable").Spec.Suspended).To(BeFalse())
		Eventually(func() int { return plugin(ns, plain+"\n", "verify").code }, patience, 50*time.Millisecond).Should(Equal(0))

		Expect(plugin(ns, "", "suspend", "missing").code).To(Equal(1))
	})

	It("revoke asks for the name, and deletes with it or with --yes", func() {
		ns := newNS()
		plain := createdKey(ns, "doomed")
		createdKey(ns, "doomed-too")
		Eventually(func() int { return plugin(ns, plain+"\n", "verify").code }, patience, 50*time.Millisecond).Should(Equal(0))

		r := plugin(ns, "doomed\n", "revoke", "doomed")
		Expect(r.code).To(Equal(1), "not a terminal and no --yes: "+r.String())
		Expect(r.stderr).To(ContainSubstring("--yes"))
		r = pluginTTY(ns, "doomed-too\n", true, "revoke", "doomed")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring("did not match"))
		r = pluginTTY(ns, "", true, "revoke", "doomed")
		Expect(r.code).To(Equal(1), r.String())
		Expect(getKey(ns, "doomed").DeletionTimestamp).To(BeNil())

		r = pluginTTY(ns, "doomed-too\n", true, "revoke", "doomed-too")
		Expect(r.code).To(Equal(0), r.String())
		r = plugin(ns, "", "revoke", "doomed", "--yes")
		Expect(r.code).To(Equal(0), r.String())
		Expect(r.stdout).To(ContainSubstring("apikey/doomed revoked"))
		for _, name := range []string{"doomed", "doomed-too"} {
			err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &kw.APIKey{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), name)
		}
		Eventually(func() int { return plugin(ns, plain+"\n", "verify").code }, patience, 50*time.Millisecond).Should(Equal(1))
		Expect(plugin(ns, "", "revoke", "doomed", "--yes").code).To(Equal(1))
	})
})

var _ = Describe("the key server commands", func() {
	It("token exchanges an access key pair read from stdin or from its Secret", func() {
		ns := newNS()
		pair := &kw.AccessKeyPair{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice-1"},
			Spec:       kw.AccessKeyPairSpec{Subject: "alice", SecretName: "alice-1-keys", Scopes: []string{"reports:read"}},
		}
		Expect(k8s.Create(ctx, pair)).To(Succeed())
		ak := secretData(ns, "alice-1-keys", kw.DeliveryDataAccessKeyID)
		sk := secretData(ns, "alice-1-keys", kw.DeliveryDataSecretKey)

		var r result
		Eventually(func() int {
			r = plugin(ns, sk+"\n", "token", "--access-key", ak, "--secret-key-from-stdin", "--lifetime", "1h")
			return r.code
		}, patience, 50*time.Millisecond).Should(Equal(0), func() string { return r.String() })
		tok := strings.TrimSpace(r.stdout)
		Expect(tok).To(HavePrefix("eyJ"))
		Expect(strings.Count(tok, ".")).To(Equal(2))
		Expect(r.stderr).NotTo(ContainSubstring(sk))

		r = plugin(ns, tok+"\n", "verify", "-o", "json")
		Expect(r.code).To(Equal(0), r.String())
		var v wire.VerifyResponse
		Expect(json.Unmarshal([]byte(r.stdout), &v)).To(Succeed())
		Expect(v.Subject).To(Equal("alice"))

		r = plugin(ns, "", "token", "--secret-key-secret", "alice-1-keys", "-o", "json")
		Expect(r.code).To(Equal(0), r.String())
		var full struct {
			Token     string `json:"token"`
			TokenType string `json:"tokenType"`
			ExpiresIn int64  `json:"expiresIn"`
		}
		Expect(json.Unmarshal([]byte(r.stdout), &full)).To(Succeed())
		Expect(full.TokenType).To(Equal("Bearer"))
		Expect(full.Token).To(HavePrefix("eyJ"))
		Expect(full.ExpiresIn).To(BeNumerically(">", 0))

		wrong := "wrong" + sk[5:]
		r = plugin(ns, wrong+"\n", "token", "--access-key", ak, "--secret-key-from-stdin")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring("invalid_client"))
		Expect(r.stdout + r.stderr).NotTo(ContainSubstring(wrong))

		for _, args := range [][]string{
			{"token", "--access-key", ak},
			{"token", "--access-key", ak, "--secret-key", sk},
			{"token", "--access-key", ak, "--secret-key-from-stdin", "--secret-key-secret", "alice-1-keys"},
			{"token", "--secret-key-from-stdin"},
			{"token", "--access-key", ak, "--secret-key-from-stdin", "--lifetime", "forever"},
		} {
			r = plugin(ns, sk+"\n", args...)
			Expect(r.code).To(Equal(2), "%v: %s", args[:len(args)-1], r.stderr)
			Expect(r.stdout + r.stderr).NotTo(ContainSubstring(sk))
		}
		r = plugin(ns, "", "token", "--access-key", ak, "--secret-key-from-stdin")
		Expect(r.code).To(Equal(2), r.String())
	})

	It("verify exits 0 for a valid key and 1 for an invalid one", func() {
		ns := newNS()
		plain := createdKey(ns, "checked", "--scope", "invoices:read")
		var r result
		Eventually(func() int { r = plugin(ns, plain+"\n", "verify"); return r.code }, patience, 50*time.Millisecond).Should(Equal(0))
		Expect(r.stdout).To(And(HavePrefix("valid\n"), ContainSubstring("checked"), ContainSubstring(getKey(ns, "checked").Status.KeyID)))
		expectNoLeak(r.stdout+r.stderr, plain)

		r = plugin(ns, plain+"\n", "verify", "--scope", "invoices:write")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stdout).To(ContainSubstring("INSUFFICIENT_SCOPE"))

		r = plugin(ns, "kw_notakey\n", "verify")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stdout).To(ContainSubstring("invalid: INVALID_FORMAT"))
		Expect(r.stderr).To(BeEmpty())

		k, err := keymaterial.Generate("kw")
		Expect(err).NotTo(HaveOccurred())
		r = plugin(ns, k.String()+"\n", "verify", "-o", "json")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stdout).To(ContainSubstring(`"NOT_FOUND"`))

		Expect(plugin(ns, "", "verify").code).To(Equal(2))
		var out, errOut bytes.Buffer
		code := run(ctx, []string{"verify"}, streams{In: strings.NewReader(plain + "\n"), Out: &out, ErrOut: &errOut},
			func(name string) string { return map[string]string{envServer: server}[name] })
		Expect(code).To(Equal(0), "$KEYWARD_SERVER names the key server: %s", errOut.String())
		Expect(plugin(ns, plain+"\n", "verify", "--server", "ftp://nowhere").code).To(Equal(2))
	})

	It("decrypt opens an age delivery with an identity file", func() {
		ns := newNS()
		id, err := age.GenerateX25519Identity()
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		idFile := filepath.Join(dir, "partner.agekey")
		Expect(os.WriteFile(idFile, []byte("# created: for a test\n# public key: "+id.Recipient().String()+"\n"+id.String()+"\n"), 0o600)).To(Succeed())

		r := plugin(ns, "", "create", "apikey", "partner-acme", "--age-recipient", id.Recipient().String())
		Expect(r.code).To(Equal(0), r.String())
		Expect(r.stdout).To(ContainSubstring("kubectl keyward decrypt partner-acme"))

		r = plugin(ns, "", "decrypt", "partner-acme", "--identity", idFile)
		Expect(r.code).To(Equal(0), r.String())
		plain := strings.TrimSpace(r.stdout)
		k, err := keymaterial.Parse(plain)
		Expect(err).NotTo(HaveOccurred())
		Expect(k.ID).To(Equal(getKey(ns, "partner-acme").Status.KeyID))
		Eventually(func() bool { return verifyAt(plain).Valid }, patience, 50*time.Millisecond).Should(BeTrue())

		other, err := age.GenerateX25519Identity()
		Expect(err).NotTo(HaveOccurred())
		otherFile := filepath.Join(dir, "other.agekey")
		Expect(os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)).To(Succeed())
		r = plugin(ns, "", "decrypt", "partner-acme", "--identity", otherFile)
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring("did not match"))
		Expect(r.stdout).To(BeEmpty())

		badFile := filepath.Join(dir, "bad.agekey")
		Expect(os.WriteFile(badFile, []byte("AGE-SECRET-KEY-1NOTREALLY\n"), 0o600)).To(Succeed())
		r = plugin(ns, "", "decrypt", "partner-acme", "--identity", badFile)
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).NotTo(ContainSubstring("NOTREALLY"))

		Expect(plugin(ns, "", "decrypt", "partner-acme").code).To(Equal(2))
		r = createdKeyResult(ns, "secret-only")
		Expect(r.code).To(Equal(0), r.String())
		r = plugin(ns, "", "decrypt", "secret-only", "--identity", idFile)
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring("no age delivery"))
	})
})

func createdKeyResult(ns, name string) result {
	return plugin(ns, "", "create", "apikey", name, "--output-secret", name+"-key")
}

var _ = Describe("an https key server", func() {
	It("is trusted with --server-ca", func() {
		ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			Expect(r.URL.Path).To(Equal("/v1/verify"))
			_, _ = w.Write([]byte(`{"valid":true,"code":"VALID","subject":"tls-client"}`))
		}))
		DeferCleanup(ts.Close)
		ca := filepath.Join(GinkgoT().TempDir(), "ca.crt")
		Expect(os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)).To(Succeed())

		r := plugin("default", "kw_anything\n", "verify", "--server", ts.URL)
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring("certificate"))
		r = plugin("default", "kw_anything\n", "verify", "--server", ts.URL, "--server-ca", ca)
		Expect(r.code).To(Equal(0), r.String())
		Expect(r.stdout).To(ContainSubstring("tls-client"))
	})
})

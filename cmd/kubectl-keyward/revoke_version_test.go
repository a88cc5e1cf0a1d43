package main

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/keymaterial"
)

// revocationTarget is the revocation target of docs/benchmarks.md.
const revocationTarget = time.Second

func keyID(plain string) string {
	GinkgoHelper()
	k, err := keymaterial.Parse(plain)
	Expect(err).NotTo(HaveOccurred())
	return k.ID
}

var _ = Describe("revoke --key-id", func() {
	It("ends one previous version at the key server within the revocation target; the current one stays valid", func() {
		ns := newNS()
		old := createdKey(ns, "graceful", "--rotate-every", "720h", "--grace", "24h")
		Expect(plugin(ns, "", "rotate", "graceful", "--wait").code).To(Equal(0))
		var cur string
		Eventually(func() string { cur = secretData(ns, "graceful-key", kw.DeliveryDataKey); return cur }, patience).ShouldNot(Equal(old))
		oldID, curID := keyID(old), keyID(cur)
		Eventually(func() []bool { return []bool{verifyAt(old).Valid, verifyAt(cur).Valid} }, patience, 50*time.Millisecond).
			Should(Equal([]bool{true, true}), "the old version, in its grace, and the new one")

		start := time.Now()
		r := plugin(ns, "", "revoke", "graceful", "--key-id", oldID)
		Expect(r.code).To(Equal(0), r.String())
		Expect(r.stdout).To(Equal("apikey/graceful: key id " + oldID + " revoked; the current key id " + curID + " stays valid\n"))
		Eventually(func() string { return verifyAt(old).Code }, revocationTarget, 10*time.Millisecond).Should(Equal("NOT_FOUND"))
		GinkgoWriter.Printf("revoked version refused by the key server %v after the command started\n", time.Since(start))
		Expect(time.Since(start)).To(BeNumerically("<=", revocationTarget), "from the command to the key server's refusal")
		Expect(verifyAt(cur)).To(HaveField("Valid", true))

		key := getKey(ns, "graceful")
		Expect(key.DeletionTimestamp).To(BeNil(), "revoking one version deleted the key")
		Expect(key.Spec.RevokedKeyIDs).To(Equal([]string{oldID}))
		Expect(key.Status.PreviousKeys).To(BeEmpty())
		r = plugin(ns, "", "describe", "graceful")
		Expect(r.stdout).To(MatchRegexp(`Revoked Key IDs:\s+` + oldID))
		Expect(r.stdout).To(ContainSubstring(kw.EventVersionRevoked))

		r = plugin(ns, "", "revoke", "graceful", "--key-id", oldID)
		Expect(r.code).To(Equal(0), "revoking again changes nothing: "+r.String())
		Expect(r.stdout).To(ContainSubstring("already revoked"))
	})

	It("refuses the current version, an unknown id and a malformed one, and changes nothing", func() {
		ns := newNS()
		plain := createdKey(ns, "single")
		curID := keyID(plain)
		Eventually(func() wire.VerifyResponse { return verifyAt(plain) }, patience, 50*time.Millisecond).Should(HaveField("Valid", true))

		r := plugin(ns, "", "revoke", "single", "--key-id", curID)
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring("key id " + curID + " is the current version of APIKey \"single\""))
		Expect(r.stderr).To(ContainSubstring("kubectl keyward rotate single --wait"))

		r = plugin(ns, "", "revoke", "single", "--key-id", "AAAAAAAAAAAA")
		Expect(r.code).To(Equal(1), r.String())
		Expect(r.stderr).To(ContainSubstring(`APIKey "single" has no previous version with key id AAAAAAAAAAAA (previous versions: <none>)`))

		r = plugin(ns, "", "revoke", "single", "--key-id", plain)
		Expect(r.code).To(Equal(2), "a whole key is not a key id: "+r.String())
		Expect(r.stderr).To(ContainSubstring("--key-id"))
		expectNoLeak(r.stderr, plain)
		Expect(plugin(ns, "", "revoke", "single", "--key-id", "").code).To(Equal(2))

		key := getKey(ns, "single")
		Expect(key.Spec.RevokedKeyIDs).To(BeEmpty())
		Expect(key.DeletionTimestamp).To(BeNil())
		Expect(verifyAt(plain)).To(HaveField("Valid", true))
	})
})

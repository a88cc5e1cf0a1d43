package apikey

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/logging"
	"github.com/keyward/keyward/internal/testenv"
)

func TestAPIKeyController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "APIKey controller suite (envtest)")
}

var (
	cfg *rest.Config
	k8s client.Client
	ctx = context.Background()

	// logs receives every log line of every manager in this suite, at the
	// highest verbosity, so the secrecy specs can search it.
	logs = &syncBuffer{}
	// seen collects every plaintext key the suite observed; AfterSuite
	// checks that none of them ever reached a log line.
	seen sync.Map
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	// The operator's own logger (capped, as main.go sets it) at the highest
	// verbosity zap allows.
	ctrl.SetLogger(logging.Capped(zap.New(zap.WriteTo(io.MultiWriter(GinkgoWriter, logs)), zap.Level(zapcore.Level(-127)), zap.UseDevMode(true))))
	s := testenv.StartSuite(GinkgoT(), testenv.Start)
	cfg, k8s = s.Config, s.Client
})

var _ = AfterSuite(func() {
	text := logs.String()
	Expect(text).NotTo(BeEmpty(), "the managers logged nothing: the secrecy check would prove nothing")
	seen.Range(func(k, _ any) bool {
		Expect(strings.Contains(text, k.(string))).To(BeFalse(), "a key's secret appeared in the logs")
		return true
	})
})

// harness runs one manager with the APIKey controller on a fake clock,
// watching only its spec's namespace (keys) and its own operator namespace
// (hash Secrets) so specs cannot disturb each other.
type harness struct {
	ns, opNS string
	clock    *clocktesting.FakeClock
	stop     func()
}

// operatorNamespaceOf maps a spec's namespace to its operator namespace.
var operatorNamespaceOf sync.Map

// hashSecretKey names k's hash Secret, in its harness's operator namespace.
func hashSecretKey(k *kw.APIKey) types.NamespacedName {
	op, _ := operatorNamespaceOf.Load(k.Namespace)
	return types.NamespacedName{Namespace: op.(string), Name: hashsecret.Name(hashsecret.KindAPIKey, k.Namespace, k.Name)}
}

// specResync: delivery and importFrom Secrets are re-read this often in
// specs (they are not watched).
const specResync = time.Second

type hook func(context.Context, client.ObjectKey, Step) error

// startManager starts a fresh manager, as a restarted operator would be.
func startManager(ns, opNS string, clk *clocktesting.FakeClock, afterWrite hook) func() {
	stop, err := testenv.StartManager(cfg, ns, opNS, func(mgr ctrl.Manager) error {
		return (&Reconciler{
			Client:             mgr.GetClient(),
			APIReader:          mgr.GetAPIReader(),
			Clock:              clk,
			Recorder:           mgr.GetEventRecorder("keyward-apikey"),
			ExpiringSoonWindow: 30 * time.Minute,
			HashNamespace:      opNS,
			Resync:             specResync,
			AfterWrite:         afterWrite,
		}).SetupWithManager(mgr)
	})
	Expect(err).NotTo(HaveOccurred())
	return func() { Expect(stop()).To(Succeed()) }
}

// newHarness makes a namespace and starts a manager watching it.
func newHarness() *harness {
	h := &harness{ns: newNamespace(), opNS: newNamespace(), clock: clocktesting.NewFakeClock(time.Now().Truncate(time.Second))}
	operatorNamespaceOf.Store(h.ns, h.opNS)
	h.stop = startManager(h.ns, h.opNS, h.clock, nil)
	DeferCleanup(func() { h.stop() })
	return h
}

// restart stops the manager and starts a fresh one on the same clock.
func (h *harness) restart(afterWrite hook) {
	h.stop()
	h.stop = startManager(h.ns, h.opNS, h.clock, afterWrite)
}

// crashAt returns an AfterWrite hook that holds the reconcile of name at
// step until the test stops the manager (a crash between two writes), and a
// channel closed when the step is reached.
func crashAt(name string, step Step) (hook, <-chan struct{}) {
	reached := make(chan struct{})
	var once sync.Once
	return func(ctx context.Context, key client.ObjectKey, s Step) error {
		if s != step || key.Name != name {
			return nil
		}
		once.Do(func() { close(reached) })
		<-ctx.Done() // hold the reconcile here until the manager stops
		return ctx.Err()
	}, reached
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "apikey-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

type keyOption func(*kw.APIKey)

func newKey(ns, name string, opts ...keyOption) *kw.APIKey {
	k := &kw.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kw.APIKeySpec{SecretName: name + "-key", Scopes: []string{"invoices:read"}, Groups: []string{"reporting"}},
	}
	for _, o := range opts {
		o(k)
	}
	return k
}

func withRotation(period, grace time.Duration) keyOption {
	return func(k *kw.APIKey) {
		k.Spec.Rotation = &kw.RotationPolicy{Period: metav1.Duration{Duration: period}, GracePeriod: &metav1.Duration{Duration: grace}}
	}
}

func withAge(recipients ...string) keyOption {
	return func(k *kw.APIKey) { k.Spec.Delivery = &kw.Delivery{AgeRecipients: recipients} }
}

func withoutSecret() keyOption { return func(k *kw.APIKey) { k.Spec.SecretName = "" } }

func withLifetime(d time.Duration) keyOption {
	return func(k *kw.APIKey) { k.Spec.Lifetime = &metav1.Duration{Duration: d} }
}

func withImport(secret string) keyOption {
	return func(k *kw.APIKey) {
		k.Spec.SecretName = ""
		k.Spec.ImportFrom = &kw.SecretKeyRef{Name: secret, Key: "key"}
	}
}

func newIdentity() *age.X25519Identity {
	id, err := age.GenerateX25519Identity()
	Expect(err).NotTo(HaveOccurred())
	return id
}

func getKey(k *kw.APIKey) *kw.APIKey {
	GinkgoHelper()
	out := &kw.APIKey{}
	Expect(k8s.Get(ctx, client.ObjectKeyFromObject(k), out)).To(Succeed())
	return out
}

// poke makes the controller reconcile now, as RequeueAfter would once the
// fake clock has moved.
var pokes int

func poke(k *kw.APIKey) {
	GinkgoHelper()
	pokes++
	patch := []byte(`{"metadata":{"annotations":{"test.keyward.dev/poke":"` + time.Now().Format(time.RFC3339Nano) + `"}}}`)
	Expect(k8s.Patch(ctx, &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
}

func readyReason(g Gomega, k *kw.APIKey) string {
	cur := &kw.APIKey{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(k), cur)).To(Succeed())
	c := meta.FindStatusCondition(cur.Status.Conditions, kw.ConditionReady)
	if c == nil || c.ObservedGeneration != cur.Generation {
		return ""
	}
	return c.Reason
}

// waitReady waits for Ready=True with the status describing the latest spec.
func waitReady(k *kw.APIKey) *kw.APIKey {
	GinkgoHelper()
	var out *kw.APIKey
	Eventually(func(g Gomega) {
		out = &kw.APIKey{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(k), out)).To(Succeed())
		g.Expect(out.Status.ObservedGeneration).To(Equal(out.Generation))
		g.Expect(meta.IsStatusConditionTrue(out.Status.Conditions, kw.ConditionReady)).To(BeTrue(), "conditions: %+v", out.Status.Conditions)
	}).Should(Succeed())
	return out
}

func record(g Gomega, k *kw.APIKey) *hashsecret.Record {
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, hashSecretKey(k), sec)).To(Succeed())
	rec, err := hashsecret.Decode(sec)
	g.Expect(err).NotTo(HaveOccurred())
	return rec
}

// delivered reads the plaintext from the key's delivery Secret.
func delivered(g Gomega, k *kw.APIKey) keymaterial.Key {
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: k.Spec.SecretName}, sec)).To(Succeed())
	key, err := keymaterial.Parse(string(sec.Data[kw.DeliveryDataKey]))
	g.Expect(err).NotTo(HaveOccurred())
	remember(key)
	return key
}

// decrypted opens the key's age delivery with id.
func decrypted(g Gomega, k *kw.APIKey, id age.Identity) keymaterial.Key {
	cur := &kw.APIKey{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(k), cur)).To(Succeed())
	g.Expect(cur.Status.AgeDelivery).NotTo(BeNil())
	plain, err := agecrypt.Decrypt(cur.Status.AgeDelivery.EncryptedKey, id)
	g.Expect(err).NotTo(HaveOccurred())
	key, err := keymaterial.Parse(plain)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(key.ID).To(Equal(cur.Status.AgeDelivery.KeyID))
	remember(key)
	return key
}

// remember records the forms a key could leak in: plain, and base64 as a
// Secret's data travels in API bodies.
func remember(k keymaterial.Key) {
	for _, form := range leakForms(k) {
		seen.Store(form, true)
	}
}

func leakForms(k keymaterial.Key) []string {
	return []string{k.String(), secretPart(k), base64.StdEncoding.EncodeToString([]byte(k.String()))}
}

// secretPart is the random part of a key: what must never leak.
func secretPart(k keymaterial.Key) string {
	s := k.String()
	start := len(k.Prefix) + 1 + len(k.ID) + 1
	return s[start : len(s)-6]
}

func eventReasons(k *kw.APIKey) []string {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(k8s.List(ctx, list, client.InNamespace(k.Namespace))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == k.Name && e.Regarding.Kind == "APIKey" {
			out = append(out, e.Reason)
		}
	}
	return out
}

// managedSecrets lists the Secrets Keyward wrote for a key: in its
// namespace, and in the operator namespace.
func managedSecrets(k *kw.APIKey) []string {
	GinkgoHelper()
	var names []string
	for _, opts := range [][]client.ListOption{
		{client.InNamespace(k.Namespace), client.MatchingLabels{hashsecret.LabelOwner: k.Name}},
		{client.InNamespace(hashSecretKey(k).Namespace), client.MatchingLabels{hashsecret.LabelOwner: k.Name, hashsecret.LabelOwnerNamespace: k.Namespace}},
	} {
		list := &corev1.SecretList{}
		Expect(k8s.List(ctx, list, opts...)).To(Succeed())
		for _, s := range list.Items {
			names = append(names, s.Name)
		}
	}
	return names
}

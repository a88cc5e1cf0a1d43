package feed

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/webhook/keyserver"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestOnlySecretsOfTheHashTypeAreIndexed(t *testing.T) {
	s := keyserver.New(keyserver.Options{})
	k, _ := keymaterial.Generate("kw")
	raw, _ := json.Marshal(&hashsecret.Record{Kind: hashsecret.KindAPIKey, Namespace: "dev", Name: "forged", Subject: "admin",
		Current: &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: t0.Add(-time.Hour)}})
	src := &sources{server: s}
	forged := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "keyward-system", Name: hashsecret.Name(hashsecret.KindAPIKey, "dev", "forged"),
		Labels: map[string]string{hashsecret.LabelKind: "apikey"}},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{hashsecret.DataRecord: raw}}
	src.upsert(forged, logr.Discard())
	if code := s.Index().ValidateAPIKey(k.String(), t0).Code; code == "VALID" {
		t.Fatal("an Opaque Secret with the hash label was indexed")
	}
	forged.Type = hashsecret.SecretType
	src.upsert(forged, logr.Discard())
	if code := s.Index().ValidateAPIKey(k.String(), t0).Code; code != "VALID" {
		t.Fatalf("a hash Secret was not indexed: %s", code)
	}
}

func TestTheCacheTransformKeepsOnlyWhatValidationReads(t *testing.T) {
	sec := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "keyward-system", Name: "kw-apikey.team-a.billing", ResourceVersion: "42", UID: "u",
			Labels: map[string]string{hashsecret.LabelKind: "apikey"}, Annotations: map[string]string{"a": "b"},
			CreationTimestamp: metav1.Now(), ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Type: hashsecret.SecretType,
		Data: map[string][]byte{hashsecret.DataRecord: []byte("{}"), hashsecret.DataAge: []byte("age"), "self-rotation.json": []byte("{}")},
	}
	out, err := StripHashSecret(sec)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "keyward-system", Name: "kw-apikey.team-a.billing", ResourceVersion: "42"},
		Type:       hashsecret.SecretType,
		Data:       map[string][]byte{hashsecret.DataRecord: []byte("{}")},
	}
	if !equality.Semantic.DeepEqual(out, want) {
		t.Fatalf("transformed to %+v, want %+v", out, want)
	}
}

func TestTheKeyPolicyTransformKeepsWhatCompileReads(t *testing.T) {
	deleting := metav1.NewTime(t0.Add(time.Hour))
	kp := &kw.KeyPolicy{
		TypeMeta: metav1.TypeMeta{Kind: "KeyPolicy", APIVersion: kw.GroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "api", ResourceVersion: "7", Generation: 3, UID: "u",
			CreationTimestamp: metav1.NewTime(t0), DeletionTimestamp: &deleting, Finalizers: []string{"f"},
			Labels: map[string]string{"l": "v"}, Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{…}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Spec:   kw.KeyPolicySpec{Hosts: []kw.Hostname{"a.example.com"}},
		Status: kw.KeyPolicyStatus{ObservedGeneration: 3},
	}
	out, err := StripKeyPolicy(kp)
	if err != nil {
		t.Fatal(err)
	}
	want := &kw.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "api", ResourceVersion: "7", Generation: 3,
			CreationTimestamp: metav1.NewTime(t0), DeletionTimestamp: &deleting},
		Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{"a.example.com"}},
	}
	if !equality.Semantic.DeepEqual(out, want) {
		t.Fatalf("transformed to %+v, want %+v", out, want)
	}
	ns := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "team-a", ResourceVersion: "9", UID: "u",
		Labels: map[string]string{"tier": "trusted"}, Annotations: map[string]string{"a": "b"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}}}
	out, _ = StripNamespace(ns)
	if want := (&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "team-a", ResourceVersion: "9",
		Labels: map[string]string{"tier": "trusted"}}}); !equality.Semantic.DeepEqual(out, want) {
		t.Fatalf("transformed to %+v, want %+v", out, want)
	}
}

// The table is applied once the initial list is in, and follows every
// change after; a deleted policy gives its host back.
func TestPoliciesAreAppliedOnceListedAndFollowed(t *testing.T) {
	s := keyserver.New(keyserver.Options{})
	s.SetPolicies(nil) // as Add does
	p := newPolicies(s)
	older := &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "api", CreationTimestamp: metav1.NewTime(t0)},
		Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{"a.example.com"}}}
	newer := &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "sandbox", Name: "squatter", CreationTimestamp: metav1.NewTime(t0.Add(time.Minute))},
		Spec: kw.KeyPolicySpec{Hosts: []kw.Hostname{"a.example.com"}}}
	p.upsert(older)
	p.upsert(newer)
	if s.Policies() != nil {
		t.Fatal("a table was applied before the initial list was in")
	}
	p.load()
	holder := func() string {
		sel := s.Policies().Select("a.example.com", "/")
		if sel.Policy == nil {
			return ""
		}
		return sel.Policy.Ref().String()
	}
	if got := holder(); got != "team-a/api" {
		t.Fatalf("a.example.com is held by %q, want the older team-a/api", got)
	}
	p.remove(toolscache.DeletedFinalStateUnknown{Key: "team-a/api", Obj: older})
	if got := holder(); got != "sandbox/squatter" {
		t.Fatalf("after the holder's deletion a.example.com is held by %q", got)
	}
	p.remove(newer)
	if got := holder(); got != "" || s.Policies().Len() != 0 {
		t.Fatalf("no policy left, yet %q holds a.example.com", got)
	}
}

func TestNamespaceLabelsFollowTheNamespaces(t *testing.T) {
	n := &namespaceLabels{byName: map[string]labels.Set{}}
	ns := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"tier": "trusted"}}}
	n.set(ns)
	if l, ok := n.lookup("team-a"); !ok || l.Get("tier") != "trusted" {
		t.Fatalf("%v %v", l, ok)
	}
	n.remove(toolscache.DeletedFinalStateUnknown{Obj: ns})
	if _, ok := n.lookup("team-a"); ok {
		t.Fatal("a deleted namespace is still known")
	}
}

package feed

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

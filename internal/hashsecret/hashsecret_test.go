package hashsecret

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

func TestRoundTrip(t *testing.T) {
	end := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := &Record{
		Kind: KindAPIKey, Namespace: "ns", Name: "n", Subject: "s", Scopes: []string{"a:b"},
		Current:      &Version{ID: "id1", Hash: "sha256:00", NotBefore: end.Add(-time.Hour)},
		Previous:     []Version{{ID: "id0", Hash: "sha256:01", NotAfter: &end}},
		RateLimit:    &RateLimit{Requests: 100, Period: time.Minute, Burst: 10},
		AllowedCIDRs: []string{"10.0.0.0/8", "192.0.2.7"},
	}
	raw, err := Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(&corev1.Secret{Data: map[string][]byte{DataRecord: raw}})
	if err != nil {
		t.Fatal(err)
	}
	if !Equal(rec, got) {
		t.Fatalf("round trip changed the record: %+v", got)
	}
	if ids := got.Versions(); len(ids) != 2 || ids[0].ID != "id1" {
		t.Fatalf("Versions() = %+v, want current first", ids)
	}
}

func TestDecodeRefusesCorruptRecords(t *testing.T) {
	cases := map[string][]byte{
		"no record":                  nil,
		"not JSON":                   []byte("{not json"),
		"a version without its hash": []byte(`{"current":{"id":"x"}}`),
		"larger than any record":     []byte(`{"subject":"` + strings.Repeat("x", 70<<10) + `"}`),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(&corev1.Secret{Data: map[string][]byte{DataRecord: raw}})
			if err == nil {
				t.Fatal("a corrupt record was accepted")
			}
			if len(raw) > 0 && len(raw) < 100 && strings.Contains(err.Error(), string(raw)) {
				t.Fatal("the error echoes the Secret's content")
			}
		})
	}
}

func TestValidAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := t0.Add(time.Hour)
	v := Version{NotBefore: t0, NotAfter: &end}
	cases := map[string]struct {
		at   time.Time
		want bool
	}{
		"before notBefore":         {t0.Add(-time.Nanosecond), false},
		"at notBefore":             {t0, true},
		"just before notAfter":     {end.Add(-time.Nanosecond), true},
		"at notAfter it has ended": {end, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := v.ValidAt(c.at); got != c.want {
				t.Fatalf("ValidAt = %v, want %v", got, c.want)
			}
		})
	}
}

func TestNameIsAValidUniqueSecretName(t *testing.T) {
	long := strings.Repeat("a", 253)
	cases := map[string][2]string{
		"a short owner":                       {"team-a", "billing"},
		"the same owner in another namespace": {"team-b", "billing"},
		"dots cannot make two owners collide": {"team-a", "b.billing"},
		"nor can the namespace boundary":      {"team", "a.b.billing"},
		"an owner at the length limit":        {"team-a", long},
		"a long owner differing at its end":   {"team-a", long[:252] + "b"},
		"a long owner, long namespace":        {strings.Repeat("n", 63), long[:200] + "-" + long[:52]},
	}
	seen := map[string]bool{}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			n := Name(KindAPIKey, c[0], c[1])
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				t.Fatalf("%q is not a valid Secret name: %v", n, errs)
			}
			if seen[n] {
				t.Fatalf("two owners share the hash Secret %q", n)
			}
			seen[n] = true
		})
	}
}

func TestWrittenBy(t *testing.T) {
	controller := func(apiVersion, kind string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: "victim", Controller: ptr.To(true)}}
	}
	for name, c := range map[string]struct {
		meta metav1.ObjectMeta
		want string
	}{
		"an APIKey's delivery Secret":        {metav1.ObjectMeta{OwnerReferences: controller("keys.keyward.dev/v1alpha1", "APIKey")}, `the delivery Secret of APIKey "victim"`},
		"an AccessKeyPair's delivery Secret": {metav1.ObjectMeta{OwnerReferences: controller("keys.keyward.dev/v1alpha1", "AccessKeyPair")}, `the delivery Secret of AccessKeyPair "victim"`},
		"a Secret with Keyward's label":      {metav1.ObjectMeta{Labels: map[string]string{LabelManagedBy: ManagedBy}}, "labelled app.kubernetes.io/managed-by=keyward"},
		"a user's Secret":                    {metav1.ObjectMeta{Labels: map[string]string{LabelManagedBy: "helm"}}, ""},
		"a Secret another APIKey kind owns":  {metav1.ObjectMeta{OwnerReferences: controller("example.com/v1", "APIKey")}, ""},
		"a Secret an APIKey owns without controlling it": {metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "keys.keyward.dev/v1alpha1", Kind: "APIKey", Name: "victim"}}}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			if got := WrittenBy(&c.meta); got != c.want {
				t.Errorf("WrittenBy = %q, want %q", got, c.want)
			}
		})
	}
}

package apikey

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyward/keyward/internal/hashsecret"
)

func hashSecretFixture(record []byte) *corev1.Secret {
	return &corev1.Secret{Type: hashsecret.SecretType, Data: map[string][]byte{hashsecret.DataRecord: record}}
}

func TestImportBlocker(t *testing.T) {
	at := func(d time.Duration, ns, name string) holder {
		return holder{kind: hashsecret.KindAPIKey, namespace: ns, name: name, since: t0.Add(d)}
	}
	early, late := at(-time.Hour, "team-a", "victim"), at(-time.Minute, "team-b", "shadow")
	tieA, tieB := at(0, "team-a", "a"), at(0, "team-b", "a")
	for name, c := range map[string]struct {
		own    *holder
		others []holder
		want   *holder
	}{
		"nobody holds the key: bind it":                           {nil, nil, nil},
		"this key alone holds it: keep it":                        {&early, nil, nil},
		"another holds it: refuse":                                {nil, []holder{early}, &early},
		"both hold it, this one first: keep it":                   {&early, []holder{late}, nil},
		"both hold it, the other first: let go":                   {&late, []holder{early}, &early},
		"several hold it: the first of them blocks":               {nil, []holder{late, early}, &early},
		"bound at the same instant: namespace, then name, decide": {&tieB, []holder{tieA}, &tieA},
		"bound at the same instant, the other way round":          {&tieA, []holder{tieB}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := importBlocker(c.own, c.others)
			if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
				t.Errorf("importBlocker = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestHashesOfIndexesEveryVersion(t *testing.T) {
	rec := &hashsecret.Record{Kind: hashsecret.KindAPIKey, Namespace: "ns", Name: "n",
		Current:  &hashsecret.Version{ID: "a", Hash: "sha256:aa"},
		Previous: []hashsecret.Version{{ID: "b", Hash: "sha256:bb", NotAfter: at(time.Hour)}, {ID: "c", Hash: "sha256:aa", NotAfter: at(time.Hour)}}}
	raw, err := hashsecret.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	sec := hashSecretFixture(raw)
	if got := hashesOf(sec); len(got) != 2 || got[0] != "sha256:aa" || got[1] != "sha256:bb" {
		t.Errorf("hashesOf = %v", got)
	}
	sec.Type = "Opaque"
	if got := hashesOf(sec); got != nil {
		t.Errorf("a Secret of another type is indexed: %v", got)
	}
}

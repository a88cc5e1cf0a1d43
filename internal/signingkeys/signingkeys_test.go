package signingkeys

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

const (
	period = 30 * 24 * time.Hour
	maxTok = 7 * 24 * time.Hour
)

func TestDecide(t *testing.T) {
	active := Key{ID: "a", Created: t0}
	until := t0.Add(period + maxTok)
	retired := Key{ID: "r", Created: t0.Add(-period), Retired: &t0, PublishUntil: &until}
	cases := map[string]struct {
		ks       *KeySet
		now      time.Time
		generate bool
		prune    []string
		wantNext time.Duration
	}{
		"no key set: create one":                             {ks: nil, now: t0, generate: true, wantNext: period},
		"an active key inside its period is kept":            {ks: &KeySet{Keys: []Key{active}}, now: t0.Add(time.Hour), wantNext: period - time.Hour},
		"the period elapsed: rotate, at the instant":         {ks: &KeySet{Keys: []Key{active}}, now: t0.Add(period), generate: true, wantNext: period},
		"a retired key is published until its tokens expire": {ks: &KeySet{Keys: []Key{{ID: "b", Created: t0.Add(period)}, retired}}, now: t0.Add(period + time.Hour), wantNext: maxTok - time.Hour},
		"then it is pruned":                                  {ks: &KeySet{Keys: []Key{{ID: "b", Created: t0.Add(period)}, retired}}, now: until, prune: []string{"r"}, wantNext: period - maxTok},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := Decide(c.ks, c.now, period)
			if p.Generate != c.generate || len(p.Prune) != len(c.prune) || (len(c.prune) > 0 && p.Prune[0] != c.prune[0]) {
				t.Fatalf("plan = %+v, want generate=%v prune=%v", p, c.generate, c.prune)
			}
			if p.Next != c.wantNext {
				t.Fatalf("next = %v, want %v", p.Next, c.wantNext)
			}
		})
	}
}

func TestRotationRetiresAndPublishesTheOldKey(t *testing.T) {
	ks, err := Apply(nil, Plan{Generate: true}, t0, maxTok)
	if err != nil {
		t.Fatal(err)
	}
	first := ks.Keys[0].ID
	ks, err = Apply(ks, Plan{Generate: true}, t0.Add(period), maxTok)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Keys) != 2 || ks.Keys[1].ID != first || ks.Keys[0].Retired != nil {
		t.Fatalf("after rotation: %+v", ks.Keys)
	}
	if !ks.Keys[1].PublishUntil.After(t0.Add(period + maxTok)) {
		t.Fatal("the retired key must stay published past the longest token lifetime")
	}
	raw, _ := Encode(ks)
	back, err := Decode(&corev1.Secret{Data: map[string][]byte{DataKeySet: raw}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Load(back, t0.Add(period))
	if err != nil {
		t.Fatal(err)
	}
	if l.Active.ID != ks.Keys[0].ID || len(l.Published) != 2 {
		t.Fatalf("loaded active %s with %d published keys", l.Active.ID, len(l.Published))
	}
	if _, ok := l.Public(first); !ok {
		t.Fatal("the retired key is not published")
	}
	l, _ = Load(back, *ks.Keys[1].PublishUntil)
	if _, ok := l.Public(first); ok {
		t.Fatal("the retired key is still published after its tokens expired")
	}
}

func TestDecodeRefusesCorruptSets(t *testing.T) {
	now := t0
	cases := map[string]string{
		"empty":                        ``,
		"not JSON":                     `{`,
		"no keys":                      `{"keys":[]}`,
		"a retired key in first place": `{"keys":[{"id":"x","retired":"` + now.Format(time.RFC3339) + `"}]}`,
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(&corev1.Secret{Data: map[string][]byte{DataKeySet: []byte(raw)}}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

package v1alpha1_test

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

func TestPairsAhead(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pair := func(name, subject string, age time.Duration, deleting bool) kw.AccessKeyPair {
		p := kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if age >= 0 {
			p.CreationTimestamp = metav1.NewTime(t0.Add(-age))
		}
		p.Spec.Subject = subject
		if deleting {
			now := metav1.NewTime(t0)
			p.DeletionTimestamp = &now
		}
		return p
	}
	const notCreated = -1
	oldest, older, newest := pair("c", "ann", 3*time.Hour, false), pair("b", "ann", 2*time.Hour, false), pair("a", "ann", time.Hour, false)
	cases := map[string]struct {
		pair     kw.AccessKeyPair
		siblings []kw.AccessKeyPair
		want     []string
	}{
		"the oldest pair has none ahead":                 {pair: oldest, siblings: []kw.AccessKeyPair{newest, older, oldest}},
		"the newest has every older one ahead":           {pair: newest, siblings: []kw.AccessKeyPair{oldest, newest, older}, want: []string{"b", "c"}},
		"a pair in admission comes after every one":      {pair: pair("new", "ann", notCreated, false), siblings: []kw.AccessKeyPair{newest, oldest}, want: []string{"a", "c"}},
		"same second: by name":                           {pair: pair("z", "ann", 0, false), siblings: []kw.AccessKeyPair{pair("y", "ann", 0, false), pair("zz", "ann", 0, false)}, want: []string{"y"}},
		"other subjects are not counted":                 {pair: newest, siblings: []kw.AccessKeyPair{pair("o", "bob", 5*time.Hour, false)}},
		"a pair being deleted is not counted":            {pair: newest, siblings: []kw.AccessKeyPair{pair("c", "ann", 3*time.Hour, true)}},
		"a pair without a subject is its own subject":    {pair: pair("ann", "", 0, false), siblings: []kw.AccessKeyPair{oldest}, want: []string{"c"}},
		"a pair named like a subject without one counts": {pair: pair("solo", "", 0, false), siblings: []kw.AccessKeyPair{pair("x", "solo", time.Hour, false)}, want: []string{"x"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := kw.PairsAhead(&c.pair, c.siblings); !slices.Equal(got, c.want) {
				t.Fatalf("PairsAhead = %v, want %v", got, c.want)
			}
		})
	}
}

func TestAPIKeysAhead(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := func(name, subject string, age time.Duration, deleting bool) kw.APIKey {
		k := kw.APIKey{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if age >= 0 {
			k.CreationTimestamp = metav1.NewTime(t0.Add(-age))
		}
		k.Spec.Subject = subject
		if deleting {
			now := metav1.NewTime(t0)
			k.DeletionTimestamp = &now
		}
		return k
	}
	const notCreated = -1
	oldest, older, newest := key("c", "ann", 3*time.Hour, false), key("b", "bob", 2*time.Hour, false), key("a", "", time.Hour, false)
	cases := map[string]struct {
		key      kw.APIKey
		siblings []kw.APIKey
		want     []string
	}{
		"the oldest key has none ahead":                  {key: oldest, siblings: []kw.APIKey{newest, older, oldest}},
		"the newest has every older one ahead":           {key: newest, siblings: []kw.APIKey{oldest, newest, older}, want: []string{"b", "c"}},
		"a key in admission comes after every one":       {key: key("new", "", notCreated, false), siblings: []kw.APIKey{newest, oldest}, want: []string{"a", "c"}},
		"a key in admission is not counted twice":        {key: key("a", "", notCreated, false), siblings: []kw.APIKey{newest, oldest}, want: []string{"c"}},
		"same second: by name":                           {key: key("z", "", 0, false), siblings: []kw.APIKey{key("y", "", 0, false), key("zz", "", 0, false)}, want: []string{"y"}},
		"every subject counts: the cap is per namespace": {key: newest, siblings: []kw.APIKey{key("o", "someone", 5*time.Hour, false), oldest}, want: []string{"c", "o"}},
		"a key being deleted is not counted":             {key: newest, siblings: []kw.APIKey{key("c", "ann", 3*time.Hour, true)}},
		"no siblings, none ahead":                        {key: key("new", "", notCreated, false)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := kw.APIKeysAhead(&c.key, c.siblings); !slices.Equal(got, c.want) {
				t.Fatalf("APIKeysAhead = %v, want %v", got, c.want)
			}
		})
	}
}

package v1alpha1

import (
	"slices"
	"strings"
)

// EffectiveSubject is the subject the key is reported as: spec.subject, or
// the APIKey's name.
func (k *APIKey) EffectiveSubject() string {
	if k.Spec.Subject != "" {
		return k.Spec.Subject
	}
	return k.Name
}

// EffectiveSubject is the subject the pair and its tokens are reported as:
// spec.subject, or the pair's name.
func (p *AccessKeyPair) EffectiveSubject() string {
	if p.Spec.Subject != "" {
		return p.Spec.Subject
	}
	return p.Name
}

// PairsAhead is the per-subject limit, the one rule the admission webhook
// and the controller both apply: the names of the live pairs among siblings
// (the pairs of p's namespace) that hold p's subject before p does — older
// ones, ties broken by name, so every replica agrees. A pair not created yet
// (no creationTimestamp, as in admission) comes after every existing one. p
// is within a limit of max pairs when fewer than max are ahead of it.
func PairsAhead(p *AccessKeyPair, siblings []AccessKeyPair) []string {
	subject := p.EffectiveSubject()
	var ahead []string
	for i := range siblings {
		s := &siblings[i]
		if s.Name == p.Name || !s.DeletionTimestamp.IsZero() || s.EffectiveSubject() != subject {
			continue
		}
		if p.CreationTimestamp.IsZero() || olderPair(s, p) {
			ahead = append(ahead, s.Name)
		}
	}
	slices.Sort(ahead)
	return ahead
}

func olderPair(a, b *AccessKeyPair) bool {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c < 0
	}
	return strings.Compare(a.Name, b.Name) < 0
}

// APIKeysAhead is the per-namespace cap on APIKeys, applied by the admission
// webhook and the controller alike: the names of the live keys among
// siblings (the APIKeys of k's namespace) that hold a place before k — older
// ones, ties broken by name. A key not created yet (no creationTimestamp, as
// in admission) comes after every existing one. k is within a cap of max
// keys when fewer than max are ahead of it.
func APIKeysAhead(k *APIKey, siblings []APIKey) []string {
	var ahead []string
	for i := range siblings {
		s := &siblings[i]
		if s.Name == k.Name || !s.DeletionTimestamp.IsZero() {
			continue
		}
		if k.CreationTimestamp.IsZero() || olderKey(s, k) {
			ahead = append(ahead, s.Name)
		}
	}
	slices.Sort(ahead)
	return ahead
}

func olderKey(a, b *APIKey) bool {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c < 0
	}
	return strings.Compare(a.Name, b.Name) < 0
}

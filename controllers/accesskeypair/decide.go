package accesskeypair

import (
	"slices"
	"time"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

// The decisions of the AccessKeyPair controller, as pure functions.

type action int

const (
	keepPair   action = iota
	issuePair         // generate a new AK/SK and deliver it
	adoptPair         // record the pair found in the delivery Secret
	revokePair        // the pair is over the limit: it must not validate
)

type pairInput struct {
	current *hashsecret.Version
	// deliveredID is the access key id in the delivery Secret ("" if none);
	// deliveredMatches: its secret key verifies against current.
	deliveredID      string
	deliveredMatches bool
	expired          bool
	overLimit        bool
	// hadPair: the record or the status names a pair (a new one is a
	// reissue, not the first).
	hadPair bool
}

// decidePair chooses what happens to the pair.
func decidePair(in pairInput) action {
	switch {
	case in.overLimit:
		if in.current != nil {
			return revokePair
		}
		return keepPair
	case in.deliveredID != "" && (in.current == nil || in.current.ID != in.deliveredID):
		// Delivered before a crash, never recorded: adopt, do not replace.
		return adoptPair
	case in.current == nil && !in.expired:
		return issuePair
	case in.current != nil && !in.deliveredMatches && !in.expired:
		return issuePair // the delivered secret key was deleted or edited: it is lost
	}
	return keepPair
}

// pairPlan is what one reconcile does about the pair. A new pair is always
// delivered before it is recorded: a crash in between leaves it delivered,
// to adopt (decidePair), never lost. A pair has no previous versions, so no
// grace.
type pairPlan struct {
	act action
	// announce: an Issued event for the pair made current; reissued: a
	// KeyReissued warning (the delivered secret key was lost).
	announce, reissued bool
}

// planPair decides about the pair and what to say about it.
func planPair(in pairInput) pairPlan {
	p := pairPlan{act: decidePair(in)}
	switch p.act {
	case issuePair:
		p.announce, p.reissued = true, in.hadPair
	case adoptPair:
		p.announce = !in.hadPair
	}
	return p
}

// withinLimit reports whether pair is among the first max pairs of its
// subject (kw.PairsAhead, the rule the admission webhook applies too).
func withinLimit(pair *kw.AccessKeyPair, siblings []kw.AccessKeyPair, max int) bool {
	if !slices.ContainsFunc(siblings, func(p kw.AccessKeyPair) bool { return p.Name == pair.Name }) {
		return true // not listed yet (cache lag): the webhook already checked it
	}
	return len(kw.PairsAhead(pair, siblings)) < max
}

// tokenPolicy is what the key server enforces on token requests.
func tokenPolicy(spec kw.AccessKeyPairSpec) *hashsecret.TokenPolicy {
	p := &hashsecret.TokenPolicy{DefaultLifetime: defaultLifetime}
	if t := spec.Tokens; t != nil {
		if t.MaxLifetime != nil {
			p.MaxLifetime = t.MaxLifetime.Duration
			p.DefaultLifetime = min(p.DefaultLifetime, p.MaxLifetime)
		}
		if t.DefaultLifetime != nil {
			p.DefaultLifetime = t.DefaultLifetime.Duration
		}
		p.Audiences = slices.Clone(t.Audiences)
	}
	return p
}

var defaultLifetime = mustDuration(kw.DefaultTokenLifetime)

func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// expiryOf is spec.expiresAt, or nil (never).
func expiryOf(spec kw.AccessKeyPairSpec) *time.Time {
	if spec.ExpiresAt == nil {
		return nil
	}
	t := spec.ExpiresAt.UTC()
	return &t
}

package accesskeypair

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/hashsecret"
)

func TestDecidePair(t *testing.T) {
	recorded := &hashsecret.Version{ID: "KWAKREC", NotBefore: t0}
	cases := map[string]struct {
		in   pairInput
		want action
	}{
		"a new pair is issued":                             {in: pairInput{}, want: issuePair},
		"a new pair already expired is never issued":       {in: pairInput{expired: true}, want: keepPair},
		"a delivered and recorded pair stands":             {in: pairInput{current: recorded, deliveredID: "KWAKREC", deliveredMatches: true}, want: keepPair},
		"a pair delivered before a crash is adopted":       {in: pairInput{deliveredID: "KWAKNEW"}, want: adoptPair},
		"a delivery the record does not know is adopted":   {in: pairInput{current: recorded, deliveredID: "KWAKNEW"}, want: adoptPair},
		"a deleted delivery means a lost secret key":       {in: pairInput{current: recorded}, want: issuePair},
		"an edited secret key is lost: a new pair":         {in: pairInput{current: recorded, deliveredID: "KWAKREC"}, want: issuePair},
		"an expired pair whose delivery was lost stays":    {in: pairInput{current: recorded, expired: true}, want: keepPair},
		"an expired pair that stands is not reissued":      {in: pairInput{current: recorded, deliveredID: "KWAKREC", deliveredMatches: true, expired: true}, want: keepPair},
		"over the limit, a recorded pair is revoked":       {in: pairInput{current: recorded, deliveredID: "KWAKREC", deliveredMatches: true, overLimit: true}, want: revokePair},
		"over the limit, nothing recorded: nothing issued": {in: pairInput{overLimit: true}, want: keepPair},
		"over the limit, a delivered pair is not adopted":  {in: pairInput{deliveredID: "KWAKNEW", overLimit: true}, want: keepPair},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := decidePair(c.in); got != c.want {
				t.Fatalf("decidePair = %v, want %v", got, c.want)
			}
		})
	}
}

func TestPlanPair(t *testing.T) {
	recorded := &hashsecret.Version{ID: "KWAKREC", NotBefore: t0}
	cases := map[string]struct {
		in   pairInput
		want pairPlan
	}{
		"a first pair is announced":                                   {in: pairInput{}, want: pairPlan{act: issuePair, announce: true}},
		"a pair issued after its secret key was lost is warned about": {in: pairInput{current: recorded, hadPair: true}, want: pairPlan{act: issuePair, announce: true, reissued: true}},
		"a status naming a pair whose record is gone makes a reissue": {in: pairInput{hadPair: true}, want: pairPlan{act: issuePair, announce: true, reissued: true}},
		"a first pair adopted after a crash is announced":             {in: pairInput{deliveredID: "KWAKNEW"}, want: pairPlan{act: adoptPair, announce: true}},
		"a pair adopted in place of a recorded one is not news":       {in: pairInput{current: recorded, deliveredID: "KWAKNEW", hadPair: true}, want: pairPlan{act: adoptPair}},
		"a revoked pair is not announced (LimitExceeded says it)":     {in: pairInput{current: recorded, hadPair: true, overLimit: true}, want: pairPlan{act: revokePair}},
		"a pair that stands says nothing":                             {in: pairInput{current: recorded, deliveredID: "KWAKREC", deliveredMatches: true, hadPair: true}, want: pairPlan{act: keepPair}},
		"an expired pair with nothing delivered says nothing, either": {in: pairInput{expired: true}, want: pairPlan{act: keepPair}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := planPair(c.in); got != c.want {
				t.Fatalf("planPair = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestWithinLimit(t *testing.T) {
	pair := func(name, subject string, age time.Duration, deleting bool) kw.AccessKeyPair {
		p := kw.AccessKeyPair{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age))}}
		p.Spec.Subject = subject
		if deleting {
			now := metav1.NewTime(t0)
			p.DeletionTimestamp = &now
		}
		return p
	}
	oldest, older, newest := pair("c", "ann", 3*time.Hour, false), pair("b", "ann", 2*time.Hour, false), pair("a", "ann", time.Hour, false)
	cases := map[string]struct {
		pair     kw.AccessKeyPair
		siblings []kw.AccessKeyPair
		want     bool
	}{
		"the only pair of its subject is within the limit":         {pair: newest, siblings: []kw.AccessKeyPair{newest}, want: true},
		"the two oldest of three are within a limit of two":        {pair: older, siblings: []kw.AccessKeyPair{newest, older, oldest}, want: true},
		"the newest of three is over a limit of two":               {pair: newest, siblings: []kw.AccessKeyPair{oldest, newest, older}, want: false},
		"pairs created in the same second go by name":              {pair: pair("z", "ann", 0, false), siblings: []kw.AccessKeyPair{pair("x", "ann", 0, false), pair("y", "ann", 0, false), pair("z", "ann", 0, false)}, want: false},
		"other subjects' pairs take no place":                      {pair: newest, siblings: []kw.AccessKeyPair{pair("o1", "bob", 5*time.Hour, false), pair("o2", "bob", 5*time.Hour, false), newest}, want: true},
		"a pair being deleted frees its place":                     {pair: newest, siblings: []kw.AccessKeyPair{pair("c", "ann", 3*time.Hour, true), older, newest}, want: true},
		"a pair without a subject is its own subject":              {pair: pair("solo", "", 0, false), siblings: []kw.AccessKeyPair{oldest, older, pair("solo", "", 0, false)}, want: true},
		"a pair not listed yet (cache lag) is let through for now": {pair: newest, siblings: []kw.AccessKeyPair{oldest, older}, want: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := withinLimit(&c.pair, c.siblings, 2); got != c.want {
				t.Fatalf("withinLimit = %v, want %v", got, c.want)
			}
		})
	}
}

func TestTokenPolicy(t *testing.T) {
	d := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	cases := map[string]struct {
		tokens *kw.TokenPolicy
		want   hashsecret.TokenPolicy
	}{
		"no token policy: the default lifetime, no cap": {
			want: hashsecret.TokenPolicy{DefaultLifetime: 72 * time.Hour},
		},
		"a cap below the default lifetime lowers it": {
			tokens: &kw.TokenPolicy{MaxLifetime: d(time.Hour)}, want: hashsecret.TokenPolicy{MaxLifetime: time.Hour, DefaultLifetime: time.Hour},
		},
		"a cap above the default lifetime leaves it": {
			tokens: &kw.TokenPolicy{MaxLifetime: d(100 * time.Hour)}, want: hashsecret.TokenPolicy{MaxLifetime: 100 * time.Hour, DefaultLifetime: 72 * time.Hour},
		},
		"a default lifetime given is taken as given": {
			tokens: &kw.TokenPolicy{DefaultLifetime: d(10 * time.Minute), MaxLifetime: d(time.Hour)},
			want:   hashsecret.TokenPolicy{MaxLifetime: time.Hour, DefaultLifetime: 10 * time.Minute},
		},
		"audiences are passed on": {
			tokens: &kw.TokenPolicy{Audiences: []string{"reports", "billing"}},
			want:   hashsecret.TokenPolicy{DefaultLifetime: 72 * time.Hour, Audiences: []string{"reports", "billing"}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := tokenPolicy(kw.AccessKeyPairSpec{Tokens: c.tokens})
			if got.MaxLifetime != c.want.MaxLifetime || got.DefaultLifetime != c.want.DefaultLifetime || !slices.Equal(got.Audiences, c.want.Audiences) {
				t.Fatalf("tokenPolicy = %+v, want %+v", *got, c.want)
			}
			if c.tokens != nil && len(c.tokens.Audiences) > 0 && &got.Audiences[0] == &c.tokens.Audiences[0] {
				t.Fatal("the record shares the spec's audiences: an edit of one would change the other")
			}
		})
	}
}

func TestReadyCondition(t *testing.T) {
	end := metav1.NewTime(t0.Add(time.Hour))
	pair := func(edit func(*kw.AccessKeyPair)) *kw.AccessKeyPair {
		p := &kw.AccessKeyPair{Status: kw.AccessKeyPairStatus{AccessKeyID: "KWAK1"}}
		if edit != nil {
			edit(p)
		}
		return p
	}
	expiring := func(p *kw.AccessKeyPair) { p.Spec.ExpiresAt = &end }
	cases := map[string]struct {
		pair    *kw.AccessKeyPair
		now     time.Time
		blocked string
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		"an issued pair is valid": {
			pair: pair(nil), now: t0, status: metav1.ConditionTrue, reason: kw.ReasonIssued, message: "access key KWAK1 is valid",
		},
		"a pair not issued yet is Pending, Unknown rather than False": {
			pair: &kw.AccessKeyPair{}, now: t0, status: metav1.ConditionUnknown, reason: kw.ReasonPending, message: "no access key is issued yet",
		},
		"within the window before spec.expiresAt it is ExpiringSoon": {
			pair: pair(expiring), now: t0.Add(45 * time.Minute), status: metav1.ConditionTrue, reason: kw.ReasonExpiringSoon,
			message: "access key KWAK1 is valid; the pair expires at 2026-11-22T13:00:00Z",
		},
		"before the window it is Issued": {
			pair: pair(expiring), now: t0, status: metav1.ConditionTrue, reason: kw.ReasonIssued, message: "access key KWAK1 is valid",
		},
		"at spec.expiresAt it is Expired": {
			pair: pair(expiring), now: end.Time, status: metav1.ConditionFalse, reason: kw.ReasonExpired, message: "the pair expired at 2026-11-22T13:00:00Z",
		},
		"a suspended pair says what suspension does to tokens": {
			pair: pair(func(p *kw.AccessKeyPair) { p.Spec.Suspended = true }), now: t0, status: metav1.ConditionFalse, reason: kw.ReasonSuspended,
			message: "the pair is suspended: no tokens are issued and issued tokens are refused",
		},
		"the per-subject limit outranks everything": {
			pair: pair(func(p *kw.AccessKeyPair) { p.Spec.Suspended = true; p.Spec.ExpiresAt = &end }), now: end.Time, blocked: kw.ReasonLimitExceeded,
			status: metav1.ConditionFalse, reason: kw.ReasonLimitExceeded, message: "msg",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := pairs{}.View(c.pair).Ready(c.now, 30*time.Minute, names.Words, c.blocked, "msg")
			if got.Status != c.status || got.Reason != c.reason || got.Message != c.message {
				t.Fatalf("Ready = %s/%s %q, want %s/%s %q", got.Status, got.Reason, got.Message, c.status, c.reason, c.message)
			}
		})
	}
}

// t0 is the instant the tables are set at.
var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

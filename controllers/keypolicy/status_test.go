package keypolicy

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	policy "github.com/keyward/keyward/internal/keypolicy"
)

func TestDesiredStatus(t *testing.T) {
	winner := policy.Ref{Namespace: "team-b", Name: "api"}
	for name, tc := range map[string]struct {
		st                                policy.Status
		accepted                          metav1.ConditionStatus
		acceptedReason, readyReason, text string
		ready                             metav1.ConditionStatus
		matched                           int32
	}{
		"every host held: accepted and in force": {
			policy.Status{Hosts: 2, Held: []string{"a.example.com", "b.example.com"}},
			metav1.ConditionTrue, kw.ReasonAccepted, kw.ReasonInForce, "", metav1.ConditionTrue, 2},
		"some hosts lost: conflicted, naming the winner, and partially in force": {
			policy.Status{Hosts: 2, Held: []string{"b.example.com"}, Lost: []policy.Loss{{Host: "a.example.com", Winner: winner}}},
			metav1.ConditionFalse, kw.ReasonConflicted, kw.ReasonPartiallyInForce, "a.example.com by team-b/api", metav1.ConditionTrue, 1},
		"every host lost: conflicted and not ready": {
			policy.Status{Hosts: 1, Lost: []policy.Loss{{Host: "a.example.com", Winner: winner}}},
			metav1.ConditionFalse, kw.ReasonConflicted, kw.ReasonConflicted, "older KeyPolicies hold 1 of its 1 hosts: a.example.com by team-b/api", metav1.ConditionFalse, 0},
		"many hosts lost: the message names three": {
			policy.Status{Hosts: 5, Lost: []policy.Loss{{Host: "a", Winner: winner}, {Host: "b", Winner: winner}, {Host: "c", Winner: winner}, {Host: "d", Winner: winner}, {Host: "e", Winner: winner}}},
			metav1.ConditionFalse, kw.ReasonConflicted, kw.ReasonConflicted, "c by team-b/api, and 2 more", metav1.ConditionFalse, 0},
		"invalid: not accepted and not ready, though it holds its hosts": {
			policy.Status{Hosts: 1, Held: []string{"a.example.com"}, Invalid: "spec.rules[1] is never used"},
			metav1.ConditionFalse, kw.ReasonInvalid, kw.ReasonInvalid, "spec.rules[1] is never used", metav1.ConditionFalse, 1},
	} {
		t.Run(name, func(t *testing.T) {
			now := metav1.NewTime(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
			obj := &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			got := desiredStatus(obj, tc.st, now)
			a := meta.FindStatusCondition(got.Conditions, kw.ConditionAccepted)
			r := meta.FindStatusCondition(got.Conditions, kw.ConditionReady)
			if a == nil || r == nil {
				t.Fatalf("conditions %+v", got.Conditions)
			}
			if a.Status != tc.accepted || a.Reason != tc.acceptedReason || r.Status != tc.ready || r.Reason != tc.readyReason {
				t.Fatalf("Accepted %s/%s Ready %s/%s", a.Status, a.Reason, r.Status, r.Reason)
			}
			if !strings.Contains(a.Message, tc.text) {
				t.Fatalf("Accepted message %q lacks %q", a.Message, tc.text)
			}
			if *got.MatchedHosts != tc.matched || got.ObservedGeneration != 3 || a.ObservedGeneration != 3 || !a.LastTransitionTime.Equal(&now) {
				t.Fatalf("status %+v", got)
			}
		})
	}
}

// A condition keeps its transition time while its status stays; the rest
// of it follows the new generation.
func TestDesiredStatusKeepsTransitionTimes(t *testing.T) {
	then := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(then.Add(time.Hour))
	obj := &kw.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	st := policy.Status{Hosts: 1, Held: []string{"a.example.com"}}
	obj.Status = desiredStatus(obj, st, then)
	obj.Generation = 2
	got := desiredStatus(obj, st, now)
	a := meta.FindStatusCondition(got.Conditions, kw.ConditionAccepted)
	if !a.LastTransitionTime.Equal(&then) || a.ObservedGeneration != 2 {
		t.Fatalf("Accepted %+v", a)
	}
	st.Invalid = "broken"
	got = desiredStatus(obj, st, now)
	if a := meta.FindStatusCondition(got.Conditions, kw.ConditionAccepted); !a.LastTransitionTime.Equal(&now) || a.Reason != kw.ReasonInvalid {
		t.Fatalf("Accepted %+v", a)
	}
}

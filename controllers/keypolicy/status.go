package keypolicy

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	policy "github.com/keyward/keyward/internal/keypolicy"
)

// maxLossesNamed bounds the conflicts a message names (a policy names at
// most 16 hosts; the message stays readable).
const maxLossesNamed = 3

// desiredStatus is obj's status for what Resolve decided: the conditions
// (kept, with their transition times, where unchanged), matchedHosts and
// observedGeneration. now stamps conditions that change.
func desiredStatus(obj *kw.KeyPolicy, st policy.Status, now metav1.Time) kw.KeyPolicyStatus {
	out := *obj.Status.DeepCopy()
	gen := obj.Generation
	matched := int32(len(st.Held))
	out.MatchedHosts = &matched
	out.ObservedGeneration = gen
	accepted, ready := accepted(st), readiness(st)
	for _, c := range []*metav1.Condition{&accepted, &ready} {
		c.ObservedGeneration, c.LastTransitionTime = gen, now
		meta.SetStatusCondition(&out.Conditions, *c)
	}
	return out
}

// accepted: Invalid, else Conflicted if any host is held by an older
// policy, else Accepted.
func accepted(st policy.Status) metav1.Condition {
	c := metav1.Condition{Type: kw.ConditionAccepted, Status: metav1.ConditionFalse}
	switch {
	case st.Invalid != "":
		c.Reason, c.Message = kw.ReasonInvalid, st.Invalid
	case len(st.Lost) > 0:
		c.Reason, c.Message = kw.ReasonConflicted, conflictMessage(st)
	default:
		c.Status, c.Reason = metav1.ConditionTrue, kw.ReasonAccepted
		c.Message = fmt.Sprintf("no older KeyPolicy holds any of its %d hosts", st.Hosts)
	}
	return c
}

// readiness: whether the key server applies the policy, and to how much.
func readiness(st policy.Status) metav1.Condition {
	c := metav1.Condition{Type: kw.ConditionReady, Status: metav1.ConditionFalse}
	held := len(st.Held)
	switch {
	case st.Invalid != "":
		// It still holds its hosts, so that they stay its own.
		c.Reason = kw.ReasonInvalid
		c.Message = fmt.Sprintf("not applied: the %d hosts it holds refuse every request until the spec is fixed", held)
	case held == 0:
		c.Reason, c.Message = kw.ReasonConflicted, "not applied: older KeyPolicies hold every host it names"
	case len(st.Lost) > 0:
		c.Status, c.Reason = metav1.ConditionTrue, kw.ReasonPartiallyInForce
		c.Message = fmt.Sprintf("applied to %d of its %d hosts", held, st.Hosts)
	default:
		c.Status, c.Reason = metav1.ConditionTrue, kw.ReasonInForce
		c.Message = fmt.Sprintf("applied to all its %d hosts", held)
	}
	return c
}

// conflictMessage names the hosts lost and the older policies holding them.
func conflictMessage(st policy.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "older KeyPolicies hold %d of its %d hosts: ", len(st.Lost), st.Hosts)
	for i, l := range st.Lost {
		if i == maxLossesNamed {
			fmt.Fprintf(&b, ", and %d more", len(st.Lost)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s by %s", l.Host, l.Winner)
	}
	return b.String()
}

package main

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

func rotatedKey(listed ...string) *kw.APIKey {
	k := &kw.APIKey{ObjectMeta: metav1.ObjectMeta{Name: "billing", Generation: 3}}
	k.Spec.RevokedKeyIDs = listed
	k.Status.KeyID = "cur"
	k.Status.PreviousKeys = []kw.PreviousKey{{KeyID: "p1"}, {KeyID: "p2"}}
	return k
}

func TestPlanVersionRevocation(t *testing.T) {
	full := make([]string, maxRevokedKeyIDs)
	for i := range full {
		full[i] = "x" + strings.Repeat("y", i)
	}
	cases := map[string]struct {
		key     *kw.APIKey
		id      string
		want    versionRevocation
		wantErr string
	}{
		"a previous version is listed":                   {key: rotatedKey(), id: "p1", want: revokeList},
		"a previous version listed already is waited on": {key: rotatedKey("p1"), id: "p1", want: revokeWait},
		"a listed id that no longer validates is done":   {key: rotatedKey("gone"), id: "gone", want: revokeDone},
		"the current version is refused: rotate first": {key: rotatedKey(), id: "cur",
			wantErr: `key id cur is the current version of APIKey "billing": the current version is never revoked alone. Rotate first (kubectl keyward rotate billing --wait)`},
		"the current version is refused even when listed": {key: rotatedKey("cur"), id: "cur", wantErr: "is the current version"},
		"an unknown id is refused, naming the versions there are": {key: rotatedKey(), id: "other",
			wantErr: `APIKey "billing" has no previous version with key id other (previous versions: p1, p2)`},
		"a full list is refused, saying what may go": {key: rotatedKey(full...), id: "p1", wantErr: "holds 16 ids, the most allowed"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := planVersionRevocation(c.key, c.id)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("planVersionRevocation error = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("planVersionRevocation = %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestVersionRevoked(t *testing.T) {
	cond := func(status metav1.ConditionStatus, reason string, gen int64) metav1.Condition {
		return metav1.Condition{Type: kw.ConditionKeyIDsRevoked, Status: status, Reason: reason, Message: "why", ObservedGeneration: gen}
	}
	seen := func(k *kw.APIKey, c ...metav1.Condition) *kw.APIKey {
		k.Status.ObservedGeneration, k.Status.Conditions = k.Generation, c
		return k
	}
	withoutP1 := func(k *kw.APIKey) *kw.APIKey { k.Status.PreviousKeys = k.Status.PreviousKeys[1:]; return k }
	becameCurrent := func(k *kw.APIKey) *kw.APIKey { k.Status.KeyID = "p1"; return k }
	cases := map[string]struct {
		key     *kw.APIKey
		done    bool
		wantErr bool
	}{
		"the controller has not seen the edit":            {key: rotatedKey("p1")},
		"seen, but no condition yet":                      {key: seen(rotatedKey("p1"))},
		"a condition of an older generation":              {key: seen(rotatedKey("p1"), cond(metav1.ConditionTrue, kw.ReasonRevoked, 2))},
		"seen and gone from the previous versions: done":  {key: seen(withoutP1(rotatedKey("p1")), cond(metav1.ConditionTrue, kw.ReasonRevoked, 3)), done: true},
		"still listed as previous (stale status): wait":   {key: seen(rotatedKey("p1"), cond(metav1.ConditionTrue, kw.ReasonRevoked, 3))},
		"refused by the controller: its message is shown": {key: seen(becameCurrent(rotatedKey("p1")), cond(metav1.ConditionFalse, kw.ReasonRevokeRefused, 3)), wantErr: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			done, err := versionRevoked(c.key, "p1", 3)
			if done != c.done || (err != nil) != c.wantErr {
				t.Fatalf("versionRevoked = %v, %v; want %v, error %v", done, err, c.done, c.wantErr)
			}
		})
	}
}

func TestValidKeyID(t *testing.T) {
	for id, want := range map[string]bool{
		"3hT9aQx0LmZb": true, "KWAKABCDEFGHIJKLMNOP": true, strings.Repeat("a", 64): true,
		"": false, strings.Repeat("a", 65): false, "kw_3hT9aQx0LmZb_secret": false, "a,b": false, "a b": false,
	} {
		if got := validKeyID(id); got != want {
			t.Errorf("validKeyID(%q) = %v, want %v", id, got, want)
		}
	}
}

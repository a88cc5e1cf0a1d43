package apikey

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/hashsecret"
)

// The decisions this package's tests have always covered that moved to the
// lifecycle shared with AccessKeyPairs (issue 13), under their old names:
// the tests stay as they were and test the shared code with the APIKey's view.

func capAtExpiry(rec *hashsecret.Record, expiry *time.Time) { keylifecycle.CapAtExpiry(rec, expiry) }

func requeueAfter(now time.Time, instants ...*time.Time) time.Duration {
	return keylifecycle.RequeueAfter(now, instants...)
}

func readyCondition(key *kw.APIKey, now time.Time, expiry *time.Time, window time.Duration, blockedReason, blockedMessage string) metav1.Condition {
	v := apiKeys{}.View(key)
	v.Expiry = expiry
	return v.Ready(now, window, names.Words, blockedReason, blockedMessage)
}

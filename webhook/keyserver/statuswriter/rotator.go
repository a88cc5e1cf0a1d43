// Package statuswriter holds the key server's only writes to the API
// server, both to the status subresource of the keys it serves: the
// self-rotation request it leaves for the APIKey controller (StatusRotator)
// and status.lastUsedAt and status.usage, remembered in memory (LastUsed)
// and written back in batches (UsageWriter). The HTTP side (webhook/keyserver) reads only its
// index; the index is fed by webhook/keyserver/feed.
package statuswriter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/selfrotation"
)

// StatusRotator is the key server's half of self-rotation
// (internal/selfrotation), its keyserver.Rotator: it asks the APIKey
// controller for a successor through the APIKey's status and waits for the
// answer, so the key server needs no right to write Secrets. The new key
// travels encrypted to a one-time age identity that never leaves this
// process.
type StatusRotator struct {
	// Client reads live (the key server caches no APIKeys) and patches
	// apikeys/status.
	Client client.Client
	Clock  clock.PassiveClock
}

// errRotationInProgress: another self-rotation of the key is pending.
var errRotationInProgress = errors.New("another rotation of this key is in progress")

// SelfRotationWindow is how long the controller may begin acting on a
// request; the key server waits AnswerMargin longer for the answer, time for
// the controller's writes after its last deadline check.
const (
	SelfRotationWindow = 4 * time.Second
	AnswerMargin       = 3 * time.Second
)

// Rotate implements keyserver.Rotator. Refusals wrap
// selfrotation.ErrNotRotatable; a forged answer is
// selfrotation.ErrForgedAnswer.
func (sr *StatusRotator) Rotate(ctx context.Context, namespace, name, presentedKeyID, presentedHash string) (string, string, error) {
	identity, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", err
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", err
	}
	reqID := hex.EncodeToString(raw[:])
	ref := types.NamespacedName{Namespace: namespace, Name: name}
	var deadline time.Time

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := &kw.APIKey{}
		if err := sr.Client.Get(ctx, ref, obj); err != nil {
			return err
		}
		if selfrotation.Pending(&obj.Status, sr.Clock.Now()) {
			return errRotationInProgress
		}
		// Optimistic lock: a request written meanwhile is not overwritten.
		patch := client.MergeFromWithOptions(obj.DeepCopy(), client.MergeFromWithOptimisticLock{})
		req := selfrotation.NewRequest(reqID, namespace, name, presentedKeyID, presentedHash,
			identity.Recipient().String(), sr.Clock.Now(), SelfRotationWindow)
		obj.Status.SelfRotationRequest, deadline = req, req.Deadline.Time
		return sr.Client.Status().Patch(ctx, obj, patch)
	})
	switch {
	case errors.Is(err, errRotationInProgress), apierrors.IsNotFound(err):
		return "", "", fmt.Errorf("%w: %w", selfrotation.ErrNotRotatable, err)
	case err != nil:
		return "", "", err
	}

	var answer *kw.SelfRotationResponse
	wctx, cancel := context.WithDeadline(ctx, deadline.Add(AnswerMargin))
	defer cancel()
	backoff := wait.Backoff{Duration: 20 * time.Millisecond, Factor: 1.5, Cap: 250 * time.Millisecond, Steps: 1 << 30}
	err = wait.ExponentialBackoffWithContext(wctx, backoff, func(ctx context.Context) (bool, error) {
		obj := &kw.APIKey{}
		if err := sr.Client.Get(ctx, ref, obj); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if r := obj.Status.SelfRotationResponse; r != nil && r.ID == reqID {
			answer = r
			return true, nil
		}
		return false, nil
	})
	switch {
	case err != nil:
		return "", "", fmt.Errorf("waiting for the controller to rotate: %w", err)
	case answer.Refused != "":
		return "", "", fmt.Errorf("%w: the controller refused (%s)", selfrotation.ErrNotRotatable, answer.Refused)
	case !selfrotation.VerifyAnswer(presentedHash, namespace, name, answer):
		// Checked before decrypting: nothing a forger chose is handed out.
		return "", "", selfrotation.ErrForgedAnswer
	}
	key, err := agecrypt.Decrypt(answer.EncryptedKey, identity)
	if err != nil {
		return "", "", err
	}
	return key, answer.KeyID, nil
}

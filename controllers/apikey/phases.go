package apikey

import (
	"context"
	"fmt"
	"slices"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// phases bring the hash Secret, the deliveries and the status in line with
// the spec, in order; each does what the plan asks of it, or nothing. A
// phase that blocks the key ends the list (keylifecycle.Run).
var phases = []keylifecycle.Phase[*scope]{
	reconcileBlocked,
	reconcilePlan,
	reconcileFreshness,
	reconcileNewKey,
	reconcileDeliverFirst,
	reconcileVersions,
	reconcileRevoke,
	reconcileAnswer,
	reconcileAge,
	reconcileRecord,
	reconcileDeliverLast,
	reconcileStatus,
}

// reconcileBlocked names the subject and the hash Secret in the status, and
// stops at what blocks a new version: someone else's Secret under
// spec.secretName, a namespace at its cap of keys, or an import that cannot
// be used. A key over the cap is looked at again when a sibling changes or
// leaves (the overCapSiblings watch).
func reconcileBlocked(ctx context.Context, s *scope) (ctrl.Result, error) {
	key := s.key
	key.Status.Subject = key.EffectiveSubject()
	key.Status.HashSecretName = s.HashName
	switch {
	case s.Conflict:
		return s.block(ctx, kw.ReasonDeliveryConflict,
			fmt.Sprintf("Secret %q exists and is not owned by this APIKey; Keyward will not overwrite it", key.Spec.SecretName))
	case s.overCap:
		return s.block(ctx, kw.ReasonLimitExceeded, capMessage(s.r.MaxPerNamespace))
	case key.Spec.ImportFrom != nil && s.imported == nil:
		return s.block(ctx, s.importReason, s.importMessage)
	}
	return ctrl.Result{}, nil
}

// reconcilePlan repairs the record from what the cluster holds and plans
// what happens to the key's versions.
func reconcilePlan(_ context.Context, s *scope) (ctrl.Result, error) {
	s.rec = recordFrom(s)
	if s.HashSecret != nil && !s.Corrupt {
		s.age = string(s.HashSecret.Data[hashsecret.DataAge])
	}
	in := planInput{version: versionInputOf(s), hadVersion: s.rec.Current != nil || s.key.Status.KeyID != "",
		reportedID: s.key.Status.KeyID, grace: gracePeriod(s.key)}
	if s.r.RequestedRotations != nil {
		in.rotationWait = s.r.RequestedRotations.Wait(s.key.Namespace, s.key.Name)
	}
	s.plan = planVersion(in)
	if in.version.deliveredMatches {
		s.plaintext = s.delivered
	}
	return ctrl.Result{}, nil
}

// versionInputOf gathers what decideVersion looks at.
func versionInputOf(s *scope) versionInput {
	key, rec := s.key, s.rec
	in := versionInput{
		now:         s.Now,
		expired:     keylifecycle.ExpiredAt(s.View.Expiry, s.Now),
		current:     rec.Current,
		wantsSecret: key.Spec.SecretName != "",
		wantsAge:    key.Spec.Delivery != nil,
		ageUpToDate: s.age != "" && slices.Equal(rec.AgeRecipients, recipients(key)),
		// The recipients the record names are those the current version was
		// delivered to (none when the record had to be rebuilt).
		recipientsAdded:    addsRecipients(recipients(key), rec.AgeRecipients),
		deliveredForWanted: !addsRecipients(recipients(key), s.deliveredFor),
		suspended:          key.Spec.Suspended,
		rotatePending:      rotateValue(key) != "" && rotateValue(key) != rec.RotateRequest,
		deliveredIsOld:     s.delivered != nil && isStaleDelivery(rec, s.delivered.ID, key.Spec.RevokedKeyIDs),
		forced:             s.forceRotate,
	}
	if s.delivered != nil {
		in.deliveredID = s.delivered.ID
		in.deliveredMatches = rec.Current != nil && rec.Current.ID == s.delivered.ID && s.delivered.Verify(rec.Current.Hash)
	}
	if s.imported != nil {
		in.importedHash = s.imported.hash
	}
	if key.Spec.Rotation != nil {
		in.period = key.Spec.Rotation.Period.Duration
	}
	return in
}

// reconcileFreshness checks, before a new version overwrites anything, that
// the cache is current, and that a self-rotation's asker still waits.
func reconcileFreshness(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.plan.act != issueVersion {
		return ctrl.Result{}, nil
	}
	if err := s.CheckFresh(ctx); err != nil {
		return ctrl.Result{}, err
	}
	if s.forceRotate && s.selfRotation != nil && !s.Clock().Now().Before(s.selfRotation.Deadline.Time) {
		// Checked again before the first write: past the deadline the asker
		// has stopped waiting for the answer.
		return ctrl.Result{}, errSelfRotationExpired
	}
	return ctrl.Result{}, nil
}

// reconcileNewKey generates the new version, and its age ciphertext.
func reconcileNewKey(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.plan.act != issueVersion {
		return ctrl.Result{}, nil
	}
	k, err := keymaterial.Generate(prefixOf(s.key))
	if err != nil {
		return ctrl.Result{}, err
	}
	s.plaintext = &k
	if s.key.Spec.Delivery != nil {
		if s.age, err = agecrypt.Encrypt(k.String(), recipients(s.key)); err != nil {
			return s.block(ctx, kw.ReasonDeliveryFailed, err.Error())
		}
	}
	return ctrl.Result{}, nil
}

// reconcileDeliverFirst delivers a new version before it is recorded, when
// the plan says so (deliverThenRecord).
func reconcileDeliverFirst(ctx context.Context, s *scope) (ctrl.Result, error) {
	return deliverIn(ctx, s, deliverThenRecord)
}

// reconcileDeliverLast delivers a new version after it is recorded, when
// the plan says so (recordThenDeliver).
func reconcileDeliverLast(ctx context.Context, s *scope) (ctrl.Result, error) {
	return deliverIn(ctx, s, recordThenDeliver)
}

func deliverIn(ctx context.Context, s *scope, order writeOrder) (ctrl.Result, error) {
	if s.plan.act != issueVersion || s.plan.order != order {
		return ctrl.Result{}, nil
	}
	if err := writeDelivery(ctx, s, *s.plaintext); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, s.AfterWrite(ctx, StepDelivered)
}

// reconcileVersions makes the planned version current, retiring the one it
// replaces with the planned grace.
func reconcileVersions(_ context.Context, s *scope) (ctrl.Result, error) {
	rec, now := s.rec, s.Now
	switch s.plan.act {
	case issueVersion:
		retire(rec, now, s.plan.grace)
		rec.Current = newVersion(*s.plaintext, now)
		if s.key.Spec.Delivery != nil {
			rec.AgeRecipients = recipients(s.key) // what age holds now
		}
	case adoptDelivered:
		s.plaintext = s.delivered
		retire(rec, now, s.plan.grace)
		rec.Current = newVersion(*s.delivered, now)
		// Its age ciphertext was lost with the record: it is made again
		// for the recipients it was written for, never others (ageTargets).
		s.age, rec.AgeRecipients = "", s.deliveredFor
	case useImported:
		// A random public id, drawn once and kept in the record: nothing
		// public derives from a key its importer might not read (issue 12,
		// attack 3). The key server finds it by its hash.
		id, err := keymaterial.GenerateID()
		if err != nil {
			return ctrl.Result{}, err
		}
		since := now
		if s.plan.keepSince {
			since = rec.Current.NotBefore // bound since then: it stays first
		}
		retire(rec, now, 0)
		rec.Current = &hashsecret.Version{ID: id, Hash: s.imported.hash, Lookup: s.imported.lookup, NotBefore: since, Hint: hashsecret.HintImported}
	}
	return ctrl.Result{}, nil
}

// reconcileRevoke ends the previous versions spec.revokedKeyIDs lists,
// after the plan's rotation: a listed version that was current until now
// gets no grace.
func reconcileRevoke(_ context.Context, s *scope) (ctrl.Result, error) {
	s.revoke(s.rec)
	return ctrl.Result{}, nil
}

// reconcileAnswer answers a self-rotation with the new version, and
// announces it.
func reconcileAnswer(_ context.Context, s *scope) (ctrl.Result, error) {
	act := s.plan.act
	if act == issueVersion || act == adoptDelivered {
		s.issued = s.plaintext
		if err := answerSelfRotation(s.key, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	if act != keepVersion {
		s.rec.RotateRequest = rotateValue(s.key)
		versionEvent(s, s.plan.hadVersion, s.rec.Current.ID, s.plan.why)
	}
	return ctrl.Result{}, nil
}

// reconcileAge brings the age ciphertext in line with the recipients.
func reconcileAge(ctx context.Context, s *scope) (ctrl.Result, error) {
	age, err := ageDelivery(s.key, s.rec, s.age, s.plaintext)
	if err != nil {
		return s.block(ctx, kw.ReasonDeliveryFailed, err.Error())
	}
	s.age = age
	return ctrl.Result{}, nil
}

// reconcileRecord writes the hash Secret with the spec's policy.
func reconcileRecord(ctx context.Context, s *scope) (ctrl.Result, error) {
	applySpec(s.key, s.rec, s.Now, s.View.Expiry)
	wrote, err := s.WriteRecord(ctx, s.rec, recordData(s, s.age))
	if err != nil || !wrote {
		return ctrl.Result{}, err
	}
	s.Revoked(s.revocation)
	if s.plan.spends && s.r.RequestedRotations != nil {
		// Spent once recorded: a failed attempt costs nothing.
		s.r.RequestedRotations.Take(s.key.Namespace, s.key.Name)
	}
	return ctrl.Result{}, s.AfterWrite(ctx, StepRecorded)
}

// followUpWait is how soon a reconcile follows one that planned another
// (plan.followUp): its own writes trigger none.
const followUpWait = time.Second

// reconcileStatus mirrors the record into the status and says when the key
// changes next on its own.
func reconcileStatus(_ context.Context, s *scope) (ctrl.Result, error) {
	expiry := s.View.Expiry
	setStatus(s.key, s.rec, s.age, s.Now, expiry)
	s.SetConditions("", "")
	s.SetRevocation(s.revocation)
	if s.plan.deferredUntil != nil {
		noteDeferredRotation(s.key, s.plan.deferred, *s.plan.deferredUntil)
	}
	instants := []*time.Time{nextRotation(s.key.Spec, s.rec, expiry, s.Now), s.plan.deferredUntil}
	if s.plan.followUp {
		soon := s.Now.Add(followUpWait)
		instants = append(instants, &soon)
	}
	for _, v := range s.rec.Previous {
		instants = append(instants, v.NotAfter)
	}
	return s.Requeue(s.imported != nil, instants...), nil
}

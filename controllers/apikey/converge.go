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

// converge brings the hash Secret, the deliveries and the status in line
// with the spec. It returns when the key changes on its own.
func converge(ctx context.Context, s *scope) (ctrl.Result, error) {
	r, key := s.r, s.key
	now, expiry := s.Now, s.View.Expiry
	st := &key.Status
	st.Subject = subjectOf(key)
	st.HashSecretName = s.HashName

	switch {
	case s.Conflict:
		return s.block(ctx, kw.ReasonDeliveryConflict,
			fmt.Sprintf("Secret %q exists and is not owned by this APIKey; Keyward will not overwrite it", key.Spec.SecretName))
	case key.Spec.ImportFrom != nil && s.imported == nil:
		return s.block(ctx, s.importReason, s.importMessage)
	}

	rec := recordFrom(s)
	age := ""
	if s.HashSecret != nil && !s.Corrupt {
		age = string(s.HashSecret.Data[hashsecret.DataAge])
	}
	wantsAge := key.Spec.Delivery != nil
	in := versionInput{
		now:         now,
		expired:     keylifecycle.ExpiredAt(expiry, now),
		current:     rec.Current,
		wantsSecret: key.Spec.SecretName != "",
		wantsAge:    wantsAge,
		ageUpToDate: age != "" && slices.Equal(rec.AgeRecipients, recipients(key)),
		// The recipients the record names are those the current version was
		// delivered to (none when the record had to be rebuilt).
		recipientsAdded: addsRecipients(recipients(key), rec.AgeRecipients),
		suspended:       key.Spec.Suspended,
		rotatePending:   rotateValue(key) != "" && rotateValue(key) != rec.RotateRequest,
		deliveredIsOld:  s.delivered != nil && (isPrevious(rec, s.delivered.ID) || slices.Contains(rec.Retired, s.delivered.ID)),
		forced:          s.forceRotate,
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

	// plaintext is the current version's key when this reconcile has it.
	var plaintext *keymaterial.Key
	// deliverAfterRecord: this reconcile's new version goes to the delivery
	// Secret after the hash Secret.
	var deliverAfterRecord bool
	if in.deliveredMatches {
		plaintext = s.delivered
	}
	// Rotations asked for with the annotation are limited per key: each is
	// a reconcile and several writes, and anyone who may edit the APIKey
	// can ask in a loop (attack 10 of issue 12). Deferred, never dropped:
	// the latest value is acted on when the key's bucket refills.
	var deferredUntil *time.Time
	if in.rotatePending && r.RequestedRotations != nil {
		if d := r.RequestedRotations.Wait(key.Namespace, key.Name); d > 0 {
			t := now.Add(d).Truncate(time.Second).Add(time.Second)
			in.rotatePending, deferredUntil = false, &t
		}
	}
	act, why := decideVersion(in)
	hadVersion := rec.Current != nil || st.KeyID != ""
	if act == issueVersion && why == whyFirst && hadVersion {
		why = whyLost // the record and every copy of the key are gone
	}
	switch act {
	case issueVersion:
		// A first version is written by creates alone (the delivery Secret
		// was read live and is absent), which fail rather than overwrite; a
		// later one overwrites, so the cached hash Secret must be current.
		if err := s.CheckFresh(ctx); err != nil {
			return ctrl.Result{}, err
		}
		if in.forced && s.selfRotation != nil && !s.Clock().Now().Before(s.selfRotation.Deadline.Time) {
			// Checked again before the first write: past the deadline the
			// asker has stopped waiting for the answer.
			return ctrl.Result{}, errSelfRotationExpired
		}
		k, err := keymaterial.Generate(prefixOf(key))
		if err != nil {
			return ctrl.Result{}, err
		}
		plaintext = &k
		if wantsAge {
			if age, err = agecrypt.Encrypt(k.String(), recipients(key)); err != nil {
				return s.block(ctx, kw.ReasonDeliveryFailed, err.Error())
			}
		}

		// Write order (docs/decisions.md). A first version, or one its
		// holder asked for, is delivered before it is recorded: a crash
		// between the two leaves a delivered version to adopt, not a lost
		// one. A rotation with a version still in service is recorded first:
		// whoever reads the delivery Secret never gets a key the key server
		// does not know yet, and a crash leaves the old key delivered and
		// valid, to be rotated again.
		deliverAfterRecord = in.wantsSecret && rec.Current != nil && !in.forced
		if in.wantsSecret && !deliverAfterRecord {
			if err := writeDelivery(ctx, s, k); err != nil {
				return ctrl.Result{}, err
			}
			if err := s.AfterWrite(ctx, StepDelivered); err != nil {
				return ctrl.Result{}, err
			}
		}
		grace := gracePeriod(key)
		if in.forced {
			grace = max(grace, MinSelfRotationGrace)
		}
		if why == whyRecipients && in.wantsSecret {
			// Nobody asked for a rotation, and the version in use is no
			// secret to those who hold it: the workload reading the
			// delivery Secret gets time to pick up the new one.
			grace = max(grace, MinRecipientsGrace)
		}
		if why == whyUndelivered && rec.Current != nil && st.KeyID != rec.Current.ID {
			// The current version was recorded but its delivery never
			// completed (status, written last, does not report it): nobody
			// holds it, so it gets no grace, nor pushes the delivered old
			// key out of the bounded list of previous versions on retries.
			grace = 0
		}
		retire(rec, now, grace)
		rec.Current = newVersion(k, now)
		if wantsAge {
			rec.AgeRecipients = recipients(key) // what age holds now
		}
	case adoptDelivered:
		// A version delivered before a crash: a first one, or one its
		// holder asked for (which must not cut the caller's key off while
		// it retries), so the old version keeps at least the minimum grace.
		plaintext = s.delivered
		retire(rec, now, max(gracePeriod(key), MinSelfRotationGrace))
		rec.Current = newVersion(*s.delivered, now)
		age = ""
	case useImported:
		// A random public id, drawn once and kept in the record: nothing
		// public derives from a key its importer might not read (issue 12,
		// attack 3). The key server finds it by its hash.
		id, err := keymaterial.GenerateID()
		if err != nil {
			return ctrl.Result{}, err
		}
		since := now
		if why == whyRandomID {
			since = rec.Current.NotBefore // bound since then: it stays first
		}
		retire(rec, now, 0)
		rec.Current = &hashsecret.Version{ID: id, Hash: s.imported.hash, Lookup: s.imported.lookup, NotBefore: since, Hint: hashsecret.HintImported}
	case keepVersion:
	}
	if act == issueVersion || act == adoptDelivered {
		s.issued = plaintext
		if err := answerSelfRotation(key, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	if act != keepVersion {
		rec.RotateRequest = rotateValue(key)
		versionEvent(s, hadVersion, rec.Current.ID, why)
	}

	var err error
	if age, err = ageDelivery(key, rec, age, plaintext, act == issueVersion || act == adoptDelivered); err != nil {
		return s.block(ctx, kw.ReasonDeliveryFailed, err.Error())
	}
	applySpec(key, rec, now, expiry)
	if wrote, err := s.WriteRecord(ctx, rec, recordData(s, age)); err != nil {
		return ctrl.Result{}, err
	} else if wrote {
		if why == whyRequested && r.RequestedRotations != nil {
			// Spent once recorded: a failed attempt costs nothing.
			r.RequestedRotations.Take(key.Namespace, key.Name)
		}
		if err := s.AfterWrite(ctx, StepRecorded); err != nil {
			return ctrl.Result{}, err
		}
	}
	if deliverAfterRecord {
		if err := writeDelivery(ctx, s, *plaintext); err != nil {
			return ctrl.Result{}, err
		}
		if err := s.AfterWrite(ctx, StepDelivered); err != nil {
			return ctrl.Result{}, err
		}
	}

	setStatus(key, rec, age, now, expiry)
	s.SetConditions("", "")
	if deferredUntil != nil {
		noteDeferredRotation(key, *deferredUntil)
	}
	instants := []*time.Time{nextRotation(key.Spec, rec, expiry, now), deferredUntil}
	for _, v := range rec.Previous {
		instants = append(instants, v.NotAfter)
	}
	return s.Requeue(s.imported != nil, instants...), nil
}

// MinRecipientsGrace keeps the version in use valid for a while when age
// recipients are added to a key with a delivery Secret, even without
// spec.rotation.gracePeriod: the rotation only keeps the version in use from
// the new recipients, and a workload needs time to read the new one (a
// mounted Secret is refreshed within about a minute).
const MinRecipientsGrace = 5 * time.Minute

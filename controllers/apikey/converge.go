package apikey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keystatus"
	"github.com/keyward/keyward/controllers/ownedsecret"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// converge brings the hash Secret, the deliveries and the status in line
// with the spec. It returns how long until the key changes on its own.
func (r *Reconciler) converge(ctx context.Context, key *kw.APIKey, s *state) (time.Duration, error) {
	now := r.Clock.Now().UTC()
	expiry := effectiveExpiry(key.Spec, key.CreationTimestamp)
	st := &key.Status
	st.Subject = subjectOf(key)
	st.HashSecretName = s.hashName

	switch {
	case s.conflict:
		return r.blocked(ctx, key, s, now, expiry, kw.ReasonDeliveryConflict,
			fmt.Sprintf("Secret %q exists and is not owned by this APIKey; Keyward will not overwrite it", key.Spec.SecretName))
	case key.Spec.ImportFrom != nil && s.imported == nil:
		return r.blocked(ctx, key, s, now, expiry, s.importReason, s.importMessage)
	}

	rec := r.recordFrom(key, s, now)
	age := ""
	if s.hashSecret != nil && !s.corrupt {
		age = string(s.hashSecret.Data[hashsecret.DataAge])
	}
	wantsAge := key.Spec.Delivery != nil
	in := versionInput{
		now:         now,
		expired:     keystatus.ExpiredAt(expiry, now),
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
		if s.hashSecret != nil || s.delivery != nil {
			if err := ownedsecret.CheckFresh(ctx, r.APIReader, r.HashNamespace, s.hashName, s.hashSecret); err != nil {
				return 0, err
			}
		}
		if in.forced && s.selfRotation != nil && !r.Clock.Now().Before(s.selfRotation.Deadline.Time) {
			// Checked again before the first write: past the deadline the
			// asker has stopped waiting for the answer.
			return 0, errSelfRotationExpired
		}
		k, err := keymaterial.Generate(prefixOf(key))
		if err != nil {
			return 0, err
		}
		plaintext = &k
		if wantsAge {
			if age, err = agecrypt.Encrypt(k.String(), recipients(key)); err != nil {
				return r.blocked(ctx, key, s, now, expiry, kw.ReasonDeliveryFailed, err.Error())
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
			if err := r.writeDelivery(ctx, key, s, k); err != nil {
				return 0, err
			}
			if err := r.afterWrite(ctx, key, StepDelivered); err != nil {
				return 0, err
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
			return 0, err
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
			return 0, err
		}
	}
	if act != keepVersion {
		rec.RotateRequest = rotateValue(key)
		r.versionEvent(key, hadVersion, rec.Current.ID, why)
	}

	var err error
	if age, err = r.ageDelivery(key, rec, age, plaintext, act == issueVersion || act == adoptDelivered); err != nil {
		return r.blocked(ctx, key, s, now, expiry, kw.ReasonDeliveryFailed, err.Error())
	}
	r.applySpec(key, rec, now, expiry)
	if wrote, err := r.writeRecord(ctx, key, s, rec, age); err != nil {
		return 0, err
	} else if wrote {
		if why == whyRequested && r.RequestedRotations != nil {
			// Spent once recorded: a failed attempt costs nothing.
			r.RequestedRotations.Take(key.Namespace, key.Name)
		}
		if err := r.afterWrite(ctx, key, StepRecorded); err != nil {
			return 0, err
		}
	}
	if deliverAfterRecord {
		if err := r.writeDelivery(ctx, key, s, *plaintext); err != nil {
			return 0, err
		}
		if err := r.afterWrite(ctx, key, StepDelivered); err != nil {
			return 0, err
		}
	}

	r.setStatus(key, rec, age, now, expiry)
	r.setConditions(key, now, expiry, "", "")
	if deferredUntil != nil {
		noteDeferredRotation(key, *deferredUntil)
	}
	var instants []*time.Time
	instants = append(instants, nextRotation(key.Spec, rec, expiry, now), expiry, deferredUntil)
	if expiry != nil {
		soon := expiry.Add(-r.ExpiringSoonWindow)
		instants = append(instants, &soon)
	}
	for _, v := range rec.Previous {
		instants = append(instants, v.NotAfter)
	}
	wait := requeueAfter(now, instants...)
	if (s.imported != nil || key.Spec.SecretName != "") && (wait == 0 || wait > r.Resync) {
		wait = r.Resync
	}
	return wait, nil
}

// MinRecipientsGrace keeps the version in use valid for a while when age
// recipients are added to a key with a delivery Secret, even without
// spec.rotation.gracePeriod: the rotation only keeps the version in use from
// the new recipients, and a workload needs time to read the new one (a
// mounted Secret is refreshed within about a minute).
const MinRecipientsGrace = 5 * time.Minute

// BlockedResync is how often a blocked key is looked at again: what blocks it
// (a Secret of someone else's, a missing import) is outside the watched cache.
const BlockedResync = time.Minute

// blocked reports a problem that stops a new version from being issued. The
// existing record still gets the spec's policy — suspension, expiry, scopes —
// so revoking a key never waits for the problem to be fixed.
func (r *Reconciler) blocked(ctx context.Context, key *kw.APIKey, s *state, now time.Time, expiry *time.Time, reason, message string) (time.Duration, error) {
	if s.record != nil {
		rec := *s.record
		rec.Previous = slices.Clone(rec.Previous)
		if rec.Current != nil {
			cur := *rec.Current
			rec.Current = &cur
		}
		if s.unbind {
			// A key that must not be bound here (ImportConflict): what the
			// record binds goes, so the key's first holder is its only one.
			retire(&rec, now, 0)
			rec.Previous = nil
			st := &key.Status
			st.KeyID, st.KeyHint, st.IssuedAt, st.PreviousKeys, st.AgeDelivery = "", "", nil, nil, nil
		}
		r.applySpec(key, &rec, now, expiry)
		age := ""
		if s.hashSecret != nil {
			age = string(s.hashSecret.Data[hashsecret.DataAge])
		}
		if _, err := r.writeRecord(ctx, key, s, &rec, age); err != nil {
			return 0, err
		}
	}
	r.setBlocked(key, now, expiry, reason, message)
	wait := BlockedResync
	if d := requeueAfter(now, expiry); d > 0 && d < wait {
		wait = d
	}
	return wait, nil
}

// recordFrom starts from the hash Secret's record, repaired from what the
// cluster still holds when it is missing or was edited.
func (r *Reconciler) recordFrom(key *kw.APIKey, s *state, now time.Time) *hashsecret.Record {
	if s.record != nil {
		rec := *s.record
		rec.Previous = slices.Clone(rec.Previous)
		if rec.Current != nil {
			cur := *rec.Current
			rec.Current = &cur
			// An edited hash for the delivered version: the delivery is
			// the plaintext, so its hash is the truth.
			if d := s.delivered; d != nil && d.ID == cur.ID && !d.Verify(cur.Hash) {
				rec.Current.Hash = d.SecretHash()
				r.event(key, corev1.EventTypeWarning, kw.EventHashSecretRepaired, "Repair",
					"the hash Secret %s held a wrong hash for version %s and was rewritten", s.hashName, cur.ID)
			}
		}
		return &rec
	}
	rec := &hashsecret.Record{RotateRequest: key.Status.RotateRequest}
	if s.hashSecret != nil || key.Status.KeyID != "" {
		// The record was lost or corrupted. The delivered plaintext of the
		// last reported version restores it without changing the key.
		if d := s.delivered; d != nil && d.ID == key.Status.KeyID {
			issued := now
			if key.Status.IssuedAt != nil {
				issued = key.Status.IssuedAt.UTC()
			}
			rec.Current = newVersion(*d, issued)
			r.event(key, corev1.EventTypeWarning, kw.EventHashSecretRepaired, "Repair",
				"the hash Secret %s was missing or unreadable and was rebuilt from the delivered key %s", s.hashName, d.ID)
		}
	}
	return rec
}

// ageDelivery returns the age ciphertext of the current version, encrypting
// it again when the recipients changed and the plaintext is at hand: to
// recipients it was delivered to already, or to any when it is fresh (issued
// or adopted by this reconcile). A version that exists is never encrypted
// to a new recipient (issue 12, attack 1): decideVersion issues a new one
// instead, but for an expired key, which then gets no age delivery.
func (r *Reconciler) ageDelivery(key *kw.APIKey, rec *hashsecret.Record, age string, plaintext *keymaterial.Key, fresh bool) (string, error) {
	if key.Spec.Delivery == nil || rec.Current == nil {
		rec.AgeRecipients = nil
		return "", nil
	}
	want := recipients(key)
	if age != "" && slices.Equal(rec.AgeRecipients, want) {
		return age, nil
	}
	if !fresh && addsRecipients(want, rec.AgeRecipients) {
		rec.AgeRecipients = nil
		return "", nil
	}
	if plaintext == nil || plaintext.ID != rec.Current.ID {
		return "", errors.New("no plaintext of the current version is available to encrypt")
	}
	out, err := agecrypt.Encrypt(plaintext.String(), want)
	if err != nil {
		return "", err
	}
	rec.AgeRecipients = want
	return out, nil
}

// applySpec copies the identity and policy the key server needs into the
// record, prunes ended versions and caps every version at the expiry.
func (r *Reconciler) applySpec(key *kw.APIKey, rec *hashsecret.Record, now time.Time, expiry *time.Time) {
	rec.Kind = hashsecret.KindAPIKey
	rec.Namespace, rec.Name = key.Namespace, key.Name
	rec.Subject = subjectOf(key)
	rec.Groups = slices.Clone(key.Spec.Groups)
	rec.Scopes = slices.Clone(key.Spec.Scopes)
	rec.Access = string(key.Spec.Access)
	if rec.Access == "" {
		rec.Access = string(kw.AccessReadWrite)
	}
	rec.Suspended = key.Spec.Suspended
	rec.Previous = prune(rec.Previous, now)
	capAtExpiry(rec, expiry)
}

func (r *Reconciler) writeDelivery(ctx context.Context, key *kw.APIKey, s *state, k keymaterial.Key) error {
	_, _, err := ownedsecret.Put(ctx, r.Client, key, s.delivery, ownedsecret.Desired{
		Name:        key.Spec.SecretName,
		Type:        corev1.SecretTypeOpaque,
		Annotations: map[string]string{AnnotationKeyID: k.ID},
		Data:        map[string][]byte{DataKey: []byte(k.String())},
	})
	return err
}

// writeRecord writes the hash Secret when it differs from rec; it reports
// whether it wrote.
func (r *Reconciler) writeRecord(ctx context.Context, key *kw.APIKey, s *state, rec *hashsecret.Record, age string) (bool, error) {
	raw, err := hashsecret.Encode(rec)
	if err != nil {
		return false, err
	}
	data := map[string][]byte{hashsecret.DataRecord: raw}
	if age != "" {
		data[hashsecret.DataAge] = []byte(age)
	}
	if answer := selfRotationData(s); len(answer) > 0 {
		data[DataSelfRotation] = answer
	}
	sec, wrote, err := ownedsecret.Put(ctx, r.Client, key, s.hashSecret, ownedsecret.Desired{
		Namespace: r.HashNamespace,
		Name:      s.hashName,
		Type:      hashsecret.SecretType,
		Labels:    map[string]string{hashsecret.LabelKind: hashsecret.KindAPIKey},
		Data:      data,
	})
	if err == nil {
		s.hashSecret = sec
		if wrote {
			r.own.Wrote(sec)
		}
	}
	return wrote, err
}

func newVersion(k keymaterial.Key, at time.Time) *hashsecret.Version {
	return &hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: at, Hint: keymaterial.Hint(k)}
}

func isPrevious(rec *hashsecret.Record, id string) bool {
	return slices.ContainsFunc(rec.Previous, func(v hashsecret.Version) bool { return v.ID == id })
}

func gracePeriod(key *kw.APIKey) time.Duration {
	if key.Spec.Rotation == nil || key.Spec.Rotation.GracePeriod == nil {
		return 0
	}
	return key.Spec.Rotation.GracePeriod.Duration
}

func recipients(key *kw.APIKey) []string {
	if key.Spec.Delivery == nil {
		return nil
	}
	return key.Spec.Delivery.AgeRecipients
}

func rotateValue(key *kw.APIKey) string { return key.Annotations[kw.AnnotationRotate] }

package accesskeypair

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// scope is the world as one reconcile of a pair sees it, gathered once
// (keylifecycle.Scope holds what both kinds read), and what it decided.
type scope struct {
	*keylifecycle.Scope[*kw.AccessKeyPair]
	r    *Reconciler
	pair *kw.AccessKeyPair
	// deliveredID/deliveredSK are the pair in the delivery Secret.
	deliveredID, deliveredSK string
	overLimit                bool
}

// observe reads the delivered pair and the subject's other pairs.
func (r *Reconciler) observe(ctx context.Context, sc *keylifecycle.Scope[*kw.AccessKeyPair]) (*scope, error) {
	s := &scope{Scope: sc, r: r, pair: sc.Object}
	if ds := sc.Delivery; ds != nil {
		id, sk := string(ds.Data[DataAccessKeyID]), string(ds.Data[DataSecretKey])
		if id != "" && len(id) <= 64 && sk != "" {
			s.deliveredID, s.deliveredSK = id, sk
		}
	}
	list := &kw.AccessKeyPairList{}
	if err := r.Client.List(ctx, list, client.InNamespace(s.pair.Namespace)); err != nil {
		return nil, err
	}
	s.overLimit = !withinLimit(s.pair, list.Items, r.MaxPerSubject)
	return s, nil
}

// converge brings the hash Secret, the delivery and the status in line
// with the spec. It returns when to look again.
func converge(ctx context.Context, s *scope) (ctrl.Result, error) {
	pair := s.pair
	now, expiry := s.Now, s.View.Expiry
	st := &pair.Status
	st.Subject, st.HashSecretName = SubjectOf(pair), s.HashName
	if s.Conflict {
		// Suspension and expiry still reach an existing record.
		if s.Record != nil {
			rec := *s.Record
			rec.Suspended, rec.ExpiresAt = pair.Spec.Suspended, expiry
			if _, err := s.WriteRecord(ctx, &rec, nil); err != nil {
				return ctrl.Result{}, err
			}
		}
		return s.Blocked(kw.ReasonDeliveryConflict,
			fmt.Sprintf("Secret %q exists and is not owned by this AccessKeyPair; Keyward will not overwrite it", pair.Spec.SecretName)), nil
	}

	rec := &hashsecret.Record{}
	if s.Record != nil {
		rec = s.Record
	}
	in := pairInput{current: rec.Current, expired: keylifecycle.ExpiredAt(expiry, now), overLimit: s.overLimit, deliveredID: s.deliveredID}
	if rec.Current != nil && s.deliveredID == rec.Current.ID {
		in.deliveredMatches = keymaterial.Verify(rec.Current.Hash, s.deliveredSK)
		if !in.deliveredMatches && s.Record != nil {
			// The record was edited: the delivered secret key is the truth.
			rec.Current.Hash = keymaterial.Hash(s.deliveredSK)
			in.deliveredMatches = true
		}
	}
	hadPair := rec.Current != nil || st.AccessKeyID != ""
	switch decidePair(in) {
	case issuePair:
		if err := s.CheckFresh(ctx); err != nil {
			return ctrl.Result{}, err
		}
		id, err := keymaterial.GenerateAccessKeyID()
		if err != nil {
			return ctrl.Result{}, err
		}
		sk, err := keymaterial.GenerateSecretKey()
		if err != nil {
			return ctrl.Result{}, err
		}
		if err := s.Deliver(ctx, nil, map[string][]byte{DataAccessKeyID: []byte(id), DataSecretKey: []byte(sk)}); err != nil {
			return ctrl.Result{}, err
		}
		if err := s.AfterWrite(ctx, StepDelivered); err != nil {
			return ctrl.Result{}, err
		}
		rec.Current = &hashsecret.Version{ID: id, Hash: keymaterial.Hash(sk), NotBefore: now}
		s.Event(corev1.EventTypeNormal, kw.ReasonIssued, keylifecycle.ActionIssue, "issued access key %s", id)
		if hadPair {
			s.Event(corev1.EventTypeWarning, kw.EventKeyReissued, keylifecycle.ActionIssue, "the delivered secret key was lost; issued access key %s", id)
		}
	case adoptPair:
		rec.Current = &hashsecret.Version{ID: s.deliveredID, Hash: keymaterial.Hash(s.deliveredSK), NotBefore: now}
		if !hadPair {
			s.Event(corev1.EventTypeNormal, kw.ReasonIssued, keylifecycle.ActionIssue, "issued access key %s", s.deliveredID)
		}
	case revokePair:
		rec.Current = nil
	case keepPair:
	}

	rec.Kind, rec.Namespace, rec.Name = hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name
	rec.Subject = SubjectOf(pair)
	rec.Groups, rec.Scopes = slices.Clone(pair.Spec.Groups), slices.Clone(pair.Spec.Scopes)
	rec.Suspended = pair.Spec.Suspended
	rec.Tokens = tokenPolicy(pair.Spec)
	keylifecycle.CapAtExpiry(rec, expiry)
	if _, err := s.WriteRecord(ctx, rec, nil); err != nil {
		return ctrl.Result{}, err
	}

	st.AccessKeyID, st.IssuedAt = "", nil
	if rec.Current != nil {
		st.AccessKeyID, st.IssuedAt = rec.Current.ID, keylifecycle.TimePtr(&rec.Current.NotBefore)
	}
	st.ExpiresAt = keylifecycle.TimePtr(expiry)
	if s.overLimit {
		s.SetConditions(kw.ReasonLimitExceeded, fmt.Sprintf(
			"subject %q already holds %d access key pairs in this namespace, the most allowed; delete one to issue this pair",
			SubjectOf(pair), s.r.MaxPerSubject))
		return ctrl.Result{}, nil
	}
	s.SetConditions("", "")
	return s.Requeue(false), nil
}

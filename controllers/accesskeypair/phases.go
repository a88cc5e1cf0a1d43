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

	// rec is the record this reconcile writes; plan what it does to it.
	rec  *hashsecret.Record
	plan pairPlan
}

// observe reads the delivered pair and the subject's other pairs.
func (r *Reconciler) observe(ctx context.Context, sc *keylifecycle.Scope[*kw.AccessKeyPair]) (*scope, error) {
	s := &scope{Scope: sc, r: r, pair: sc.Object}
	if ds := sc.Delivery; ds != nil {
		id, sk := string(ds.Data[kw.DeliveryDataAccessKeyID]), string(ds.Data[kw.DeliveryDataSecretKey])
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

// phases converge a pair, in order; each does what the plan asks of it, or
// nothing. A phase that blocks the pair ends the list (keylifecycle.Run).
var phases = []keylifecycle.Phase[*scope]{
	reconcileConflict,
	reconcilePlan,
	reconcileIssue,
	reconcileCurrent,
	reconcileRecord,
	reconcileStatus,
}

// reconcileConflict names the subject and the hash Secret in the status,
// and stops at someone else's Secret under spec.secretName; suspension,
// expiry and limits still reach an existing record.
func reconcileConflict(ctx context.Context, s *scope) (ctrl.Result, error) {
	st := &s.pair.Status
	st.Subject, st.HashSecretName = s.pair.EffectiveSubject(), s.HashName
	if !s.Conflict {
		return ctrl.Result{}, nil
	}
	if s.Record != nil {
		rec := *s.Record
		rec.Suspended, rec.ExpiresAt = s.pair.Spec.Suspended, s.View.Expiry
		rec.RateLimit = hashsecret.RateLimitOf(s.pair.Spec.RateLimit)
		rec.AllowedCIDRs = hashsecret.CIDRsOf(s.pair.Spec.AllowedCIDRs)
		if _, err := s.WriteRecord(ctx, &rec, nil); err != nil {
			return ctrl.Result{}, err
		}
	}
	return s.Blocked(kw.ReasonDeliveryConflict,
		fmt.Sprintf("Secret %q exists and is not owned by this AccessKeyPair; Keyward will not overwrite it", s.pair.Spec.SecretName)), nil
}

// reconcilePlan repairs an edited hash from the delivered secret key (the
// truth) and plans what happens to the pair.
func reconcilePlan(_ context.Context, s *scope) (ctrl.Result, error) {
	s.rec = &hashsecret.Record{}
	if s.Record != nil {
		s.rec = s.Record
	}
	rec := s.rec
	in := pairInput{current: rec.Current, expired: keylifecycle.ExpiredAt(s.View.Expiry, s.Now), overLimit: s.overLimit,
		deliveredID: s.deliveredID, hadPair: rec.Current != nil || s.pair.Status.AccessKeyID != ""}
	if rec.Current != nil && s.deliveredID == rec.Current.ID {
		in.deliveredMatches = keymaterial.Verify(rec.Current.Hash, s.deliveredSK)
		if !in.deliveredMatches && s.Record != nil {
			// The record was edited: the delivered secret key is the truth.
			rec.Current.Hash = keymaterial.Hash(s.deliveredSK)
			in.deliveredMatches = true
		}
	}
	s.plan = planPair(in)
	return ctrl.Result{}, nil
}

// reconcileIssue delivers a new pair; it is recorded after (a crash in
// between leaves it delivered, to adopt).
func reconcileIssue(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.plan.act != issuePair {
		return ctrl.Result{}, nil
	}
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
	if err := s.Deliver(ctx, nil, map[string][]byte{kw.DeliveryDataAccessKeyID: []byte(id), kw.DeliveryDataSecretKey: []byte(sk)}); err != nil {
		return ctrl.Result{}, err
	}
	s.deliveredID, s.deliveredSK = id, sk
	return ctrl.Result{}, s.AfterWrite(ctx, StepDelivered)
}

// reconcileCurrent makes the planned pair current, and announces it.
func reconcileCurrent(_ context.Context, s *scope) (ctrl.Result, error) {
	switch s.plan.act {
	case issuePair, adoptPair:
		s.rec.Current = &hashsecret.Version{ID: s.deliveredID, Hash: keymaterial.Hash(s.deliveredSK), NotBefore: s.Now}
	case revokePair:
		s.rec.Current = nil
	}
	if s.plan.announce {
		s.Event(corev1.EventTypeNormal, kw.ReasonIssued, keylifecycle.ActionIssue, "issued access key %s", s.deliveredID)
	}
	if s.plan.reissued {
		s.Event(corev1.EventTypeWarning, kw.EventKeyReissued, keylifecycle.ActionIssue,
			"the delivered secret key was lost; issued access key %s", s.deliveredID)
	}
	return ctrl.Result{}, nil
}

// reconcileRecord writes the hash Secret with the spec's policy.
func reconcileRecord(ctx context.Context, s *scope) (ctrl.Result, error) {
	rec, pair := s.rec, s.pair
	rec.Kind, rec.Namespace, rec.Name = hashsecret.KindAccessKeyPair, pair.Namespace, pair.Name
	rec.Subject = pair.EffectiveSubject()
	rec.Groups, rec.Scopes = slices.Clone(pair.Spec.Groups), slices.Clone(pair.Spec.Scopes)
	rec.Suspended = pair.Spec.Suspended
	rec.Tokens = tokenPolicy(pair.Spec)
	rec.RateLimit = hashsecret.RateLimitOf(pair.Spec.RateLimit)
	rec.AllowedCIDRs = hashsecret.CIDRsOf(pair.Spec.AllowedCIDRs)
	keylifecycle.CapAtExpiry(rec, s.View.Expiry)
	_, err := s.WriteRecord(ctx, rec, nil)
	return ctrl.Result{}, err
}

// reconcileStatus mirrors the record into the status. A pair over the limit
// is looked at again when a sibling leaves (the siblings watch).
func reconcileStatus(_ context.Context, s *scope) (ctrl.Result, error) {
	st := &s.pair.Status
	st.AccessKeyID, st.IssuedAt = "", nil
	if c := s.rec.Current; c != nil {
		st.AccessKeyID, st.IssuedAt = c.ID, keylifecycle.TimePtr(&c.NotBefore)
	}
	st.ExpiresAt = keylifecycle.TimePtr(s.View.Expiry)
	if s.overLimit {
		s.SetConditions(kw.ReasonLimitExceeded, fmt.Sprintf(
			"subject %q already holds %d access key pairs in this namespace, the most allowed; delete one to issue this pair",
			s.pair.EffectiveSubject(), s.r.MaxPerSubject))
		return ctrl.Result{}, nil
	}
	s.SetConditions("", "")
	return s.Requeue(false), nil
}

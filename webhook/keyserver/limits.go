package keyserver

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/internal/allowlist"
	"github.com/keyward/keyward/internal/keyindex"
	"github.com/keyward/keyward/internal/keypolicy"
	"github.com/keyward/keyward/internal/ratelimit"
)

// A valid key's own limits (issue 15): its allow-list and its rate limit,
// and a KeyPolicy's. Every front end asks in the same order: the key
// validates, then its client address is checked (addressDecision), then the
// KeyPolicy decides, and only a request all of them let through spends the
// key's budget (spend). A keyless, failed or refused request spends
// nothing, so nobody but a key's holder can use up its budget, and a
// holder's refused requests cost it nothing either.

// The names of a limit in the RateLimit-Policy and RateLimit headers: the
// key's own spec.rateLimit, or the KeyPolicy's per-key default.
const (
	limitSourceKey    = "key"
	limitSourcePolicy = "policy"
)

// addressDecision checks client against the key's allow-list and, when a
// policy applies, the policy's: each must allow it when it is set. The
// refusal names the policy whose list refused (none when the key's did).
// The reason names the client's own address, which it knows anyway.
// Nothing is allocated unless it refuses: it runs on every request.
func addressDecision(client netip.Addr, key allowlist.List, p *keypolicy.Policy) keypolicy.Decision {
	if !key.Allows(client) {
		return keypolicy.Decision{Code: keypolicy.CIDRNotAllowed, Status: http.StatusForbidden, Rule: -1,
			Reason: clientName(client) + " is not in the key's allowedCIDRs"}
	}
	if p != nil && !p.AllowedCIDRs().Allows(client) {
		return keypolicy.Decision{Code: keypolicy.CIDRNotAllowed, Status: http.StatusForbidden, Rule: -1, Policy: p.Ref(),
			Reason: clientName(client) + " is not in the allowedCIDRs of KeyPolicy " + p.Ref().String()}
	}
	return keypolicy.Decision{Code: keypolicy.OK, Status: http.StatusOK, Rule: -1}
}

func clientName(client netip.Addr) string {
	if !client.IsValid() {
		return "an unknown client address"
	}
	return "the client address " + client.String()
}

// keyLimit is a rate limit a valid key's request is counted under, and
// the bucket it is counted in; zero when none applies.
type keyLimit struct {
	limit ratelimit.Limit
	// bucket names what is counted: the key's record, never a secret.
	bucket string
	// source is limitSourceKey or limitSourcePolicy.
	source string
	// policy is the KeyPolicy of a limitSourcePolicy limit.
	policy keypolicy.Ref
}

// keyLimits are the limits a key's request is counted under: its own and
// its KeyPolicy's per-key default, each zero when not set.
//
// Both apply when both are set, and the stricter binds. Where issue 15 says
// the key's own limit wins, it wins only when it is the stricter: keys are
// written by tenants and KeyPolicies by the API's owner, so a key's own
// limit that replaced the policy's would let a tenant lift the owner's
// limit by writing rateLimit on its own key (attack 15.7).
type keyLimits struct{ own, policy keyLimit }

// applicableLimits are the key's own limit, counted per record across every
// API it calls, and the policy's default, counted per (policy, record).
// Bucket names are "<kind>/<namespace>/<name>" and
// "policy/<namespace>/<name>/<kind>/<namespace>/<name>": names hold no "/",
// so no two records ever share a bucket.
// The names are built only when a limit applies: keys without one cost
// nothing here.
func applicableLimits(res keyindex.Result, p *keypolicy.Policy) keyLimits {
	var out keyLimits
	if !res.RateLimit.IsZero() {
		out.own = keyLimit{limit: res.RateLimit, bucket: res.Kind + "/" + res.Namespace + "/" + res.Name, source: limitSourceKey}
	}
	if p != nil {
		if l := p.RateLimit(); !l.IsZero() {
			ref := p.Ref()
			out.policy = keyLimit{limit: l, source: limitSourcePolicy, policy: ref,
				bucket: "policy/" + ref.Namespace + "/" + ref.Name + "/" + res.Kind + "/" + res.Namespace + "/" + res.Name}
		}
	}
	return out
}

// spentOne is the outcome of spending a request under one limit.
type spentOne struct {
	keyLimit
	// counted: a store counted the request, and result holds its live
	// counters. Not when the limit is zero, nor when the request was not
	// spent (refused before), nor when the store was failing
	// (ratelimit.Result.Unchecked): result is then
	// --rate-limit-store-failure's answer alone.
	counted bool
	result  ratelimit.Result
}

// allowed reports whether this limit lets the request pass.
func (s spentOne) allowed() bool { return s.limit.IsZero() || s.result.Allowed }

// spent is the outcome of spending a request of a key's budgets. A spent
// made of keyLimits alone (nothing spent: a refusal before the budget)
// allows and carries the limits for the RateLimit-Policy header.
type spent struct{ own, policy spentOne }

// notSpent is the limits of a request refused before its budget.
func notSpent(kl keyLimits) spent {
	return spent{own: spentOne{keyLimit: kl.own}, policy: spentOne{keyLimit: kl.policy}}
}

// limited reports whether any limit applies.
func (s spent) limited() bool { return !s.own.limit.IsZero() || !s.policy.limit.IsZero() }

// allowed reports whether the request may pass: every limit that applies
// lets it.
func (s spent) allowed() bool { return s.own.allowed() && s.policy.allowed() }

// binding is the limit that decides: the one that refused, else the
// counted one with fewer requests remaining, else the one that applies
// (the key's own first).
func (s spent) binding() spentOne {
	switch {
	case !s.own.allowed():
		return s.own
	case !s.policy.allowed():
		return s.policy
	case s.own.counted && s.policy.counted:
		if s.policy.result.Remaining < s.own.result.Remaining {
			return s.policy
		}
		return s.own
	case s.policy.counted || s.own.limit.IsZero():
		return s.policy
	}
	return s.own
}

// spend counts one request of a valid, admitted key against its limits:
// the key's own bucket first, then the policy's. When the first refuses,
// the second is not spent. When the second refuses, the first has spent
// one all the same: the holder did send the request, and undoing a spend
// is not something a shared store (Redis GCRA) can do without a race.
// A key without limits costs nothing; a key with one, one store call.
func (s *Server) spend(ctx context.Context, kl keyLimits) spent {
	out := notSpent(kl)
	if !kl.own.limit.IsZero() {
		if out.own = s.spendOne(ctx, kl.own); !out.own.allowed() {
			return out
		}
	}
	if !kl.policy.limit.IsZero() {
		out.policy = s.spendOne(ctx, kl.policy)
	}
	return out
}

// spendOne counts one request under kl, which is set. The store in use is
// a ratelimit.Guard when it can fail (Redis): it answers by
// --rate-limit-store-failure then. A store that returns an error anyway
// lets the request through uncounted.
func (s *Server) spendOne(ctx context.Context, kl keyLimit) spentOne {
	r, err := s.rates.Allow(ctx, kl.bucket, kl.limit)
	if err != nil {
		logf.FromContext(ctx).V(1).Info("the rate-limit store could not decide; the request passes uncounted", "error", err.Error())
		r = ratelimit.Result{Allowed: true, Unchecked: true}
	}
	return spentOne{keyLimit: kl, counted: !r.Unchecked, result: r}
}

// The RateLimit-Policy and RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers-11 (May 2026) are structured-field
// lists: one item per limit that applies, the key's own first. A policy
// item is the limit (q requests per w seconds; the burst as the vendor
// parameter keyward-burst when it differs from q); a RateLimit item the
// live counters r (requests that would pass now) and t (seconds until the
// budget is whole again; when refused, r=0 and t is Retry-After, which the
// draft asks not to end before the window). A limit that counted nothing
// (a refusal before it, a failing store) is in RateLimit-Policy alone.

// appendPolicyItem appends kl's RateLimit-Policy list item to b.
func appendPolicyItem(b []byte, kl keyLimit) []byte {
	l := kl.limit
	b = strconv.AppendQuote(b, kl.source)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, int64(l.Requests), 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, int64(ceilSeconds(l.Period)), 10)
	if l.Burst > 0 && l.Burst != l.Requests {
		b = append(b, ";keyward-burst="...)
		b = strconv.AppendInt(b, int64(l.Burst), 10)
	}
	return b
}

// appendCounterItem appends sp's RateLimit list item to b; sp was counted.
func appendCounterItem(b []byte, sp spentOne) []byte {
	r := sp.result
	remaining, t := r.Remaining, r.ResetAfter
	if !r.Allowed {
		remaining, t = 0, r.RetryAfter
	}
	b = strconv.AppendQuote(b, sp.source)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(remaining, 0)), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, int64(ceilSeconds(t)), 10)
	return b
}

// rateLimitFields are the RateLimit-Policy and RateLimit values of a
// spend; "" when there is nothing to say. They are on every answer to a
// rate-limited key, so each list is built in one buffer: one allocation
// per value, where concatenating items cost several.
func rateLimitFields(sp spent) (policy, counters string) {
	var pbuf, cbuf [128]byte
	p, c := pbuf[:0], cbuf[:0]
	for _, one := range [...]spentOne{sp.own, sp.policy} {
		if one.limit.IsZero() {
			continue
		}
		if len(p) > 0 {
			p = append(p, ", "...)
		}
		p = appendPolicyItem(p, one.keyLimit)
		if one.counted {
			if len(c) > 0 {
				c = append(c, ", "...)
			}
			c = appendCounterItem(c, one)
		}
	}
	return string(p), string(c)
}

// writeRateLimitHeaders sets the headers of a spend as Header.Set would:
// under their canonical names, the two values sharing one array, each
// capped at its one element (an Add later copies).
func writeRateLimitHeaders(h http.Header, sp spent) {
	policy, counters := rateLimitFields(sp)
	switch {
	case policy != "" && counters != "":
		vals := []string{policy, counters}
		h[headerRateLimitPolicy] = vals[0:1:1]
		h[headerRateLimit] = vals[1:2:2]
	case policy != "":
		h[headerRateLimitPolicy] = []string{policy}
	case counters != "":
		h[headerRateLimit] = []string{counters}
	}
}

// The RateLimit fields' names as net/http's header map keys them
// (canonical, TestRateLimitHeaderNamesAreCanonical): assigned directly,
// since Header.Set would build the canonical name anew, an allocation, on
// every request of a rate-limited key.
const (
	headerRateLimitPolicy = "Ratelimit-Policy"
	headerRateLimit       = "Ratelimit"
)

// rateLimitStatus is a spend as the verify API reports it: the binding
// limit (the one that refused, else the one with fewer requests left); nil
// when nothing was counted.
func rateLimitStatus(sp spent) *wire.RateLimitStatus {
	b := sp.binding()
	if !b.counted {
		return nil
	}
	l, r := b.limit, b.result
	st := &wire.RateLimitStatus{Policy: b.source, Requests: l.Requests, Window: ceilSeconds(l.Period), Burst: l.EffectiveBurst(),
		Remaining: max(r.Remaining, 0), Reset: ceilSeconds(r.ResetAfter)}
	if !r.Allowed {
		st.Remaining, st.Reset = 0, ceilSeconds(r.RetryAfter)
	}
	return st
}

// retryAfter is how long a refused spend's holder should wait: the
// refusing limit's.
func (s spent) retryAfter() time.Duration { return s.binding().result.RetryAfter }

// ceilSeconds is d in whole seconds, rounded up; never negative.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// rateLimitedReason is the one line a client over a limit gets: which
// limit refused (the key's own or its KeyPolicy's) and when to retry.
func rateLimitedReason(sp spent) string {
	b := sp.binding()
	which := "this key's rate limit"
	if b.source == limitSourcePolicy {
		which = "the per-key rate limit of KeyPolicy " + b.policy.String()
	}
	if !b.counted {
		return fmt.Sprintf("%s cannot be counted right now; retry after %d s", which, retryAfterSeconds(b.result.RetryAfter))
	}
	return fmt.Sprintf("%s (%d requests per %s) is used up; retry after %d s",
		which, b.limit.Requests, b.limit.Period, retryAfterSeconds(b.result.RetryAfter))
}

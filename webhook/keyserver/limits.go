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

// keyLimit is the rate limit a valid key's request is counted under, and
// the bucket it is counted in; zero when none applies.
type keyLimit struct {
	limit ratelimit.Limit
	// bucket names what is counted: the key's record, never a secret.
	bucket string
	// source is limitSourceKey or limitSourcePolicy.
	source string
}

// applicableLimit is the key's own limit, counted per record across every
// API it calls; else the policy's default, counted per (policy, record);
// else none. Bucket names are "<kind>/<namespace>/<name>" and
// "policy/<namespace>/<name>/<kind>/<namespace>/<name>": names hold no "/",
// so no two records ever share a bucket.
// The names are built only when a limit applies: keys without one cost
// nothing here.
func applicableLimit(res keyindex.Result, p *keypolicy.Policy) keyLimit {
	if !res.RateLimit.IsZero() {
		return keyLimit{limit: res.RateLimit, bucket: res.Kind + "/" + res.Namespace + "/" + res.Name, source: limitSourceKey}
	}
	if p != nil {
		if l := p.RateLimit(); !l.IsZero() {
			ref := p.Ref()
			return keyLimit{limit: l, source: limitSourcePolicy,
				bucket: "policy/" + ref.Namespace + "/" + ref.Name + "/" + res.Kind + "/" + res.Namespace + "/" + res.Name}
		}
	}
	return keyLimit{}
}

// spent is the outcome of spending a request of a key's budget.
type spent struct {
	keyLimit
	// counted: a store counted the request, and result holds its live
	// counters. Not when no limit applies, nor when the store was failing
	// (ratelimit.Result.Unchecked): result is then
	// --rate-limit-store-failure's answer alone.
	counted bool
	result  ratelimit.Result
}

// allowed reports whether the request may pass.
func (s spent) allowed() bool { return s.limit.IsZero() || s.result.Allowed }

// spend counts one request of a valid, admitted key against its limit. The
// store in use is a ratelimit.Guard when it can fail (Redis): it answers
// by --rate-limit-store-failure then. A store that returns an error anyway
// lets the request through uncounted.
func (s *Server) spend(ctx context.Context, kl keyLimit) spent {
	out := spent{keyLimit: kl}
	if kl.limit.IsZero() {
		return out
	}
	r, err := s.rates.Allow(ctx, kl.bucket, kl.limit)
	if err != nil {
		logf.FromContext(ctx).V(1).Info("the rate-limit store could not decide; the request passes uncounted", "error", err.Error())
		r = ratelimit.Result{Allowed: true, Unchecked: true}
	}
	out.counted, out.result = !r.Unchecked, r
	return out
}

// The RateLimit fields' names as net/http's header map keys them
// (canonical, TestRateLimitHeaderNamesAreCanonical): assigned directly,
// since Header.Set would build the canonical name anew, an allocation, on
// every request of a rate-limited key.
const (
	headerRateLimitPolicy = "Ratelimit-Policy"
	headerRateLimit       = "Ratelimit"
)

// setRateLimitHeaders writes the RateLimit-Policy and RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers-11 (May 2026): the policy is the
// limit (q requests per w seconds; the burst as the vendor parameter
// keyward-burst when it differs from q), the live counters r (requests
// that would pass now) and t (seconds until the budget is whole again;
// when refused, r=0 and t is Retry-After, which the draft asks not to end
// before the window). r is nil when nothing was counted: the policy alone.
//
// It runs on every request of a rate-limited key, so each value is built
// in one buffer (one allocation for its string) and both share one slice
// array, as Header.Set would set them.
func setRateLimitHeaders(h http.Header, kl keyLimit, r *ratelimit.Result) {
	if kl.limit.IsZero() {
		return
	}
	l := kl.limit
	var buf [96]byte
	b := strconv.AppendQuote(buf[:0], kl.source)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, int64(l.Requests), 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, int64(ceilSeconds(l.Period)), 10)
	if l.Burst > 0 && l.Burst != l.Requests {
		b = append(b, ";keyward-burst="...)
		b = strconv.AppendInt(b, int64(l.Burst), 10)
	}
	policy := string(b)
	if r == nil {
		h[headerRateLimitPolicy] = []string{policy}
		return
	}
	remaining, t := r.Remaining, r.ResetAfter
	if !r.Allowed {
		remaining, t = 0, r.RetryAfter
	}
	b = strconv.AppendQuote(buf[:0], kl.source)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(remaining, 0)), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, int64(ceilSeconds(t)), 10)
	vals := []string{policy, string(b)}
	h[headerRateLimitPolicy] = vals[0:1:1]
	h[headerRateLimit] = vals[1:2:2]
}

// writeRateLimitHeaders sets the headers of a spend.
func writeRateLimitHeaders(h http.Header, sp spent) {
	if sp.counted {
		setRateLimitHeaders(h, sp.keyLimit, &sp.result)
		return
	}
	setRateLimitHeaders(h, sp.keyLimit, nil)
}

// rateLimitStatus is a spend as the verify API reports it; nil when
// nothing was counted.
func rateLimitStatus(sp spent) *wire.RateLimitStatus {
	if !sp.counted {
		return nil
	}
	l, r := sp.limit, sp.result
	st := &wire.RateLimitStatus{Policy: sp.source, Requests: l.Requests, Window: ceilSeconds(l.Period), Burst: l.EffectiveBurst(),
		Remaining: max(r.Remaining, 0), Reset: ceilSeconds(r.ResetAfter)}
	if !r.Allowed {
		st.Remaining, st.Reset = 0, ceilSeconds(r.RetryAfter)
	}
	return st
}

// ceilSeconds is d in whole seconds, rounded up; never negative.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// rateLimitedReason is the one line a client over its key's limit gets.
func rateLimitedReason(sp spent) string {
	if !sp.counted {
		return fmt.Sprintf("this key's rate limit cannot be counted right now; retry after %d s", retryAfterSeconds(sp.result.RetryAfter))
	}
	return fmt.Sprintf("this key's rate limit (%d requests per %s) is used up; retry after %d s",
		sp.limit.Requests, sp.limit.Period, retryAfterSeconds(sp.result.RetryAfter))
}

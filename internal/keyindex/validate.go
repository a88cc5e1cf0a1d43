package keyindex

import (
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// Input bounds, checked before any other work.
const (
	// maxPresentedLen is the longest API key worth looking at: the longest
	// importable key (Keyward's own format is far shorter).
	maxPresentedLen = 512
	// minImportedLen is the shortest key CheckImportStrength lets in.
	minImportedLen = 32
	// maxAccessKeyIDLen bounds access key ids (Keyward's are 20 characters).
	maxAccessKeyIDLen = 128
)

// ValidateAPIKey checks a presented API key at now. A key in Keyward's
// format is looked up by its embedded id, and by the hash of its secret part
// among imported keys; anything else that could be an imported key, by its
// hash alone. Input that is neither a well-formed Keyward key nor a known
// imported key is InvalidFormat (a mistyped Keyward key fails its checksum
// and lands here); a well-formed key that is unknown, or whose secret does
// not match, is NotFound. Expiry and suspension are reported only to
// someone holding the right secret.
func (x *Index) ValidateAPIKey(presentedKey string, now time.Time) Result {
	if len(presentedKey) > maxPresentedLen {
		return Result{Code: InvalidFormat}
	}
	// ParseParts, not Parse: the id and secret are only looked up and
	// hashed here, never kept, so they need not be copied.
	if id, secret, err := keymaterial.ParseParts(presentedKey); err == nil {
		if r, v := x.find(presented{hash: keymaterial.Hash(secret), id: id, form: formSecret}, kindAPIKey); v != nil {
			return r.judge(v, now)
		}
		return Result{Code: NotFound}
	}
	if !importable(presentedKey) {
		return Result{Code: InvalidFormat}
	}
	if r, v := x.find(presented{hash: keymaterial.Hash(presentedKey), form: formWhole}, kindAPIKey); v != nil {
		return r.judge(v, now)
	}
	return Result{Code: InvalidFormat}
}

// importable reports whether s has the shape of a key that
// keymaterial.CheckImportStrength can have let in: 32 to 512 printable ASCII
// characters without spaces. The strength heuristics themselves are not
// repeated, so tightening them later does not orphan keys imported before.
func importable(s string) bool {
	if len(s) < minImportedLen || len(s) > maxPresentedLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// ValidateAccessKey checks an AccessKeyPair's access key id and secret key
// at now, with the same rules as ValidateAPIKey; the secret key is verified
// whole. On Valid it also returns a copy of the pair's token policy (nil if
// the record has none; its Audiences are shared and read-only).
func (x *Index) ValidateAccessKey(accessKeyID, secretKey string, now time.Time) (Result, *hashsecret.TokenPolicy) {
	if len(accessKeyID) == 0 || len(accessKeyID) > maxAccessKeyIDLen ||
		len(secretKey) == 0 || len(secretKey) > maxPresentedLen {
		return Result{Code: InvalidFormat}, nil
	}
	r, v := x.find(presented{hash: keymaterial.Hash(secretKey), id: accessKeyID, form: formWhole}, kindAccessKeyPair)
	if v == nil {
		return Result{Code: NotFound}, nil
	}
	res := r.judge(v, now)
	if res.Code != Valid || r.tokens == nil {
		return res, nil
	}
	tp := *r.tokens
	return res, &tp
}

// PairIdentity reports whether the AccessKeyPair namespace/name still holds
// access key accessKeyID and neither the pair nor that version has expired
// or been suspended at now, and returns the pair's identity as it is now
// (subject, groups, scopes), so a token carries no more than its pair still
// grants. Tokens issued for a pair are refused once it reports false, e.g.
// as soon as the pair's deletion is seen. NotBefore is not checked: a token
// can only have been issued once the key was valid.
func (x *Index) PairIdentity(namespace, name, accessKeyID string, now time.Time) (Result, bool) {
	var buf [4]*record
	candidates, _ := x.candidates(buf[:0], presented{id: accessKeyID}, kindAccessKeyPair)
	t := nanos(now)
	for _, r := range candidates {
		if r.kind != kindAccessKeyPair || r.namespace != namespace || r.name != name || r.suspended || t >= r.expiresAt {
			continue
		}
		for i := range r.versions {
			if v := &r.versions[i]; v.id == accessKeyID && t < v.notAfter {
				return r.judge(v, now), true
			}
		}
	}
	return Result{}, false
}

// CurrentVersion returns the id and notBefore of the current version of
// the record of kind (hashsecret.KindAPIKey or KindAccessKeyPair) owned by
// namespace/name, as indexed; ok is false when there is none. Both are
// public. Self-rotation uses it to hand out only a version that replaced
// the presented one.
func (x *Index) CurrentVersion(kind, namespace, name string) (id string, notBefore time.Time, ok bool) {
	x.mu.RLock()
	r := x.byName[hashsecret.Name(kind, namespace, name)]
	x.mu.RUnlock()
	if r == nil || !r.hasCurrent || r.kind.String() != kind || r.namespace != namespace || r.name != name {
		return "", time.Time{}, false
	}
	v := r.versions[0]
	return v.id, time.Unix(0, v.notBefore).UTC(), true
}

// judge turns a verified version into a Result at now. Its caller has
// proven it holds the secret, so the precise failure may be told.
func (r *record) judge(v *version, now time.Time) Result {
	t := nanos(now)
	switch {
	case t >= r.expiresAt || t >= v.notAfter:
		return Result{Code: Expired}
	case t < v.notBefore:
		return Result{Code: NotYetValid}
	case r.suspended:
		return Result{Code: Suspended}
	}
	res := Result{
		Code:      Valid,
		Kind:      r.kind.String(),
		Namespace: r.namespace,
		Name:      r.name,
		Subject:   r.subject,
		KeyID:     v.id,
		Access:    r.access,
		Groups:    r.groups,
		Scopes:    r.scopes,
	}
	if r.expiresAt != noBound {
		e := time.Unix(0, r.expiresAt).UTC()
		res.ExpiresAt = &e
	}
	if r.limits != nil {
		res.RateLimit, res.AllowedCIDRs = r.limits.rate, r.limits.cidrs
	}
	return res
}

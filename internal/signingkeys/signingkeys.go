// Package signingkeys is the key server's ES256 key set: stored in one
// Secret in the operator's namespace, rotated every period, with retired
// public keys kept published until every token they signed has expired.
// The signing-key controller writes it; every key-server replica reads it.
package signingkeys

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyward/keyward/internal/tokens"
)

const (
	// SecretName is the key set's Secret in the operator namespace.
	SecretName = "keyward-signing-keys"
	// DataKeySet holds the JSON KeySet.
	DataKeySet = "keyset.json"
	// LabelSigningKeys marks the Secret so the key server caches it.
	LabelSigningKeys = "keys.keyward.dev/signing-keys"
	// maxKeys bounds the set: one active and the retired ones still published.
	maxKeys = 32
	// maxBytes bounds what Decode parses.
	maxBytes = 256 << 10
)

// Key is one signing key as stored.
type Key struct {
	ID      string    `json:"id"`
	PEM     []byte    `json:"pem"`
	Created time.Time `json:"created"`
	// Retired is when the key stopped signing; nil for the active key.
	Retired *time.Time `json:"retired,omitempty"`
	// PublishUntil is when its public half leaves the JWKS: every token it
	// signed has expired by then.
	PublishUntil *time.Time `json:"publishUntil,omitempty"`
}

// KeySet is the stored set; Keys[0] is the active key.
type KeySet struct {
	Keys []Key `json:"keys"`
}

// ErrCorrupt says the Secret does not hold a usable key set.
var ErrCorrupt = errors.New("signing key Secret does not hold a valid key set")

// Decode reads a key set from its Secret.
func Decode(s *corev1.Secret) (*KeySet, error) {
	raw := s.Data[DataKeySet]
	if len(raw) == 0 || len(raw) > maxBytes {
		return nil, ErrCorrupt
	}
	var ks KeySet
	if err := json.Unmarshal(raw, &ks); err != nil || len(ks.Keys) == 0 || len(ks.Keys) > maxKeys || ks.Keys[0].Retired != nil {
		return nil, ErrCorrupt
	}
	return &ks, nil
}

// Encode renders a key set for its Secret.
func Encode(ks *KeySet) ([]byte, error) { return json.Marshal(ks) }

// Plan says what the controller must change, decided from the set and the clock.
type Plan struct {
	Generate bool          // create a new active key (first start or rotation)
	Prune    []string      // key ids whose publication has ended
	Next     time.Duration // until the next change on its own; 0 = none
}

// Decide is the controller's decision: a pure function of the set, the
// clock, the rotation period and the longest lifetime a token can have.
func Decide(ks *KeySet, now time.Time, period time.Duration) Plan {
	var p Plan
	if ks == nil || len(ks.Keys) == 0 {
		p.Generate = true
		p.Next = period
		return p
	}
	rotateAt := ks.Keys[0].Created.Add(period)
	if !now.Before(rotateAt) {
		p.Generate = true
		rotateAt = now.Add(period)
	}
	next := rotateAt
	for _, k := range ks.Keys[1:] {
		switch {
		case k.PublishUntil == nil || !now.Before(*k.PublishUntil):
			p.Prune = append(p.Prune, k.ID)
		case k.PublishUntil.Before(next):
			next = *k.PublishUntil
		}
	}
	p.Next = next.Sub(now)
	return p
}

// Apply carries out a plan: the new key becomes active, the old active one
// is retired and stays published for maxTokenLifetime (plus leeway).
func Apply(ks *KeySet, p Plan, now time.Time, maxTokenLifetime time.Duration) (*KeySet, error) {
	out := &KeySet{}
	if ks != nil {
		out.Keys = slices.Clone(ks.Keys)
	}
	out.Keys = slices.DeleteFunc(out.Keys, func(k Key) bool { return slices.Contains(p.Prune, k.ID) })
	if !p.Generate {
		return out, nil
	}
	sk, err := tokens.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	pemBytes, err := tokens.MarshalPrivateKey(sk)
	if err != nil {
		return nil, err
	}
	if len(out.Keys) > 0 {
		retired, until := now, now.Add(maxTokenLifetime+time.Minute)
		out.Keys[0].Retired, out.Keys[0].PublishUntil = &retired, &until
	}
	out.Keys = append([]Key{{ID: sk.ID, PEM: pemBytes, Created: now}}, out.Keys...)
	if len(out.Keys) > maxKeys {
		out.Keys = out.Keys[:maxKeys]
	}
	return out, nil
}

// Loaded is a parsed key set, ready to sign and verify.
type Loaded struct {
	Active    tokens.SigningKey
	Published []tokens.PublicKey
	byID      map[string]tokens.PublicKey
}

// Load parses every key of the set; keys past their publication are left out.
func Load(ks *KeySet, now time.Time) (*Loaded, error) {
	l := &Loaded{byID: map[string]tokens.PublicKey{}}
	for i, k := range ks.Keys {
		if k.PublishUntil != nil && !now.Before(*k.PublishUntil) {
			continue
		}
		sk, err := tokens.ParsePrivateKey(k.ID, k.PEM)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
		}
		if i == 0 {
			l.Active = sk
		}
		pub := sk.Public()
		l.Published = append(l.Published, pub)
		l.byID[k.ID] = pub
	}
	if l.Active.Private == nil {
		return nil, ErrCorrupt
	}
	return l, nil
}

// Public returns the published key with this id.
func (l *Loaded) Public(kid string) (tokens.PublicKey, bool) {
	pk, ok := l.byID[kid]
	return pk, ok
}

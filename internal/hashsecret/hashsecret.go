// Package hashsecret defines the hash Secret: the one object per APIKey or
// AccessKeyPair that holds everything validation needs (key versions as
// hashes, identity, access, suspension, expiry) and never a plaintext key.
// Controllers write it in the operator's namespace, whatever the key's
// namespace: only the operator writes there, so a record's namespace can be
// trusted, and the key server needs to read Secrets in that namespace alone.
// The key server indexes it from its informer cache.
package hashsecret

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	kw "github.com/keyward/keyward/api/v1alpha1"
)

const (
	// SecretType marks hash Secrets, so they are recognisable and can be
	// selected by field as well as by label.
	SecretType corev1.SecretType = "keys.keyward.dev/hash"
	// LabelKind is set on every hash Secret to the owner's kind ("apikey" or
	// "accesskeypair"); the key server caches only Secrets with this label.
	LabelKind = "keys.keyward.dev/hash"
	// LabelManagedBy / ManagedBy mark every Secret Keyward writes (hash and
	// delivery); the controllers cache only Secrets with this label.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "keyward"
	// LabelOwner names the owning APIKey or AccessKeyPair (shortened to fit
	// a label value when long).
	LabelOwner = "keys.keyward.dev/owner"
	// LabelOwnerNamespace and LabelOwnerUID, on a hash Secret, name the
	// owner's namespace and the owner object itself: an owner reference
	// cannot cross namespaces, so these stand in for one.
	LabelOwnerNamespace = "keys.keyward.dev/owner-namespace"
	LabelOwnerUID       = "keys.keyward.dev/owner-uid"
	// AnnotationOwner is "<namespace>/<name>" of a hash Secret's owner, in
	// full, for mapping a hash Secret event back to its owner.
	AnnotationOwner = "keys.keyward.dev/owner"

	// DataRecord holds the JSON Record.
	DataRecord = "record.json"
	// DataAge holds the current version's plaintext, age-encrypted, so the
	// status delivery survives a crash between the hash write and the status
	// write. It is ciphertext, and the key server strips it from its cache.
	DataAge = "age"

	// KindAPIKey and KindAccessKeyPair are the LabelKind values.
	KindAPIKey        = "apikey"
	KindAccessKeyPair = "accesskeypair"

	// MaxVersions bounds the versions kept: the current one and previous
	// ones still within their grace period.
	MaxVersions = 16
)

// Version is one key version: its public id and the tagged hash of its secret.
type Version struct {
	ID   string `json:"id"`
	Hash string `json:"hash"`
	// Hint is the prefix and last four characters (the checksum, never
	// secret) of a generated key, shown in status so people can tell keys apart.
	Hint      string     `json:"hint,omitempty"`
	NotBefore time.Time  `json:"notBefore"`
	NotAfter  *time.Time `json:"notAfter,omitempty"`
	// Lookup says how the key server finds the version: by its ID (empty:
	// a key Keyward generated), or, for an imported key, by its hash alone
	// (LookupHash, LookupSecretHash): an imported key's ID is random, since
	// nothing public may derive from a key its importer might not read.
	Lookup string `json:"lookup,omitempty"`
}

// Values of Version.Lookup.
const (
	// LookupHash: an imported key not in Keyward's format; Hash is the
	// keymaterial.Hash of the whole key.
	LookupHash = "hash"
	// LookupSecretHash: an imported key in Keyward's format; Hash is the
	// hash of its secret part, whatever prefix and id it carries.
	LookupSecretHash = "secret-hash"
)

// HintImported is the Hint of every imported version. A version with this
// hint and no Lookup was written before imported keys got random IDs (its ID
// derives from the key); the key server finds it by its hash all the same.
const HintImported = "(imported)"

// ValidAt reports whether the version validates at t.
func (v Version) ValidAt(t time.Time) bool {
	return !t.Before(v.NotBefore) && (v.NotAfter == nil || t.Before(*v.NotAfter))
}

// Record is what a hash Secret holds.
type Record struct {
	Kind      string     `json:"kind"`
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	Subject   string     `json:"subject"`
	Groups    []string   `json:"groups,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	Access    string     `json:"access,omitempty"`
	Suspended bool       `json:"suspended,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Current is the version clients are given; Previous are rotated-out
	// versions that still validate until their NotAfter.
	Current  *Version  `json:"current,omitempty"`
	Previous []Version `json:"previous,omitempty"`
	// Tokens bounds the tokens an AccessKeyPair may be exchanged for.
	Tokens *TokenPolicy `json:"tokens,omitempty"`
	// AgeRecipients the age delivery (DataAge) was encrypted to.
	AgeRecipients []string `json:"ageRecipients,omitempty"`
	// RotateRequest is the last keys.keyward.dev/rotate value acted on,
	// kept with the versions so a crash cannot make it rotate twice.
	RotateRequest string `json:"rotateRequest,omitempty"`
	// Retired lists the ids of the last versions that stopped being
	// current (newest first, at most MaxVersions): one still found in the
	// delivery Secret is an old key, never a version to adopt.
	Retired []string `json:"retired,omitempty"`
	// RateLimit is the key's spec.rateLimit: nil when it sets none (a
	// KeyPolicy's default may then apply). AllowedCIDRs is its
	// spec.allowedCIDRs as written (empty: any address). Both are policy,
	// not key material: changing them rewrites the record, never a version.
	RateLimit    *RateLimit `json:"rateLimit,omitempty"`
	AllowedCIDRs []string   `json:"allowedCIDRs,omitempty"`
}

// RateLimit is a key's spec.rateLimit as the key server reads it.
type RateLimit struct {
	Requests int           `json:"requests"`
	Period   time.Duration `json:"period"`
	// Burst 0 means Requests.
	Burst int `json:"burst,omitempty"`
}

// RateLimitOf is the record form of a spec.rateLimit (nil for nil).
func RateLimitOf(l *kw.RateLimit) *RateLimit {
	if l == nil {
		return nil
	}
	return &RateLimit{Requests: int(l.Requests), Period: l.Period.Duration, Burst: int(l.Burst)}
}

// CIDRsOf is the record form of a spec.allowedCIDRs (nil when empty).
func CIDRsOf(cidrs []kw.CIDR) []string {
	if len(cidrs) == 0 {
		return nil
	}
	out := make([]string, len(cidrs))
	for i, c := range cidrs {
		out[i] = string(c)
	}
	return out
}

// TokenPolicy is an AccessKeyPair's bounds on the tokens issued for it.
type TokenPolicy struct {
	DefaultLifetime time.Duration `json:"defaultLifetime"`
	MaxLifetime     time.Duration `json:"maxLifetime,omitempty"`
	Audiences       []string      `json:"audiences,omitempty"`
}

// Versions lists the current version first, then the previous ones.
func (r *Record) Versions() []Version {
	out := make([]Version, 0, 1+len(r.Previous))
	if r.Current != nil {
		out = append(out, *r.Current)
	}
	return append(out, r.Previous...)
}

// ErrCorrupt says a hash Secret exists but cannot be read as a Record.
var ErrCorrupt = errors.New("hash secret is not a valid Keyward record")

// maxRecordBytes bounds what Decode parses (a record is a few KiB at most).
const maxRecordBytes = 64 << 10

// Decode reads the Record of a hash Secret.
func Decode(s *corev1.Secret) (*Record, error) {
	raw, ok := s.Data[DataRecord]
	if !ok || len(raw) == 0 || len(raw) > maxRecordBytes {
		return nil, ErrCorrupt
	}
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, jsonErrorKind(err))
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// jsonErrorKind names a JSON error without echoing input bytes.
func jsonErrorKind(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return "wrong type for field " + typ.Field
	default:
		return "malformed JSON"
	}
}

func (r *Record) validate() error {
	if len(r.Previous)+1 > MaxVersions || len(r.Retired) > MaxVersions {
		return fmt.Errorf("%w: too many versions", ErrCorrupt)
	}
	for _, v := range r.Versions() {
		if v.ID == "" || v.Hash == "" {
			return fmt.Errorf("%w: a version lacks its id or hash", ErrCorrupt)
		}
	}
	return nil
}

// Encode renders a Record as hash Secret data.
func Encode(r *Record) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// Equal reports whether two records hold the same content.
func Equal(a, b *Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	ea, err1 := json.Marshal(a)
	eb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && slices.Equal(ea, eb)
}

// Name is the hash Secret's name, in the operator namespace, for the owner
// namespace/owner of the given kind: "kw-<kind>.<namespace>.<owner>". A
// namespace has no dots, so the name is unambiguous; when it is too long for
// an object name it ends in a hash of the whole instead.
func Name(kind, namespace, owner string) string {
	name := "kw-" + kind + "." + namespace + "." + owner
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(namespace + "/" + owner))
	return strings.TrimRight(name[:253-17], ".-") + "-" + hex.EncodeToString(sum[:8])
}

// WrittenBy describes a Secret that Keyward writes — the delivery Secret of
// an APIKey or AccessKeyPair (its controller), or any Secret carrying
// Keyward's managed-by label — and returns "" for anyone else's. Such a
// Secret holds a key Keyward issued, already bound to its owner: it is never
// imported into another key (issue 12, attack 2).
func WrittenBy(obj metav1.Object) string {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil && (ref.Kind == "APIKey" || ref.Kind == "AccessKeyPair") {
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil && gv.Group == kw.GroupVersion.Group {
			return fmt.Sprintf("the delivery Secret of %s %q", ref.Kind, ref.Name)
		}
	}
	if obj.GetLabels()[LabelManagedBy] == ManagedBy {
		return "labelled " + LabelManagedBy + "=" + ManagedBy
	}
	return ""
}

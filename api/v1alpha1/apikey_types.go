package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationRotate, when its value changes, makes the controller issue a new
// key version now (the previous one keeps its grace period). Per key, two
// changes are acted on at once, then one a minute (--annotation-rotation-*
// flags); a later change waits, and its latest value is then acted on.
const AnnotationRotate = "keys.keyward.dev/rotate"

// DefaultPrefix is the human-readable prefix of generated keys.
const DefaultPrefix = "kw"

// APIKeySpec declares one API key: who it identifies, what it may do, how long
// it lives and how its plaintext is delivered.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.expiresAt) && has(self.lifetime))",message="set at most one of expiresAt and lifetime"
// +kubebuilder:validation:XValidation:rule="has(self.importFrom) || has(self.secretName) || has(self.delivery)",message="the key needs a delivery: set secretName or delivery.ageRecipients, or importFrom for an existing key"
// +kubebuilder:validation:XValidation:rule="!(has(self.importFrom) && has(self.rotation))",message="an imported key cannot be rotated by Keyward: remove rotation or importFrom"
// +kubebuilder:validation:XValidation:rule="!(has(self.importFrom) && has(self.delivery))",message="an imported key is never copied elsewhere: remove delivery or importFrom"
// +kubebuilder:validation:XValidation:rule="has(self.subject) == has(oldSelf.subject)",message="subject cannot be added or removed after creation"
// +kubebuilder:validation:XValidation:rule="has(self.secretName) == has(oldSelf.secretName)",message="secretName cannot be added or removed after creation"
// +kubebuilder:validation:XValidation:rule="has(self.importFrom) == has(oldSelf.importFrom)",message="importFrom cannot be added or removed after creation"
type APIKeySpec struct {
	// subject is the identity reported when the key is validated (the
	// username for the Kubernetes TokenReview webhook). Defaults to the
	// APIKey's name. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="subject is immutable"
	Subject string `json:"subject,omitempty"`

	// groups reported for the key's subject when it is validated.
	// Groups are local to the key's namespace, like its subject: gateways
	// receive them beside X-Keyward-Namespace, kube-apiserver as
	// keyward:<namespace>:<group>. No commas or spaces: gateways receive
	// them comma-joined in one header.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9:._/@+=-]+$`
	Groups []string `json:"groups,omitempty"`

	// scopes granted to the key, checked by `?scope=` on forward-auth and
	// by `scopes` on the verify API, e.g. "invoices:read".
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9:._/*+-]+$`
	Scopes []string `json:"scopes,omitempty"`

	// access is ReadWrite (the default) or ReadOnly. A ReadOnly key passes
	// forward-auth only when the original request used GET, HEAD or OPTIONS.
	// +optional
	// +kubebuilder:default=ReadWrite
	Access AccessMode `json:"access,omitempty"`

	// expiresAt is the instant the whole key stops validating. At most one
	// of expiresAt and lifetime; neither means the key never expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// lifetime is how long after its creation the whole key stops
	// validating, as a Go duration such as "2160h". At most one of
	// expiresAt and lifetime.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('87600h')",message="lifetime must be between 1m and 87600h (10 years)"
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`

	// rotation issues a new key version every period; the previous version
	// keeps validating for gracePeriod so clients can pick up the new one.
	// +optional
	Rotation *RotationPolicy `json:"rotation,omitempty"`

	// suspended rejects the key without deleting it. Setting it back to
	// false restores the same key.
	// +optional
	Suspended bool `json:"suspended,omitempty"`

	// revokedKeyIDs are key ids of previous versions that must stop
	// validating now, before their grace period ends (`kubectl keyward
	// revoke NAME --key-id ID` adds one). The current version's id is
	// refused (condition KeyIDsRevoked=False, reason RevokeRefused): rotate
	// first, and the version is revoked as soon as it is a previous one. A
	// revoked version's hash is removed from the hash Secret, so removing
	// its id from this list later brings nothing back.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9]+$`
	RevokedKeyIDs []string `json:"revokedKeyIDs,omitempty"`

	// prefix is the human-readable start of the key, before its id, so a
	// leaked key can be recognised ("kw" by default). Immutable.
	// +optional
	// +kubebuilder:default=kw
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^[a-z0-9]{1,16}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="prefix is immutable"
	Prefix string `json:"prefix,omitempty"`

	// secretName is a Secret in the same namespace that receives the
	// plaintext key (data key "key"), for in-cluster clients that must send
	// it. Keyward creates and owns it. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="secretName is immutable"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('kw-apikey-') && !self.startsWith('kw-accesskeypair-')",message="secretName must not start with kw-apikey- or kw-accesskeypair-: Keyward's hash Secrets use those names"
	SecretName string `json:"secretName,omitempty"`

	// delivery encrypts the plaintext to the holders of age identities and
	// writes it to status, so no plaintext ever exists in the cluster.
	// +optional
	Delivery *Delivery `json:"delivery,omitempty"`

	// rateLimit bounds the requests made with this key: over it, the key
	// server answers 429 with Retry-After (verify: code RATE_LIMITED). It
	// applies across every API the key calls; a KeyPolicy's per-key limit
	// applies too where one is set, and the stricter binds (a key cannot
	// lift its policy's). Unset: a KeyPolicy's limit alone, or no limit.
	// Changing it takes effect without a new key version.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// allowedCIDRs are the client addresses this key may be used from;
	// from anywhere else the key server answers 403, code
	// CIDR_NOT_ALLOWED. Empty: any address. A KeyPolicy's allowedCIDRs
	// must allow the address too.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	AllowedCIDRs []CIDR `json:"allowedCIDRs,omitempty"`

	// importFrom hashes an existing key held in a Secret (for migrations,
	// or keys shared with outside systems) instead of generating one. The
	// key must be at least 32 characters with enough variety. Immutable.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="importFrom is immutable"
	ImportFrom *SecretKeyRef `json:"importFrom,omitempty"`
}

// RotationPolicy schedules new key versions.
//
// +kubebuilder:validation:XValidation:rule="!has(self.gracePeriod) || duration(self.gracePeriod) < duration(self.period)",message="rotation.gracePeriod must be shorter than rotation.period"
type RotationPolicy struct {
	// period between key versions, as a Go duration such as "720h"; at
	// least 1h: each rotation costs the controllers several writes, and a
	// key that rotated every minute would keep a worker busy for its
	// tenant alone. Rotate sooner on demand with the keys.keyward.dev/rotate
	// annotation or self-rotation.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('87600h')",message="rotation.period must be between 1h and 87600h (10 years)"
	Period metav1.Duration `json:"period"`

	// gracePeriod during which the previous version keeps validating after
	// a rotation. Defaults to 0s: the previous version stops at once.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// Delivery lists where an encrypted copy of the plaintext goes.
type Delivery struct {
	// ageRecipients are age X25519 public keys ("age1…"). The plaintext of
	// each key version is encrypted to all of them and written once to
	// status.ageDelivery; only a holder of a matching identity can read it.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^age1[02-9ac-hj-np-z]{58}$`
	AgeRecipients []string `json:"ageRecipients"`
}

// APIKeyStatus is what the controller observed and did.
type APIKeyStatus struct {
	// conditions: Ready, Expired, Suspended.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// subject reported for this key (spec.subject or the object's name).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Subject string `json:"subject,omitempty"`

	// keyID of the current version: the public lookup handle.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	KeyID string `json:"keyID,omitempty"`

	// keyHint is the prefix and last four characters of the current key,
	// enough for a person to tell keys apart.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	KeyHint string `json:"keyHint,omitempty"`

	// hashSecretName is the Secret holding the key's hashes, in the
	// operator's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	HashSecretName string `json:"hashSecretName,omitempty"`

	// issuedAt is when the current version was issued.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// expiresAt is when the whole key stops validating, if ever.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// nextRotationAt is when the next version will be issued, if rotation is set.
	// +optional
	NextRotationAt *metav1.Time `json:"nextRotationAt,omitempty"`

	// previousKeys still validating within their grace period.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	PreviousKeys []PreviousKey `json:"previousKeys,omitempty"`

	// lastUsedAt is when the key last validated, written back in batches.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`

	// usage counts the requests this key was presented in, written back
	// with lastUsedAt.
	// +optional
	Usage *KeyUsage `json:"usage,omitempty"`

	// ageDelivery holds the current version's plaintext encrypted to
	// spec.delivery.ageRecipients.
	// +optional
	AgeDelivery *AgeDelivery `json:"ageDelivery,omitempty"`

	// rotateRequest is the last value of the keys.keyward.dev/rotate
	// annotation that was acted on.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	RotateRequest string `json:"rotateRequest,omitempty"`

	// selfRotationRequest is written by the key server when a caller holding
	// the current key asks for its successor (POST /v1/keys/current/rotate);
	// the controller rotates and answers in selfRotationResponse. The key
	// server writes no Secret.
	// +optional
	SelfRotationRequest *SelfRotationRequest `json:"selfRotationRequest,omitempty"`

	// selfRotationResponse answers selfRotationRequest.
	// +optional
	SelfRotationResponse *SelfRotationResponse `json:"selfRotationResponse,omitempty"`
}

// SelfRotationRequest asks the controller for a new version on behalf of a
// caller that presented the current one.
type SelfRotationRequest struct {
	// id names this request; the response carries it back.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// keyID is the version the caller presented; only the current version
	// may rotate, or a leaked key in its grace period could take over.
	// +required
	// +kubebuilder:validation:MaxLength=64
	KeyID string `json:"keyID"`

	// recipient is a one-time age X25519 recipient: the new key is
	// encrypted to it, and only the asking key server holds its identity.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Recipient string `json:"recipient"`

	// proof is HMAC-SHA256, keyed by the presented version's hash, over the
	// request: only a holder of the key (or of its hash Secret) can ask.
	// The key id alone is public.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Proof string `json:"proof"`

	// requestedAt is when the key server asked.
	// +required
	RequestedAt metav1.Time `json:"requestedAt"`

	// deadline: the controller acts on the request only before it, and the
	// key server waits for the answer a little longer, so a rotation is
	// never made that the asker has stopped waiting for.
	// +required
	Deadline metav1.Time `json:"deadline"`
}

// SelfRotationResponse answers a SelfRotationRequest.
type SelfRotationResponse struct {
	// id of the request answered.
	// +required
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// keyID of the new version; empty when refused.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	KeyID string `json:"keyID,omitempty"`

	// encryptedKey is the new key, age-encrypted to the request's recipient.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	EncryptedKey string `json:"encryptedKey,omitempty"`

	// mac authenticates an answer carrying a key: HMAC-SHA256, keyed by the
	// presented version's hash, over the request id, the owner, keyID and
	// encryptedKey (hex). The key server hands out nothing without it, so
	// others allowed to write status cannot answer in the controller's name.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	MAC string `json:"mac,omitempty"`

	// refused says why no version was issued (a documented reason).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Refused string `json:"refused,omitempty"`
}

// AgeDelivery is one key version encrypted with age.
type AgeDelivery struct {
	// keyID of the version that was encrypted.
	// +required
	// +kubebuilder:validation:MaxLength=64
	KeyID string `json:"keyID"`

	// recipients the ciphertext was encrypted to.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Recipients []string `json:"recipients,omitempty"`

	// encryptedKey is the ASCII-armored age file holding the plaintext key.
	// Decrypt it with `age -d -i identity.txt` or `kubectl keyward decrypt`.
	// +required
	// +kubebuilder:validation:MaxLength=16384
	EncryptedKey string `json:"encryptedKey"`
}

// APIKey is an API key for a service: created, shown once, scoped, expired,
// rotated, revoked, and checked by the Keyward key server. Only hashes of the
// key are stored at rest.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apik,categories=keyward
// +kubebuilder:printcolumn:name="Subject",type=string,JSONPath=`.status.subject`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="KeyID",type=string,JSONPath=`.status.keyID`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type APIKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the key.
	// +required
	Spec APIKeySpec `json:"spec"`

	// status is what the controller observed and did.
	// +optional
	Status APIKeyStatus `json:"status,omitempty"`
}

// APIKeyList is a list of APIKeys.
//
// +kubebuilder:object:root=true
type APIKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIKey `json:"items"`
}

func init() {
	SchemeBuilder.Register(&APIKey{}, &APIKeyList{})
}

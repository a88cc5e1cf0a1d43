package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// DefaultTokenLifetime is the lifetime of a token when neither the request
// nor spec.tokens.defaultLifetime names one (DCE's default).
const DefaultTokenLifetime = "72h"

// AccessKeyPairSpec declares an access key id and secret key that a workload
// exchanges for short-lived signed tokens.
//
// +kubebuilder:validation:XValidation:rule="has(self.subject) == has(oldSelf.subject)",message="subject cannot be added or removed after creation"
type AccessKeyPairSpec struct {
	// subject the issued tokens are for (their "sub" claim). Defaults to the
	// AccessKeyPair's name. At most a limited number of pairs (2 by default)
	// may exist per subject in a namespace. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="subject is immutable"
	Subject string `json:"subject,omitempty"`

	// groups carried by the tokens and reported on validation.
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

	// scopes carried by the tokens.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9:._/*+-]+$`
	Scopes []string `json:"scopes,omitempty"`

	// secretName is a Secret in the same namespace that receives the access
	// key id ("accessKeyID") and the secret key ("secretKey"). Keyward
	// creates and owns it. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="secretName is immutable"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('kw-apikey-') && !self.startsWith('kw-accesskeypair-')",message="secretName must not start with kw-apikey- or kw-accesskeypair-: Keyward's hash Secrets use those names"
	SecretName string `json:"secretName"`

	// suspended refuses token requests and tokens already issued, without
	// deleting the pair. Setting it back to false restores the same pair.
	// +optional
	Suspended bool `json:"suspended,omitempty"`

	// expiresAt is the instant the pair, and every token it issued, stops
	// validating. Unset means never.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// tokens bounds the tokens issued for this pair.
	// +optional
	Tokens *TokenPolicy `json:"tokens,omitempty"`

	// rateLimit bounds the token requests (POST /v1/tokens) and the
	// requests made with this pair's tokens, together: over it, the key
	// server answers 429 with Retry-After (verify: code RATE_LIMITED). It
	// applies across every API the tokens call; a KeyPolicy's per-key limit
	// applies too where one is set, and the stricter binds (a pair cannot
	// lift its policy's). Unset: a KeyPolicy's limit alone, or no limit.
	// Changing it takes effect without a new access key.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// allowedCIDRs are the client addresses this pair may be exchanged
	// from and its tokens used from; from anywhere else the key server
	// answers 403, code CIDR_NOT_ALLOWED. Empty: any address. A
	// KeyPolicy's allowedCIDRs must allow the address too.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	AllowedCIDRs []CIDR `json:"allowedCIDRs,omitempty"`
}

// TokenPolicy bounds the lifetime and audience of issued tokens.
//
// +kubebuilder:validation:XValidation:rule="!has(self.defaultLifetime) || !has(self.maxLifetime) || duration(self.defaultLifetime) <= duration(self.maxLifetime)",message="tokens.defaultLifetime must not exceed tokens.maxLifetime"
type TokenPolicy struct {
	// defaultLifetime of a token whose request names none. Defaults to 72h,
	// or maxLifetime when that is shorter.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('8760h')",message="tokens.defaultLifetime must be between 1m and 8760h"
	DefaultLifetime *metav1.Duration `json:"defaultLifetime,omitempty"`

	// maxLifetime caps the lifetime a token request may ask for.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('8760h')",message="tokens.maxLifetime must be between 1m and 8760h"
	MaxLifetime *metav1.Duration `json:"maxLifetime,omitempty"`

	// audiences put in the tokens' "aud" claim. Empty means the key
	// server's default audience.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Audiences []string `json:"audiences,omitempty"`
}

// AccessKeyPairStatus is what the controller observed and did.
type AccessKeyPairStatus struct {
	// conditions: Ready, Expired, Suspended.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// subject the pair's tokens are for.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Subject string `json:"subject,omitempty"`

	// accessKeyID is the public half of the pair.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	AccessKeyID string `json:"accessKeyID,omitempty"`

	// hashSecretName is the Secret holding the secret key's hash.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	HashSecretName string `json:"hashSecretName,omitempty"`

	// issuedAt is when the pair was issued.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// expiresAt is when the pair stops validating, if ever.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// lastUsedAt is when the pair last issued a token, written back in batches.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`

	// usage counts the requests this key was presented in, written back
	// with lastUsedAt.
	// +optional
	Usage *KeyUsage `json:"usage,omitempty"`
}

// AccessKeyPair is an access key id and secret key (AK/SK) that a workload
// exchanges at the key server for short-lived signed tokens (JWT). Only a
// hash of the secret key is stored at rest.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=akp,categories=keyward
// +kubebuilder:printcolumn:name="Subject",type=string,JSONPath=`.status.subject`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="AccessKeyID",type=string,JSONPath=`.status.accessKeyID`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AccessKeyPair struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the pair.
	// +required
	Spec AccessKeyPairSpec `json:"spec"`

	// status is what the controller observed and did.
	// +optional
	Status AccessKeyPairStatus `json:"status,omitempty"`
}

// AccessKeyPairList is a list of AccessKeyPairs.
//
// +kubebuilder:object:root=true
type AccessKeyPairList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AccessKeyPair `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AccessKeyPair{}, &AccessKeyPairList{})
}

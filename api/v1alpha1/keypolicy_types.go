package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// KeyPolicySpec declares which keys may call an API: the hosts (and
// optionally paths) it protects, and whose keys, with what, it accepts there.
type KeyPolicySpec struct {
	// hosts this policy protects, matched against the original request's
	// host (Host or :authority, without port or trailing dot). An entry is
	// an exact DNS name ("api.example.com") or a wildcard of one label
	// ("*.example.com" matches "a.example.com", not "example.com" and not
	// "a.b.example.com"). Lowercase; no IP addresses. An exact name is more
	// specific than a wildcard.
	//
	// Every host must be granted to the namespace by a cluster admin, in
	// the Namespace annotation keys.keyward.dev/hosts (checked at
	// admission: config/policy/keypolicy-hosts.yaml).
	//
	// A host belongs to one namespace: a host already claimed by an older
	// KeyPolicy of another namespace (or covered by its wildcard) is not
	// applied here, and this policy reports Accepted=False, reason
	// Conflicted, naming the older one. Policies of one namespace may share
	// a host with different path prefixes.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Hosts []Hostname `json:"hosts"`

	// rules, tried in order; the first whose pathPrefix and methods match
	// the request decides what the key must have. No rules means any key
	// this policy accepts may call any path of its hosts. With rules, a
	// request no rule matches is refused. The policy claims, on each of its
	// hosts, the path prefixes of its rules ("/" for a rule without one);
	// the longest claimed prefix chooses among the policies of a host.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Rules []KeyPolicyRule `json:"rules,omitempty"`

	// keys says whose keys are accepted: always those of this policy's own
	// namespace, and those of the namespaces listed or selected here.
	// Unset: this namespace's keys only.
	// +optional
	Keys *KeyPolicyKeys `json:"keys,omitempty"`

	// tokens says whether Keyward tokens (issued for AccessKeyPairs) are
	// accepted besides API keys, and which audience they must carry.
	// Unset: accepted when they carry the key server's default audience.
	// +optional
	Tokens *KeyPolicyTokens `json:"tokens,omitempty"`

	// rateLimit is the limit of each key calling this policy's hosts,
	// counted for each key separately (one key's requests never spend
	// another's). A key whose own spec.rateLimit is set is limited by both
	// here, and the stricter binds: a key cannot lift this limit.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// allowedCIDRs are the client addresses requests to this policy's
	// hosts may come from, whatever key they carry; from anywhere else the
	// key server answers 403, code CIDR_NOT_ALLOWED. A key's own
	// allowedCIDRs must allow the address too. Empty: any address.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	AllowedCIDRs []CIDR `json:"allowedCIDRs,omitempty"`
}

// Hostname is an exact DNS name or a wildcard of one label ("*.example.com"),
// lowercase. Gateway API's wildcards match any number of labels; here, as in
// TLS certificates, one: a wildcard claims fewer of other teams' names.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$`
// +kubebuilder:validation:XValidation:rule="!self.startsWith('*.') || self.matches('^[*][.][^.]+[.][^.]+')",message="a wildcard host needs at least two labels after '*.', such as *.example.com: a wildcard over a top-level domain would claim every team's hosts"
// +kubebuilder:validation:XValidation:rule="!self.matches('^[0-9.]+$')",message="a host is a DNS name, not an IP address"
type Hostname string

// HTTPMethod is an HTTP request method.
// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
type HTTPMethod string

// KeyPolicyRule matches requests by path prefix and method, and says what the
// key of a matching request must have. Requests it matches are decided by it
// alone: a request refused by the first matching rule is not tried against
// later ones.
type KeyPolicyRule struct {
	// pathPrefix the request's path must start with, compared segment by
	// segment: "/invoices" matches "/invoices" and "/invoices/7", not
	// "/invoices-old". The request's path is decoded and its repeated
	// slashes merged before matching; requests with "." or ".." segments
	// are refused. Case-sensitive. Unset means "/": every path.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[A-Za-z0-9._~!$&'()*+,=:@/-]*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('//')",message="pathPrefix must not contain '//'"
	// +kubebuilder:validation:XValidation:rule="!self.matches('/[.][.]?(/|$)')",message="pathPrefix must not contain '.' or '..' segments"
	PathPrefix string `json:"pathPrefix,omitempty"`

	// methods the rule matches. Unset means every method. A request whose
	// path matches a rule but whose method matches none is refused with
	// METHOD_NOT_ALLOWED.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=9
	Methods []HTTPMethod `json:"methods,omitempty"`

	// requiredScopes the key must hold, all of them. Scopes are chosen by
	// whoever writes the key: they narrow what the keys of accepted
	// namespaces may do, they do not tell teams apart (spec.keys does).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9:._/*+-]+$`
	RequiredScopes []string `json:"requiredScopes,omitempty"`

	// subjects allowed by this rule. With subjects or groups set, the key's
	// identity must be one of the subjects or belong to one of the groups.
	// A subject is (namespace, name): names are chosen per namespace.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Subjects []KeyPolicySubject `json:"subjects,omitempty"`

	// groups allowed by this rule, each in its namespace (see subjects).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Groups []KeyPolicySubject `json:"groups,omitempty"`
}

// KeyPolicySubject names a subject or a group of the keys of one namespace.
type KeyPolicySubject struct {
	// namespace of the keys carrying the name. Defaults to the policy's own
	// namespace. It must be one whose keys the policy accepts.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`

	// name of the subject (an APIKey's or AccessKeyPair's spec.subject, or
	// its name) or of the group.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// KeyPolicyKeys lists the namespaces whose keys a policy accepts, besides its
// own.
type KeyPolicyKeys struct {
	// namespaces whose keys are accepted, besides the policy's own.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// namespaceSelector also accepts the keys of every namespace whose
	// labels it matches. Select on labels tenants cannot set on their own
	// namespace; {} selects every namespace. At most 16 labels and
	// expressions.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// TokenAcceptance says whether Keyward tokens are accepted.
// +kubebuilder:validation:Enum=Always;Never
type TokenAcceptance string

const (
	// TokensAlways: tokens carrying the policy's audience are accepted.
	TokensAlways TokenAcceptance = "Always"
	// TokensNever: only API keys are accepted.
	TokensNever TokenAcceptance = "Never"
)

// KeyPolicyTokens says how Keyward tokens are treated.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.audience) && has(self.accept) && self.accept == 'Never')",message="tokens.audience cannot be set when tokens.accept is Never"
type KeyPolicyTokens struct {
	// accept is Always (the default): tokens of accepted namespaces are
	// accepted when they carry the audience; or Never: API keys only.
	// +optional
	// +kubebuilder:default=Always
	Accept TokenAcceptance `json:"accept,omitempty"`

	// audience a token must carry in its "aud" claim (an AccessKeyPair's
	// spec.tokens.audiences). Unset means the key server's default
	// audience. Audiences are chosen by whoever writes the pair: they keep
	// one team's tokens for one API apart, they do not tell teams apart.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Audience string `json:"audience,omitempty"`
}

// KeyPolicyStatus is what the controller observed.
type KeyPolicyStatus struct {
	// conditions: Accepted (valid, and every host is this policy's) and
	// Ready (applied by the key server to at least one host).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// matchedHosts is how many of spec.hosts this policy is applied to;
	// the others are held by older policies of other namespaces.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MatchedHosts *int32 `json:"matchedHosts,omitempty"`
}

// KeyPolicy says which keys may call an API, chosen by the request's host
// and path. It is written by the team owning the API, in the API's
// namespace. A host that no KeyPolicy names is refused (NO_POLICY) unless
// the key server runs with --default-policy=allow-valid-key.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kp,categories=keyward
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.hosts`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KeyPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the policy.
	// +required
	Spec KeyPolicySpec `json:"spec"`

	// status is what the controller observed.
	// +optional
	Status KeyPolicyStatus `json:"status,omitempty"`
}

// KeyPolicyList is a list of KeyPolicies.
//
// +kubebuilder:object:root=true
type KeyPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KeyPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&KeyPolicy{}, &KeyPolicyList{})
}

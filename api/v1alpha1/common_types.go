package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AccessMode says which requests a key may authorize.
// +kubebuilder:validation:Enum=ReadOnly;ReadWrite
type AccessMode string

const (
	// AccessReadOnly keys pass forward-auth only for safe methods (GET, HEAD, OPTIONS).
	AccessReadOnly AccessMode = "ReadOnly"
	// AccessReadWrite keys pass forward-auth for every method.
	AccessReadWrite AccessMode = "ReadWrite"
)

// SecretKeyRef names one entry of a Secret in the object's own namespace.
type SecretKeyRef struct {
	// name of the Secret, in the same namespace as the referring object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key within the Secret's data. Defaults to "key".
	// +optional
	// +kubebuilder:default=key
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// PreviousKey is a key version that was rotated out but still validates until
// its grace period ends.
type PreviousKey struct {
	// keyID of the previous version.
	// +required
	// +kubebuilder:validation:MaxLength=64
	KeyID string `json:"keyID"`

	// validUntil is the instant this version stops validating.
	// +required
	ValidUntil metav1.Time `json:"validUntil"`
}

// RateLimit is how many requests a key may make: requests per period,
// counted by the key server as a token bucket (GCRA) that allows bursts of
// up to burst requests at once. By default each key server replica counts
// on its own, so the effective limit is up to limit × replicas; with
// --rate-limit-store=redis://… it is exact across replicas.
//
// The bounds keep every limit one the key server counts exactly: at most a
// million requests a second (one every microsecond or more), windows of whole
// seconds up to a day (the RateLimit header speaks whole seconds; a longer
// quota is a billing concern, not a limit a restarted replica should
// remember), and a burst that refills within a day.
//
// +kubebuilder:validation:XValidation:rule="self.requests <= duration(self.period).getSeconds() * 1000000",message="rateLimit.requests must be at most 1000000 per second of period"
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.burst * duration(self.period).getSeconds() <= self.requests * 86400",message="rateLimit.burst must refill within 24h: burst × period / requests must be at most 24h"
type RateLimit struct {
	// requests allowed per period, sustained.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Requests int32 `json:"requests"`

	// period the requests are counted over, in whole seconds, minutes or
	// hours ("1s", "1m", "1h30m"), from 1s to 24h.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(h|m|s))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="rateLimit.period must be between 1s and 24h"
	Period metav1.Duration `json:"period"`

	// burst is how many requests may be made at once, after a quiet
	// while. Defaults to requests.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Burst int32 `json:"burst,omitempty"`
}

// CIDR is an IPv4 or IPv6 network in CIDR notation ("10.0.0.0/8",
// "2001:db8::/32"), written as its first address, or a single address
// ("192.0.2.7", "2001:db8::1"), which stands for itself alone (/32, /128).
// Addresses are compared as the key server sees the client: the TCP peer, or
// the right-most X-Forwarded-For entry not in --trusted-proxies when the peer
// is in them.
//
// +kubebuilder:validation:MinLength=2
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || isIP(self)",message="must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or a single address"
// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="a CIDR must be written as the network's first address (10.0.0.0/8, not 10.1.2.3/8)"
type CIDR string

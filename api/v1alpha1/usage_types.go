package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// UsageHours is how many hourly buckets status.usage keeps: the last 24
// hours, the current one included.
const UsageHours = 24

// KeyUsage counts the requests a key was presented in, summed over every
// key server replica. Each replica adds what it counted since its last
// write, at most once a minute per key, with a write that fails if another
// replica wrote in between (and is then retried on a fresh read), so no
// replica's counts overwrite another's.
//
// Accepted: the request was let through (forward-auth or ext_authz allowed,
// verify valid, token issued; a token's requests count for its access key
// pair). Refused: the key was valid but an allow-list, a KeyPolicy, a
// required scope or a rate limit refused the request. Requests whose
// credential does not validate are counted against no key; TokenReviews
// (the API server caches their answers) and self-rotations are not counted.
type KeyUsage struct {
	// accepted requests since the key was created.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Accepted int64 `json:"accepted,omitempty"`

	// refused requests since the key was created.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Refused int64 `json:"refused,omitempty"`

	// last24h sums hours as of the last write; a key unused since keeps
	// its old sum (`kubectl keyward` recomputes it from hours at its own
	// clock).
	// +optional
	Last24h UsageCount `json:"last24h,omitempty"`

	// hours are the hourly counts of the last 24 hours, oldest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=24
	Hours []UsageHour `json:"hours,omitempty"`
}

// UsageCount is a number of accepted and refused requests.
type UsageCount struct {
	// accepted requests.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Accepted int64 `json:"accepted,omitempty"`

	// refused requests.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Refused int64 `json:"refused,omitempty"`
}

// UsageHour is the requests counted in one hour.
type UsageHour struct {
	// start of the hour (UTC, on the hour).
	// +required
	Start metav1.Time `json:"start"`

	// accepted requests in the hour.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Accepted int64 `json:"accepted,omitempty"`

	// refused requests in the hour.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Refused int64 `json:"refused,omitempty"`
}

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

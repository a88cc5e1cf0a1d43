// Package v1alpha1 contains the Keyward API: APIKey, AccessKeyPair and
// KeyPolicy.
//
// +kubebuilder:object:generate=true
// +groupName=keys.keyward.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Keyward kind.
	GroupVersion = schema.GroupVersion{Group: "keys.keyward.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Keyward kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Keyward kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

package operator

// RBAC for the manager, generated into config/rbac/role.yaml by `make manifests`.
// Issue "least privilege" narrows Secrets further; see docs/security.md when it lands.

// +kubebuilder:rbac:groups=keys.keyward.dev,resources=apikeys;accesskeypairs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=keys.keyward.dev,resources=apikeys/status;accesskeypairs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keys.keyward.dev,resources=apikeys/finalizers;accesskeypairs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

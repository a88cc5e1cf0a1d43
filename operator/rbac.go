package operator

// RBAC of the controllers' identity, generated into config/rbac/role.yaml
// by `make manifests`; docs/security.md says why each rule is there.
//
// Secrets: outside the operator namespace the controllers may get (the
// importFrom Secret, and a delivery Secret before overwriting it) and write
// (delivery Secrets), but not list or watch — RBAC cannot select Secrets by
// label, so list/watch anywhere would let them read every Secret. Hash
// Secrets, signing keys and certificates live in the operator namespace,
// where the cache lists and watches them.
//
// Nor can RBAC say which Secrets the controllers may write outside their
// namespaces: the ValidatingAdmissionPolicy in config/policy limits those
// writes to delivery Secrets (Opaque, labelled managed-by keyward,
// controlled by an APIKey or AccessKeyPair) that were Keyward's already, and
// their Secrets anywhere to Opaque and hash Secrets, so their token can
// neither mint a ServiceAccount token Secret nor touch anyone else's Secret.

// +kubebuilder:rbac:groups=keys.keyward.dev,resources=apikeys;accesskeypairs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=keys.keyward.dev,resources=apikeys/status;accesskeypairs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keys.keyward.dev,resources=apikeys/finalizers;accesskeypairs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=keyward-system,resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

package v1alpha1

// Condition types set on APIKey and AccessKeyPair.
const (
	// ConditionReady is True when the key validates now: issued, delivered,
	// not expired and not suspended.
	ConditionReady = "Ready"
	// ConditionExpired is True once expiresAt (or creation+lifetime) has passed.
	ConditionExpired = "Expired"
	// ConditionSuspended mirrors spec.suspended once the hash Secret says so.
	ConditionSuspended = "Suspended"
)

package v1alpha1

import "time"

// Condition types set on APIKey and AccessKeyPair (Ready also on KeyPolicy).
const (
	// ConditionReady is True when the key validates now: issued, delivered,
	// not expired and not suspended.
	ConditionReady = "Ready"
	// ConditionExpired is True once expiresAt (or creation+lifetime) has passed.
	ConditionExpired = "Expired"
	// ConditionSuspended is True while spec.suspended is set and the hash
	// Secret says so.
	ConditionSuspended = "Suspended"
	// ConditionKeyIDsRevoked is set while spec.revokedKeyIDs lists any id:
	// True (reason Revoked) when no listed id validates, False (reason
	// RevokeRefused) when one is the current version, which is never
	// revoked this way. Absent when nothing is listed.
	ConditionKeyIDsRevoked = "KeyIDsRevoked"
)

// Reasons of the Ready condition. Each is also the reason of the event
// emitted on the transition into it, where there is one.
const (
	// ReasonPending: no version is issued yet and nothing blocks one; Ready
	// is Unknown, not False.
	ReasonPending = "Pending"
	// ReasonIssued: the current version is issued, delivered and valid.
	ReasonIssued = "Issued"
	// ReasonExpiringSoon: valid, but the key expires within the warning
	// window (the operator's --expiring-soon-window).
	ReasonExpiringSoon = "ExpiringSoon"
	// ReasonExpired: the key's expiry has passed; no version validates.
	ReasonExpired = "Expired"
	// ReasonSuspended: spec.suspended is set; no version validates.
	ReasonSuspended = "Suspended"
	// ReasonImportNotFound: the importFrom Secret or its key is missing.
	ReasonImportNotFound = "ImportNotFound"
	// ReasonImportRefused: the imported key is too weak to be accepted. The
	// message states the rules, never which one the key broke: it must not
	// describe a key to someone who may not read it.
	ReasonImportRefused = "ImportRefused"
	// ReasonImportConflict: the importFrom Secret is one Keyward writes (the
	// delivery Secret of an APIKey or AccessKeyPair), or the key it holds is
	// already bound to another APIKey or AccessKeyPair. A key is never bound
	// twice: the key that holds it keeps validating exactly as before, and
	// this one is not issued.
	ReasonImportConflict = "ImportConflict"
	// ReasonDeliveryConflict: spec.secretName names a Secret Keyward does
	// not own; it is left untouched and no key is issued.
	ReasonDeliveryConflict = "DeliveryConflict"
	// ReasonDeliveryFailed: the plaintext could not be encrypted to the age
	// recipients.
	ReasonDeliveryFailed = "DeliveryFailed"
	// ReasonLimitExceeded: more AccessKeyPairs exist for the subject, or
	// more APIKeys in the namespace (--max-apikeys-per-namespace), than the
	// operator allows; this one is not issued.
	ReasonLimitExceeded = "LimitExceeded"
)

// Reasons of the KeyIDsRevoked condition. RevokeRefused is also the reason
// of the Warning event emitted on the transition into it.
const (
	// ReasonRevoked: no id in spec.revokedKeyIDs validates; the message
	// names listed ids that are no version of the key (nothing was revoked
	// under them: a typo would leave the meant version valid).
	ReasonRevoked = "Revoked"
	// ReasonRevokeRefused: an id in spec.revokedKeyIDs is the current
	// version; it keeps validating. Rotate first: the version is revoked
	// as soon as a rotation makes it a previous one, with no grace.
	ReasonRevokeRefused = "RevokeRefused"
)

// Reasons of the Expired and Suspended conditions.
const (
	// ReasonNotExpired: the key has an expiry in the future.
	ReasonNotExpired = "NotExpired"
	// ReasonNoExpiry: the key never expires.
	ReasonNoExpiry = "NoExpiry"
	// ReasonActive: the key is not suspended.
	ReasonActive = "Active"
)

// Event reasons beyond those of the Ready condition.
const (
	// EventRotated: a new version replaced the current one.
	EventRotated = "Rotated"
	// EventHashSecretRepaired: the hash Secret was missing or edited and was
	// rewritten from the delivered key.
	EventHashSecretRepaired = "HashSecretRepaired"
	// EventKeyReissued: the key could not be recovered (its plaintext and
	// hash were both lost), so a new version was issued.
	EventKeyReissued = "KeyReissued"
	// EventRecipientsChanged: spec.delivery.ageRecipients gained a recipient
	// (or, without a delivery Secret, changed at all), so a new version was
	// issued for them: a version that exists is never encrypted to a
	// recipient it was not delivered to. The previous one keeps its grace.
	EventRecipientsChanged = "RecipientsChanged"
	// EventVersionRevoked: a previous version listed in spec.revokedKeyIDs
	// was removed from the hash Secret before its grace period ended; the
	// key server refuses it (NOT_FOUND) from the moment it sees the write.
	EventVersionRevoked = "VersionRevoked"
)

// Events the key server emits on its own Pod (POD_NAME, POD_NAMESPACE),
// once per change of the rate-limit store's availability
// (--rate-limit-store=redis://…), not per request.
const (
	// EventRateLimitStoreUnavailable (Warning): the store stopped answering;
	// requests of rate-limited keys are answered by
	// --rate-limit-store-failure (open: allowed uncounted; closed: 429)
	// until it answers again.
	EventRateLimitStoreUnavailable = "RateLimitStoreUnavailable"
	// EventRateLimitStoreAvailable (Normal): it answers again.
	EventRateLimitStoreAvailable = "RateLimitStoreAvailable"
)

// Condition types set on KeyPolicy (besides Ready).
const (
	// ConditionAccepted is True when the policy is valid and every host it
	// names is its own; False (reason Invalid or Conflicted) otherwise.
	// On a KeyPolicy, Ready is True while the key server applies the policy
	// to at least one of its hosts.
	ConditionAccepted = "Accepted"
)

// Reasons of KeyPolicy's Accepted and Ready conditions.
const (
	// ReasonAccepted (Accepted=True): valid, and no older policy holds any of
	// its hosts.
	ReasonAccepted = "Accepted"
	// ReasonConflicted (Accepted=False; Ready=False when no host is left):
	// a host it names is held by an older KeyPolicy, named in the message,
	// in another namespace (the same host, or a wildcard covering it) or in
	// the same namespace with the same path prefix. The older one keeps it
	// (creation time, then namespace/name, decide), as in Gateway API.
	ReasonConflicted = "Conflicted"
	// ReasonInvalid (Accepted=False, Ready=False): the spec breaks a rule
	// the API server cannot check alone (the message says which); the
	// policy is not applied at all.
	ReasonInvalid = "Invalid"
	// ReasonInForce (Ready=True): applied to every host it names.
	ReasonInForce = "InForce"
	// ReasonPartiallyInForce (Ready=True): applied to some of its hosts;
	// older policies hold the others (see Accepted).
	ReasonPartiallyInForce = "PartiallyInForce"
)

// FinalizerCleanup makes deletion wait until the hash and delivery Secrets
// are gone, so revocation does not depend on the garbage collector.
const FinalizerCleanup = "keys.keyward.dev/cleanup"

// Reasons a self-rotation request is refused (selfRotationResponse.refused).
const (
	// RefusedNotRotatable: the key is imported, suspended, expired or being
	// deleted, or the presented version is not the current one.
	RefusedNotRotatable = "NotRotatable"
	// RefusedBadRequest: the request's proof does not match the presented
	// version, or its recipient is not an age X25519 recipient.
	RefusedBadRequest = "BadRequest"
)

// MaxSelfRotationWindow bounds a self-rotation request's deadline after its
// requestedAt; a request asking for longer is ignored.
const MaxSelfRotationWindow = 30 * time.Second

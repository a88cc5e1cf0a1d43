package apikey

import (
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/controllers/keylifecycle"
	"github.com/keyward/keyward/internal/hashsecret"
)

// The decisions of the APIKey controller: pure functions over the state
// gathered once per reconcile, each table-tested in decide_test.go; the
// plan built on decideVersion is in plan.go.

// effectiveExpiry is spec.expiresAt, or creation+lifetime, or nil (never).
func effectiveExpiry(spec kw.APIKeySpec, created metav1.Time) *time.Time {
	switch {
	case spec.ExpiresAt != nil:
		t := spec.ExpiresAt.UTC()
		return &t
	case spec.Lifetime != nil:
		t := created.Add(spec.Lifetime.Duration).UTC()
		return &t
	}
	return nil
}

// action is what the controller does about the key's versions.
type action int

const (
	keepVersion    action = iota // the current version stands
	issueVersion                 // generate and deliver a new version
	adoptDelivered               // record the version found in the delivery Secret
	useImported                  // record the imported key as the current version
)

// Why a new version is issued; the first is an issue, the rest rotations.
const (
	whyFirst       = "first version"
	whyLost        = "the delivered key was lost and no copy of it exists"
	whyUndelivered = "a rotation was recorded but not delivered (interrupted)"
	whyRecipients  = "age recipients were added: a version that exists is never encrypted to a recipient it was not delivered to"
	whyRequested   = "rotation requested with the " + kw.AnnotationRotate + " annotation"
	whySelfRotated = "rotated by its holder through the key server"
	whyScheduled   = "the rotation period elapsed"
	whyAdopted     = "a delivered version was not yet recorded"
	whyImported    = "the imported key changed"
	whyRandomID    = "the imported key's public id was derived from the key; it is now random"
	whyNothingToDo = ""
)

// versionInput is everything decideVersion looks at.
type versionInput struct {
	now     time.Time
	expired bool
	// current is the recorded current version, nil if none.
	current *hashsecret.Version
	// deliveredID is the key id in the delivery Secret ("" when there is
	// none or it does not parse); deliveredMatches says it verifies against
	// the recorded current version.
	wantsSecret      bool
	deliveredID      string
	deliveredMatches bool
	// deliveredIsOld says the delivered id is a previous version's: a
	// stale copy, never adopted.
	deliveredIsOld bool
	// age: wanted, and whether the stored ciphertext is of the current
	// version for exactly the wanted recipients; recipientsAdded says a
	// wanted recipient is not among those the current version was
	// delivered to.
	wantsAge        bool
	ageUpToDate     bool
	recipientsAdded bool
	// recipientsDeferred: the new version recipientsAdded calls for waits
	// for the per-key limit on rotations (planVersion).
	recipientsDeferred bool
	// deliveredForWanted: the delivery Secret says its version was written
	// for every wanted age recipient (kw.AnnotationAgeRecipients).
	deliveredForWanted bool
	// importedHash is the hash of the key in importFrom ("" when not
	// imported).
	importedHash  string
	suspended     bool
	rotatePending bool // the rotate annotation has a value not yet acted on
	forced        bool // the key's holder asked the key server for a new version
	period        time.Duration
}

// decideVersion chooses what happens to the key's versions, and why.
func decideVersion(in versionInput) (action, string) {
	if in.importedHash != "" {
		switch {
		case in.current == nil:
			return useImported, whyFirst
		case in.current.Hash != in.importedHash:
			return useImported, whyImported
		case in.current.Lookup == "":
			// Recorded before imported keys got random ids: the same
			// key, bound since the same instant, under a random id.
			return useImported, whyRandomID
		}
		return keepVersion, whyNothingToDo
	}
	// A delivered key the record does not know is a version whose delivery
	// landed before its record write: adopt it rather than lose it.
	if in.wantsSecret && in.deliveredID != "" && !in.deliveredIsOld && (in.current == nil || in.deliveredID != in.current.ID) {
		return adoptDelivered, whyAdopted
	}
	if in.current == nil {
		if in.expired {
			return keepVersion, whyNothingToDo
		}
		return issueVersion, whyFirst
	}
	if in.expired {
		return keepVersion, whyNothingToDo
	}
	if in.wantsSecret && in.deliveredIsOld {
		// A rotation records its new version before delivering it, so
		// the old one is never refused while still delivered; this one's
		// plaintext did not survive to be delivered.
		return issueVersion, whyUndelivered
	}
	if in.wantsSecret && !in.deliveredMatches {
		return issueVersion, whyLost
	}
	if in.wantsAge && !in.ageUpToDate && (in.recipientsAdded || !in.wantsSecret) && !in.recipientsDeferred {
		// A new recipient gets a new version, never the one whoever reads
		// the delivery Secret holds (issue 12, attack 1): editing an
		// APIKey must not read its key. Without a Secret copy there is no
		// plaintext to encrypt again at all.
		return issueVersion, whyRecipients
	}
	if in.suspended {
		return keepVersion, whyNothingToDo
	}
	if in.forced {
		return issueVersion, whySelfRotated
	}
	if in.rotatePending {
		return issueVersion, whyRequested
	}
	if in.period > 0 && !in.now.Before(in.current.NotBefore.Add(in.period)) {
		return issueVersion, whyScheduled
	}
	return keepVersion, whyNothingToDo
}

// isStaleDelivery reports whether the delivered id names a version that
// stopped being current — previous, retired, or revoked (listed in
// spec.revokedKeyIDs, which outlives a lost record) — so it is never
// adopted as a new version. The current version is never stale.
func isStaleDelivery(rec *hashsecret.Record, id string, revoked []string) bool {
	if rec.Current != nil && rec.Current.ID == id {
		return false
	}
	return isPrevious(rec, id) || slices.Contains(rec.Retired, id) || slices.Contains(revoked, id)
}

// addsRecipients reports whether want holds a recipient that had is
// missing: the current version was never delivered to it.
func addsRecipients(want, had []string) bool {
	for _, r := range want {
		if !slices.Contains(had, r) {
			return true
		}
	}
	return false
}

// ageTargets are the wanted recipients a version may be encrypted to:
// those it was delivered to already (had). A version that exists is never
// encrypted to a recipient it was not delivered to (issue 12, attack 1).
func ageTargets(want, had []string) []string {
	var out []string
	for _, r := range want {
		if slices.Contains(had, r) {
			out = append(out, r)
		}
	}
	return out
}

// retire moves the current version to the previous ones, valid for grace
// (never past the key's expiry); a zero grace ends it now.
func retire(rec *hashsecret.Record, now time.Time, grace time.Duration) {
	if rec.Current == nil {
		return
	}
	old := *rec.Current
	rec.Current = nil
	rec.Retired = append([]string{old.ID}, slices.DeleteFunc(slices.Clone(rec.Retired), func(id string) bool { return id == old.ID })...)
	if len(rec.Retired) > hashsecret.MaxVersions {
		rec.Retired = rec.Retired[:hashsecret.MaxVersions]
	}
	if grace <= 0 {
		return
	}
	end := now.Add(grace)
	old.NotAfter = &end
	rec.Previous = append([]hashsecret.Version{old}, rec.Previous...)
}

// prune drops previous versions whose grace has ended, and the oldest ones
// beyond the bound on versions.
func prune(prev []hashsecret.Version, now time.Time) []hashsecret.Version {
	out := slices.DeleteFunc(slices.Clone(prev), func(v hashsecret.Version) bool {
		return v.NotAfter != nil && !now.Before(*v.NotAfter)
	})
	if len(out) > hashsecret.MaxVersions-1 {
		out = out[:hashsecret.MaxVersions-1]
	}
	return out
}

// nextRotation is when the current version is due for scheduled rotation.
func nextRotation(spec kw.APIKeySpec, rec *hashsecret.Record, expiry *time.Time, now time.Time) *time.Time {
	if spec.Rotation == nil || rec.Current == nil || spec.Suspended || keylifecycle.ExpiredAt(expiry, now) {
		return nil
	}
	t := rec.Current.NotBefore.Add(spec.Rotation.Period.Duration)
	if expiry != nil && !t.Before(*expiry) {
		return nil
	}
	return &t
}

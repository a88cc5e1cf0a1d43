package keylifecycle

import (
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
)

// CapAtExpiry makes the current version end exactly at the key's expiry
// (none when the key never expires: an extended or removed expiry revives
// it), and every previous version end by then at the latest, so a validator
// that reads the record rejects the key from that instant even when no
// controller runs.
func CapAtExpiry(rec *hashsecret.Record, expiry *time.Time) {
	rec.ExpiresAt = expiry
	if rec.Current != nil {
		rec.Current.NotAfter = nil
		if expiry != nil {
			t := *expiry
			rec.Current.NotAfter = &t
		}
	}
	if expiry == nil {
		return
	}
	for i := range rec.Previous {
		if v := &rec.Previous[i]; v.NotAfter == nil || v.NotAfter.After(*expiry) {
			t := *expiry
			v.NotAfter = &t
		}
	}
}

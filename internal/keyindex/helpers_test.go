package keyindex_test

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// t0 has nanoseconds so that instant comparisons are tested at full precision.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

func at(d time.Duration) *time.Time {
	t := t0.Add(d)
	return &t
}

func generate(tb testing.TB, prefix string) keymaterial.Key {
	tb.Helper()
	k, err := keymaterial.Generate(prefix)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// secretOf extracts the secret part through the public API only.
func secretOf(k keymaterial.Key) string {
	s := k.String()
	return s[len(k.Prefix)+1+12+1 : len(s)-6]
}

// withChecksum appends a Keyward checksum computed independently of
// keymaterial, to build well-formed keys with chosen parts.
func withChecksum(body string) string {
	v := crc32.ChecksumIEEE([]byte(body))
	var sum [6]byte
	for i := 5; i >= 0; i-- {
		sum[i] = base62[v%62]
		v /= 62
	}
	return body + string(sum[:])
}

// versionOf is the version a controller stores for a generated key.
func versionOf(k keymaterial.Key, notBefore time.Time, notAfter *time.Time) hashsecret.Version {
	return hashsecret.Version{ID: k.ID, Hash: k.SecretHash(), NotBefore: notBefore, NotAfter: notAfter}
}

// importedVersion is the version a controller stores for an imported key:
// a random id, found by its hash.
func importedVersion(tb testing.TB, plain string, notBefore time.Time) hashsecret.Version {
	tb.Helper()
	id, err := keymaterial.GenerateID()
	if err != nil {
		tb.Fatal(err)
	}
	hash, keywardFormat := keymaterial.ImportedHash(plain)
	v := hashsecret.Version{ID: id, Hash: hash, NotBefore: notBefore, Hint: hashsecret.HintImported, Lookup: hashsecret.LookupHash}
	if keywardFormat {
		v.Lookup = hashsecret.LookupSecretHash
	}
	return v
}

func apiKeyRecord(namespace, name string, current hashsecret.Version, previous ...hashsecret.Version) *hashsecret.Record {
	return &hashsecret.Record{
		Kind:      hashsecret.KindAPIKey,
		Namespace: namespace,
		Name:      name,
		Subject:   name + "-subject",
		Groups:    []string{"reporting"},
		Scopes:    []string{"invoices:read", "invoices:list"},
		Access:    "ReadOnly",
		Current:   &current,
		Previous:  previous,
	}
}

func pairRecord(namespace, name, accessKeyID, secretKey string, notBefore time.Time, notAfter *time.Time) *hashsecret.Record {
	return &hashsecret.Record{
		Kind:      hashsecret.KindAccessKeyPair,
		Namespace: namespace,
		Name:      name,
		Subject:   name + "-subject",
		Scopes:    []string{"tokens:issue"},
		Access:    "ReadWrite",
		Current: &hashsecret.Version{
			ID: accessKeyID, Hash: keymaterial.Hash(secretKey), NotBefore: notBefore, NotAfter: notAfter,
		},
		Tokens: &hashsecret.TokenPolicy{DefaultLifetime: time.Hour, MaxLifetime: 12 * time.Hour, Audiences: []string{"billing"}},
	}
}

func hashName(kind, namespace, owner string) string { return hashsecret.Name(kind, namespace, owner) }

func mustUpsert(tb testing.TB, x interface {
	Upsert(string, *hashsecret.Record) error
}, rec *hashsecret.Record) {
	tb.Helper()
	if err := x.Upsert(hashName(rec.Kind, rec.Namespace, rec.Name), rec); err != nil {
		tb.Fatalf("Upsert %s/%s: %v", rec.Namespace, rec.Name, err)
	}
}

// legacyImportedID is how Keyward derived an imported key's id before
// imported keys got random ones (issue 12, attack 3): records written then
// carry it, and must keep validating. Pinned by TestLegacyImportedID.
func legacyImportedID(s string) string {
	sum := sha256.Sum256([]byte("keyward-import-id:" + s))
	const pow6 = 62 * 62 * 62 * 62 * 62 * 62
	var id [12]byte
	put := func(dst []byte, v uint64) {
		for i := len(dst) - 1; i >= 0; i-- {
			dst[i] = base62[v%62]
			v /= 62
		}
	}
	put(id[:6], binary.BigEndian.Uint64(sum[0:8])%pow6)
	put(id[6:], binary.BigEndian.Uint64(sum[8:16])%pow6)
	return string(id[:])
}

func TestLegacyImportedID(t *testing.T) {
	// The value the derivation gave (cross-checked in Python when it was
	// current), so the legacy records the tests build are the real ones.
	if got, want := legacyImportedID("3f9a1c7e5b2d4086af13c9e07b5d2e1f"), "r5rc5GKbJVnB"; got != want {
		t.Errorf("legacyImportedID = %q, want %q", got, want)
	}
}

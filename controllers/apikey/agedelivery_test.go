package apikey

import (
	"slices"
	"testing"

	"filippo.io/age"

	kw "github.com/keyward/keyward/api/v1alpha1"
	"github.com/keyward/keyward/internal/agecrypt"
	"github.com/keyward/keyward/internal/hashsecret"
	"github.com/keyward/keyward/internal/keymaterial"
)

// TestAgeDelivery: the current version's ciphertext is only ever made for
// recipients that version was delivered to (issue 12, attacks 1 and 10).
func TestAgeDelivery(t *testing.T) {
	ids := map[string]*age.X25519Identity{}
	r := func(name string) string {
		if ids[name] == nil {
			id, err := age.GenerateX25519Identity()
			if err != nil {
				t.Fatal(err)
			}
			ids[name] = id
		}
		return ids[name].Recipient().String()
	}
	rs := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, r(n))
		}
		return out
	}
	cur, err := keymaterial.Generate("kw")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := agecrypt.Encrypt(cur.String(), rs("owner", "gone"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		want      []string // spec.delivery.ageRecipients
		had       []string // the record's recipients of the current version
		age       string   // the stored ciphertext
		plaintext bool     // the current version's plaintext is at hand
		opens     []string // who decrypts the result
		recorded  []string
	}{
		"unchanged recipients keep the stored ciphertext": {
			want: rs("owner", "gone"), had: rs("owner", "gone"), age: stored, plaintext: true,
			opens: []string{"owner", "gone"}, recorded: rs("owner", "gone"),
		},
		"a removed recipient loses it, the others keep it": {
			want: rs("owner"), had: rs("owner", "gone"), age: stored, plaintext: true,
			opens: []string{"owner"}, recorded: rs("owner"),
		},
		"attack 10: a recipient added while its rotation waits gets nothing": {
			want: rs("owner", "gone", "mallory"), had: rs("owner", "gone"), age: stored, plaintext: true,
			opens: []string{"owner", "gone"}, recorded: rs("owner", "gone"),
		},
		"attack 10: a recipient replacing another while its rotation waits gets nothing": {
			want: rs("owner", "mallory"), had: rs("owner", "gone"), age: stored, plaintext: true,
			opens: []string{"owner"}, recorded: rs("owner"),
		},
		"attack 10: recipients all replaced: no ciphertext": {
			want: rs("mallory"), had: rs("owner", "gone"), age: stored, plaintext: true,
		},
		"attack 1: an adopted version is made again for the recipients it was written for": {
			want: rs("owner", "mallory"), had: rs("owner"), plaintext: true,
			opens: []string{"owner"}, recorded: rs("owner"),
		},
		"attack 1: an adopted version written for no recipient gets no ciphertext": {
			want: rs("owner", "mallory"), plaintext: true,
		},
		"without the plaintext the stored ciphertext stays for those it was made for": {
			want: rs("owner", "mallory"), had: rs("owner", "gone"), age: stored,
			opens: []string{"owner", "gone"}, recorded: rs("owner", "gone"),
		},
		"without the plaintext nor a ciphertext there is none": {
			want: rs("owner"), had: rs("owner"),
		},
	} {
		t.Run(name, func(t *testing.T) {
			key := &kw.APIKey{Spec: kw.APIKeySpec{Delivery: &kw.Delivery{AgeRecipients: c.want}}}
			rec := &hashsecret.Record{Current: newVersion(cur, t0), AgeRecipients: slices.Clone(c.had)}
			var plain *keymaterial.Key
			if c.plaintext {
				plain = &cur
			}
			out, err := ageDelivery(key, rec, c.age, plain)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rec.AgeRecipients, c.recorded) {
				t.Errorf("recorded recipients %q, want %q", rec.AgeRecipients, c.recorded)
			}
			for name, id := range ids {
				got, err := agecrypt.Decrypt(out, id)
				opened := err == nil && got == cur.String()
				if opened != slices.Contains(c.opens, name) {
					t.Errorf("%s opens the ciphertext: %v", name, opened)
				}
			}
		})
	}
}

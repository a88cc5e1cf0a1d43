package main

import (
	"fmt"
	"io"
	"os"

	"filippo.io/age"
)

// maxIdentityFile bounds the identity file read; one identity is ~75 bytes.
const maxIdentityFile = 1 << 20

// decrypt opens an APIKey's status.ageDelivery with an age identity file,
// as `age -d -i FILE` would, and prints the key.
func (a *app) decrypt(args []string) error {
	var identity string
	fs := a.flagSet("decrypt")
	fs.StringVarP(&identity, "identity", "i", "", "age identity file (as written by age-keygen)")
	args, err := a.parse("decrypt", fs, args)
	if err != nil {
		return err
	}
	name, err := oneName("decrypt", args)
	if err != nil {
		return err
	}
	if identity == "" {
		return usagef("decrypt", "--identity FILE is required")
	}
	ids, err := readIdentities(identity)
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	key, err := c.getKey(a.ctx, name)
	if err != nil {
		return err
	}
	if d := key.Status.AgeDelivery; d != nil && d.KeyID != key.Status.KeyID {
		fmt.Fprintf(a.s.ErrOut, "Warning: the age delivery is of key id %s, but the current version is %s; the new delivery is not written yet.\n",
			d.KeyID, key.Status.KeyID)
	}
	plain, err := openDelivery(key, ids...)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.s.Out, plain)
	return err
}

// readIdentities parses an age identity file. Its errors never quote the
// file: a malformed line may be a secret key.
func readIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the identity file: %w", err)
	}
	defer func() { _ = f.Close() }()
	ids, err := age.ParseIdentities(io.LimitReader(f, maxIdentityFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not an age identity file (one AGE-SECRET-KEY-1... per line, # comments)", path)
	}
	return ids, nil
}

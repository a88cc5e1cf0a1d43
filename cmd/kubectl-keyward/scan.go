package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/keyward/keyward/internal/keymaterial"
)

// maxScanInput bounds what scan reads of one file or of stdin.
const maxScanInput = 16 << 20

// scan finds strings shaped like Keyward API keys in files (or stdin) and
// checks each one's checksum, offline: the step after a secret scanner,
// whose regular expression cannot (docs/secret-scanning.md). It prints where
// each candidate is, its public part only, and whether it is a key; it
// exits 1 when one is, as scanners do on a finding.
func (a *app) scan(args []string) error {
	fs := a.flagSet("scan")
	files, err := a.parse("scan", fs, args)
	if err != nil {
		return err
	}
	inputs := files
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	found := 0
	for _, name := range inputs {
		text, err := a.readScanInput(name)
		if err != nil {
			return err
		}
		label := name
		if name == "-" {
			label = "<stdin>"
		}
		for _, c := range keymaterial.FindAPIKeys(string(text)) {
			line := 1 + bytes.Count(text[:c.Offset], []byte("\n"))
			verdict := "not a key: checksum mismatch"
			if c.Err == nil {
				verdict = "KEY: valid checksum"
				found++
			}
			fmt.Fprintf(a.s.Out, "%s:%d: %s %s\n", label, line, c.Redacted, verdict)
		}
	}
	if found > 0 {
		fmt.Fprintf(a.s.ErrOut, "%d Keyward API key(s) found: revoke or rotate them (kubectl keyward rotate NAME).\n", found)
		return errSilent
	}
	return nil
}

func (a *app) readScanInput(name string) ([]byte, error) {
	var r io.Reader = a.s.In
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	text, err := io.ReadAll(io.LimitReader(r, maxScanInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(text) > maxScanInput {
		return nil, fmt.Errorf("%s is larger than %d MiB: scan it in parts", name, maxScanInput>>20)
	}
	return text, nil
}

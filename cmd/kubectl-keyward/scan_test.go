package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keymaterial"
)

func runScan(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"scan"}, args...),
		streams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, func(string) string { return "" })
	return code, out.String(), errOut.String()
}

// scan is the checksum step after a secret scanner: it tells real keys
// from look-alikes, offline, and never prints a key's secret part.
func TestScanTellsRealKeysFromLookAlikesWithoutPrintingThem(t *testing.T) {
	k, err := keymaterial.Generate("kw")
	if err != nil {
		t.Fatal(err)
	}
	key := k.String()
	lookAlike := key[:len(key)-6] + "000000"
	if key == lookAlike {
		t.Skip("the key's checksum happens to be 000000")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(file, []byte("a: 1\ntoken: "+key+"\nother: "+lookAlike+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runScan(t, "", file)
	if code != exitFailed {
		t.Errorf("exit %d with a real key in the file, want %d", code, exitFailed)
	}
	redacted := "kw_" + k.ID + "_****"
	want := file + ":2: " + redacted + " KEY: valid checksum\n" + file + ":3: " + redacted + " not a key: checksum mismatch\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errOut, "1 Keyward API key(s) found") {
		t.Errorf("stderr: %s", errOut)
	}
	secret := key[len("kw_")+12+1:]
	for _, s := range []string{out, errOut} {
		if strings.Contains(s, secret) || strings.Contains(s, lookAlike[len("kw_")+12+1:]) {
			t.Error("scan printed a secret part")
		}
	}

	// Candidates on stdin, e.g. a scanner's findings: only look-alikes, exit 0.
	code, out, _ = runScan(t, lookAlike+"\nrandom text kw_short_x\n")
	if code != exitOK || out != "<stdin>:1: "+redacted+" not a key: checksum mismatch\n" {
		t.Errorf("stdin with a look-alike only: exit %d, stdout %q", code, out)
	}
	if code, _, errOut = runScan(t, "", filepath.Join(dir, "missing")); code != exitFailed || errOut == "" {
		t.Errorf("a missing file: exit %d, stderr %q", code, errOut)
	}
}

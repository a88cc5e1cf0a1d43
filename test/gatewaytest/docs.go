package gatewaytest

import (
	"net"
	"os"
	"strings"
	"testing"
)

// DocumentedBlock is the fenced block of language lang (```lang) in the
// document at docPath whose text starts with marker: the gateway tests run
// the configurations exactly as docs/gateways.md prints them.
func DocumentedBlock(t *testing.T, docPath, lang, marker string) string {
	t.Helper()
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	fence := "```" + lang + "\n"
	for rest := string(doc); ; {
		i := strings.Index(rest, fence)
		if i < 0 {
			break
		}
		rest = rest[i+len(fence):]
		end := strings.Index(rest, "\n```")
		if end < 0 {
			t.Fatalf("%s: an unterminated %s block", docPath, lang)
		}
		if block := rest[:end+1]; strings.HasPrefix(block, marker) {
			return block
		}
		rest = rest[end:]
	}
	t.Fatalf("%s has no %s block starting with %q", docPath, lang, marker)
	return ""
}

// ReplaceN replaces old, which must occur exactly n times in a documented
// block (at least once when n < 0): a change to the document that a test
// does not follow fails loudly instead of testing something else.
func ReplaceN(t *testing.T, block, old, new string, n int) string {
	t.Helper()
	if got := strings.Count(block, old); (n < 0 && got == 0) || (n >= 0 && got != n) {
		t.Fatalf("the documented block has %q %d times, want %d (-1: at least once): update the test with docs/gateways.md", old, got, n)
	}
	return strings.ReplaceAll(block, old, new)
}

// FreePort is a TCP port free on 127.0.0.1 a moment ago.
func FreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// Package secretscan runs the secret-scanning rules docs/secret-scanning.md
// publishes, as printed there, over generated keys, look-alikes and random
// strings: gitleaks itself (built from its Go module by hack/gitleaks.sh),
// and the documented checksum step.
package secretscan

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keyward/keyward/internal/keymaterial"
	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/test/gatewaytest"
)

var doc = filepath.Join(testenv.RepoRoot(), "docs", "secret-scanning.md")

// tool builds a scanner with its hack/ script; without it the test fails
// in CI and is skipped elsewhere (a machine without the module proxy).
func tool(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", script))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("hack/%s: %v", script, err)
		}
		t.Skipf("hack/%s could not build the scanner: %v", script, err)
	}
	return strings.TrimSpace(string(out))
}

// corpus is what the test scans, and what each rule must find in it.
type corpus struct {
	files map[string]string
	// realKeys: every occurrence of a generated API key.
	realKeys []string
	// lookAlikes: strings of the key's shape that are no key (the rule's
	// regex cannot tell; the checksum does).
	lookAlikes []string
	// glued: real keys right after a lower-case word, which the regex
	// reads with a longer prefix (a look-alike) and the checksum step finds.
	glued []string
	// secretKeys: generated secret keys next to their access key id.
	secretKeys []string
}

func key(t *testing.T, prefix string) string {
	t.Helper()
	k, err := keymaterial.Generate(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return k.String()
}

func randomBase62(t *testing.T, n int) string {
	t.Helper()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// wrongChecksum changes a key's last checksum character.
func wrongChecksum(k string) string {
	last := k[len(k)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'B'
	}
	return k[:len(k)-1] + string(repl)
}

func newCorpus(t *testing.T) corpus {
	t.Helper()
	kw1, kw2, kw3, acme, long, b64 := key(t, "kw"), key(t, "kw"), key(t, "kw"), key(t, "acme"), key(t, "0123456789abcdef"), key(t, "kw")
	bad := wrongChecksum(key(t, "kw"))
	glued := key(t, "kw") // glued to a lowercase word: read with prefix "tokenkw"
	ak1, ak2 := accessKeyID(t), accessKeyID(t)
	sk1, sk2 := secretKey(t), secretKey(t)
	near := key(t, "kw")
	c := corpus{
		realKeys:   []string{kw1, kw2, kw3, acme, long, b64, kw1},
		lookAlikes: []string{bad, "tokenkw" + glued[2:]},
		glued:      []string{glued},
		secretKeys: []string{sk1, sk2},
	}
	manifest := "apiVersion: v1\nkind: Secret\nmetadata: {name: billing-key}\ndata:\n  key: " + base64.StdEncoding.EncodeToString([]byte(b64)) + "\n"
	c.files = map[string]string{
		"config/values.yaml": "# Billing reporter\nbilling:\n  apiKey: " + kw1 + "\n  url: https://api.example.com/v1?key=" + kw2 + "&x=1\n",
		".env":               "ACME_TOKEN=" + acme + "\nMY_TOKEN_" + kw3 + "\nLONG_PREFIX=" + long + "\n",
		"client.json":        `{"headers": {"Authorization": "Bearer ` + kw1 + `"}}` + "\n",
		"secret.yaml":        manifest,
		"lookalikes.txt": strings.Join([]string{
			"wrong checksum: " + bad,
			"glued: token" + glued,
			// None of these has the key's shape.
			"truncated: " + near[:len(near)-1],
			"one longer: " + near + "x",
			"upper-case prefix: KW" + near[2:],
			"dashes: " + strings.ReplaceAll(near, "_", "-"),
			"short key id: kw_" + randomBase62(t, 11) + "_" + randomBase62(t, 38),
			"prefix too long: abcdefghijklmnopq_" + randomBase62(t, 12) + "_" + randomBase62(t, 38),
			"followed by an underscore: " + near + "_v2",
			// The key's shape, too little entropy: a placeholder.
			"placeholder: kw_000000000000_" + strings.Repeat("0", 38),
			"placeholder: kw_xxxxxxxxxxxx_" + strings.Repeat("x", 38),
		}, "\n") + "\n",
		"noise.txt": strings.Join([]string{
			"random: " + randomBase62(t, 52), "random: " + randomBase62(t, 40), "random: " + randomBase62(t, 64),
			"sha256: " + hexString(t, 32), "sha1: " + hexString(t, 20), "uuid: 3f2b1c4e-9a7d-4e21-8b6f-0c5d2e1a7b93",
			"jwt: eyJhbGciOiJFUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJhbGljZSJ9." + randomBase62(t, 43),
			"git: commit " + hexString(t, 20),
		}, "\n") + "\n",
		// A pair as its delivery Secret holds it, and as an env file does.
		"pair/deployer.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: deployer-keys}\nstringData:\n  accessKeyID: " + ak1 + "\n  secretKey: " + sk1 + "\n",
		"pair/deployer.env":  "KEYWARD_ACCESS_KEY_ID=" + ak2 + "\nKEYWARD_SECRET_KEY=" + sk2 + "\n",
		// Secret-key look-alikes near an access key id, and far from one.
		"pair/near-misses.env": strings.Join([]string{
			"KEYWARD_ACCESS_KEY_ID=" + ak1,
			"TOO_SHORT=" + randomBase62(t, 39),
			"TOO_LONG=" + randomBase62(t, 41),
			"IN_BASE64=" + randomBase62(t, 40) + "+/" + randomBase62(t, 10) + "==",
			"", "", "", "", "", "",
			"FAR_FROM_ANY_ACCESS_KEY_ID=" + randomBase62(t, 40),
			"BAD_ACCESS_KEY_ID=KWAK" + strings.Repeat("1", 16),
			"", "", "", "", "", "",
			"ALSO_FAR=" + randomBase62(t, 40),
		}, "\n") + "\n",
	}
	return c
}

func accessKeyID(t *testing.T) string {
	t.Helper()
	id, err := keymaterial.GenerateAccessKeyID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func secretKey(t *testing.T) string {
	t.Helper()
	s, err := keymaterial.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hexString(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (c corpus) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range c.files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type finding struct {
	RuleID    string
	Secret    string
	File      string
	StartLine int
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestTheDocumentedGitleaksRuleFindsExactlyTheRealKeysWithTheChecksumStep(t *testing.T) {
	rules := gatewaytest.DocumentedBlock(t, doc, "toml", "# Keyward API keys and access key pairs")
	// The rule's regular expressions are the ones the code publishes.
	for _, p := range []string{keymaterial.APIKeyPattern, keymaterial.AccessKeyIDPattern, keymaterial.SecretKeyPattern} {
		if !strings.Contains(rules, "regex = '''"+p+"'''") {
			t.Fatalf("the documented gitleaks rules do not use the pattern %s", p)
		}
	}
	gitleaks := tool(t, "gitleaks.sh")
	c := newCorpus(t)
	dir := c.write(t)
	config := filepath.Join(t.TempDir(), "keyward-gitleaks.toml")
	if err := os.WriteFile(config, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(gitleaks, "dir", dir, "--config", config, "--report-format", "json", "--report-path", report,
		"--no-banner", "--exit-code", "0", "--log-level", "warn")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitleaks: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var findings []finding
	if err := json.Unmarshal(raw, &findings); err != nil {
		t.Fatalf("gitleaks report: %v\n%s", err, raw)
	}

	var apiKeys, secretKeys []string
	for _, f := range findings {
		switch f.RuleID {
		case "keyward-api-key":
			apiKeys = append(apiKeys, f.Secret)
		case "keyward-secret-key":
			secretKeys = append(secretKeys, f.Secret)
		default:
			t.Errorf("a finding of rule %s (%s:%d)", f.RuleID, f.File, f.StartLine)
		}
	}
	// The regex alone: every real key, and the look-alikes of its shape.
	if want := sorted(append(slices.Clone(c.realKeys), c.lookAlikes...)); !slices.Equal(sorted(apiKeys), want) {
		t.Errorf("keyward-api-key found %d candidates, want the %d real keys and %d look-alikes:\n%s",
			len(apiKeys), len(c.realKeys), len(c.lookAlikes), describe(apiKeys, c))
	}
	// The checksum step (kubectl keyward scan reads the candidates with
	// keymaterial.FindAPIKeys): exactly the real keys, the glued one too.
	var confirmed []string
	for _, s := range apiKeys {
		for _, cand := range keymaterial.FindAPIKeys(s) {
			switch {
			case cand.Err == nil:
				confirmed = append(confirmed, cand.Key.String())
			case !errors.Is(cand.Err, keymaterial.ErrChecksum):
				t.Errorf("a candidate of the key's shape fails to parse with %v, not a checksum mismatch", cand.Err)
			}
		}
	}
	if want := append(slices.Clone(c.realKeys), c.glued...); !slices.Equal(sorted(confirmed), sorted(want)) {
		t.Errorf("after the checksum step %d keys, want the %d real ones:\n%s", len(confirmed), len(want), describe(confirmed, c))
	}
	if !slices.Equal(sorted(secretKeys), sorted(c.secretKeys)) {
		t.Errorf("keyward-secret-key found %d, want the %d secret keys next to their access key ids", len(secretKeys), len(c.secretKeys))
	}
}

// describe says which corpus entry each finding is, never printing a key.
func describe(found []string, c corpus) string {
	var b strings.Builder
	for _, s := range found {
		kind := "unknown"
		switch {
		case slices.Contains(c.realKeys, s), slices.Contains(c.glued, s):
			kind = "real key"
		case slices.Contains(c.lookAlikes, s):
			kind = "look-alike"
		}
		fmt.Fprintf(&b, "  %s (%d characters, %s)\n", kind, len(s), s[:min(len(s), 8)])
	}
	return b.String()
}

// The TruffleHog detector and the GitHub pattern use the same expressions;
// their engines are not run here (TruffleHog's is Go's RE2 too; GitHub's is
// not available), so Go's regexp applies them, GitHub's before and after
// around the secret format, to the corpus.
func TestTheTruffleHogAndGitHubPatternsMatchWhatTheGitleaksRuleDoes(t *testing.T) {
	var th struct {
		Detectors []struct {
			Name     string
			Keywords []string
			Regex    map[string]string
		}
	}
	block := gatewaytest.DocumentedBlock(t, doc, "yaml", "# Keyward API keys and access key pairs")
	if err := yaml.Unmarshal([]byte(block), &th); err != nil {
		t.Fatal(err)
	}
	regexes := map[string]string{}
	for _, d := range th.Detectors {
		for name, re := range d.Regex {
			regexes[d.Name+"."+name] = re
		}
	}
	for name, want := range map[string]string{
		"KeywardAPIKey.key":                keymaterial.APIKeyPattern,
		"KeywardAccessKeyPair.accessKeyID": keymaterial.AccessKeyIDPattern,
		"KeywardAccessKeyPair.secretKey":   keymaterial.SecretKeyPattern,
	} {
		if regexes[name] != want {
			t.Errorf("TruffleHog regex %s is %q, want %q", name, regexes[name], want)
		}
	}

	raw, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	row := func(field string) []string {
		m := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(field) + ` \| ` + "`([^`]*)`" + ` \| ` + "`([^`]*)`" + ` \|$`).FindStringSubmatch(string(raw))
		if m == nil {
			t.Fatalf("docs/secret-scanning.md has no GitHub pattern row %q", field)
		}
		// Markdown escapes | in tables.
		return []string{strings.ReplaceAll(m[1], `\|`, "|"), strings.ReplaceAll(m[2], `\|`, "|")}
	}
	format, before, after := row("Secret format"), row("Before secret"), row("After secret")
	must := row("Additional secret requirements: must match")
	if format[0] != keymaterial.APIKeyFormat || format[1] != keymaterial.SecretKeyFormat {
		t.Errorf("GitHub secret formats %q, want %q and %q", format, keymaterial.APIKeyFormat, keymaterial.SecretKeyFormat)
	}
	github := regexp.MustCompile("(?:" + before[0] + ")(" + format[0] + ")(?:" + after[0] + ")")
	c := newCorpus(t)
	var gh, ghSecretKeys []string
	for _, name := range sorted(mapsKeys(c.files)) {
		text := c.files[name]
		for _, m := range github.FindAllStringSubmatch(text, -1) {
			if regexp.MustCompile(must[0]).MatchString(m[1]) {
				gh = append(gh, m[1])
			}
		}
		// GitHub pattern for the secret key: by its name.
		for _, m := range regexp.MustCompile("(?:"+before[1]+")("+format[1]+")(?:"+after[1]+")").FindAllStringSubmatch(text, -1) {
			if !regexp.MustCompile(must[1]).MatchString(m[1]) {
				continue
			}
			ghSecretKeys = append(ghSecretKeys, m[1])
			if !slices.Contains(c.secretKeys, m[1]) {
				t.Errorf("the GitHub secret key pattern matches something else in %s", name)
			}
		}
	}
	if !slices.Equal(sorted(ghSecretKeys), sorted(c.secretKeys)) {
		t.Errorf("the GitHub secret key pattern finds %d, want the %d secret keys", len(ghSecretKeys), len(c.secretKeys))
	}
	// Base64 inside the Secret manifest is GitHub's to decode or not; the
	// plain text holds the other real keys and both look-alikes.
	var plain []string
	for _, k := range c.realKeys {
		if strings.Contains(strings.Join(mapsValues(c.files), "\n"), k) {
			plain = append(plain, k)
		}
	}
	if want := sorted(append(plain, c.lookAlikes...)); !slices.Equal(sorted(gh), want) {
		t.Errorf("the GitHub API key pattern finds %d, want %d:\n%s", len(gh), len(want), describe(gh, c))
	}
}

func mapsKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mapsValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// The documented Python check agrees with Keyward's on real keys and
// look-alikes.
func TestTheDocumentedPythonChecksumAgreesWithKeyward(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is not installed")
		}
		t.Skip("python3 is not installed")
	}
	code := gatewaytest.DocumentedBlock(t, doc, "python", "import zlib")
	var cases []string
	var want []string
	for _, prefix := range []string{"kw", "acme", "0123456789abcdef"} {
		k := key(t, prefix)
		cases = append(cases, k, wrongChecksum(k))
		want = append(want, "True", "False")
	}
	script := code + "\nimport sys\nfor line in sys.stdin.read().split():\n    print(is_keyward_key(line))\n"
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(cases, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, want) {
		t.Errorf("the documented check says %v, want %v", got, want)
	}
}

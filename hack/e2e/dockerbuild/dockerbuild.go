// Package dockerbuild reads the `go build` line of Keyward's Dockerfile, so
// that the e2e image is built from the same flags as the image users build
// (the Dockerfile stays the one source of truth), and checks a binary's
// embedded build settings against it.
package dockerbuild

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// Build is the Dockerfile's `go build` command.
type Build struct {
	// Env holds the VAR=value assignments before `go build`, with build
	// args resolved as `docker build` would on this machine.
	Env map[string]string
	// Flags are the arguments between `go build` and `-o`.
	Flags []string
	// Package is what it builds (".").
	Package string
}

// Parse finds the one RUN instruction that runs `go build` in a Dockerfile
// and splits it into its environment, flags and package. goarch stands for
// ${TARGETARCH}, which docker sets to the platform's.
func Parse(dockerfile []byte, goarch string) (Build, error) {
	var found []string
	sc := bufio.NewScanner(bytes.NewReader(dockerfile))
	var cont string
	for sc.Scan() {
		line := cont + sc.Text()
		cont = ""
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSuffix(line, `\`) + " "
			continue
		}
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "RUN ") && strings.Contains(t, "go build") {
			found = append(found, strings.TrimSpace(strings.TrimPrefix(t, "RUN ")))
		}
	}
	if len(found) != 1 {
		return Build{}, fmt.Errorf("want exactly one RUN with `go build` in the Dockerfile, found %d", len(found))
	}
	words, err := splitWords(found[0])
	if err != nil {
		return Build{}, err
	}
	b := Build{Env: map[string]string{}}
	i := 0
	for ; i < len(words) && strings.Contains(words[i], "=") && !strings.HasPrefix(words[i], "-"); i++ {
		k, v, _ := strings.Cut(words[i], "=")
		b.Env[k] = resolve(v, goarch)
	}
	if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
		return Build{}, fmt.Errorf("the RUN line is not `[VAR=value…] go build …`: %q", found[0])
	}
	rest := words[i+2:]
	for j := 0; j < len(rest); j++ {
		switch {
		case rest[j] == "-o":
			if j+2 != len(rest)-1 && j+2 != len(rest) {
				return Build{}, fmt.Errorf("unexpected words after the package in %q", found[0])
			}
			if j+2 < len(rest) {
				b.Package = rest[j+2]
			}
			return b, nil
		case strings.HasPrefix(rest[j], "-"):
			f := rest[j]
			if valued[strings.TrimLeft(f, "-")] && !strings.Contains(f, "=") && j+1 < len(rest) {
				j++
				f += "=" + rest[j]
			}
			b.Flags = append(b.Flags, f)
		default:
			return Build{}, fmt.Errorf("want flags, then -o NAME PACKAGE; got %q", rest[j])
		}
	}
	return Build{}, fmt.Errorf("no -o in %q", found[0])
}

// valued are the go build flags that take a value, which may be the next word.
var valued = map[string]bool{"asmflags": true, "buildmode": true, "compiler": true, "gccgoflags": true, "gcflags": true,
	"installsuffix": true, "ldflags": true, "mod": true, "modfile": true, "overlay": true, "p": true, "pgo": true, "pkgdir": true, "tags": true, "toolexec": true}

// resolve expands ${TARGETOS:-linux}-style build args: TARGETARCH is
// goarch, anything else takes its default.
func resolve(v, goarch string) string {
	if !strings.HasPrefix(v, "${") || !strings.HasSuffix(v, "}") {
		return v
	}
	name, def, _ := strings.Cut(v[2:len(v)-1], ":-")
	if name == "TARGETARCH" && def == "" {
		return goarch
	}
	return def
}

// splitWords splits a shell command line into words, honouring single and
// double quotes (enough for a Dockerfile's RUN line; no expansions).
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r == '&' || r == ';' || r == '|':
			return nil, fmt.Errorf("the go build line chains commands (%q); keep it one command", s)
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// Settings are the build settings (as `go version -m` names them) that a
// binary built by b must carry.
func (b Build) Settings() map[string]string {
	want := map[string]string{}
	for k, v := range b.Env {
		switch k {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64", "GOARM", "GOEXPERIMENT":
			want[k] = v
		}
	}
	for _, f := range b.Flags {
		name, val, hasVal := strings.Cut(f, "=")
		name = "-" + strings.TrimLeft(name, "-")
		if !hasVal {
			val = "true"
		}
		want[name] = val
	}
	return want
}

// flagSettings are the settings that record how the go command was told to
// build; a binary carrying one the Dockerfile does not ask for was built
// differently.
var flagSettings = []string{"-asmflags", "-buildmode", "-compiler", "-gcflags", "-ldflags", "-tags", "-trimpath", "-race", "-msan", "-asan", "CGO_ENABLED"}

// defaults are the settings the go command records whatever the flags.
var defaults = map[string]string{"-buildmode": "exe", "-compiler": "gc"}

// Compare lists how the settings a binary carries differ from want.
func Compare(want, got map[string]string) []string {
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("%s: the Dockerfile says %q, the binary has %q", k, w, got[k]))
		}
	}
	for _, k := range flagSettings {
		g, ok := got[k]
		if _, wanted := want[k]; wanted || !ok || defaults[k] == g {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s: the binary has %q, which the Dockerfile does not ask for", k, g))
	}
	sort.Strings(diffs)
	return diffs
}

// SettingsOf reads a Go binary's build settings. The go command does not
// record -ldflags when -trimpath is set (they may hold local paths, go.dev/issue/52372),
// so then "-ldflags" is what the ELF file shows of the only ones a release
// build uses: -s (no symbol table) and -w (no DWARF); Go ≥ 1.22's -s implies -w.
func SettingsOf(binary []byte) (map[string]string, error) {
	bi, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, s := range bi.Settings {
		got[s.Key] = s.Value
	}
	if _, ok := got["-ldflags"]; !ok && got["-trimpath"] == "true" {
		f, err := elf.NewFile(bytes.NewReader(binary))
		if err != nil {
			return nil, fmt.Errorf("not an ELF binary, cannot tell its -ldflags: %w", err)
		}
		var symtab, dwarf bool
		for _, s := range f.Sections {
			symtab = symtab || s.Name == ".symtab"
			dwarf = dwarf || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_")
		}
		var ld []string
		if !symtab {
			ld = append(ld, "-s")
		}
		if !dwarf {
			ld = append(ld, "-w")
		}
		got["-ldflags"] = strings.Join(ld, " ")
	}
	return got, nil
}

// Check reads the binary's build settings and fails when they are not the
// Dockerfile's.
func (b Build) Check(binary []byte) error {
	got, err := SettingsOf(binary)
	if err != nil {
		return err
	}
	if d := Compare(b.Settings(), got); len(d) > 0 {
		return fmt.Errorf("not built as the Dockerfile builds it:\n  %s", strings.Join(d, "\n  "))
	}
	return nil
}

// Command returns the `go build` that builds pkg (b.Package when empty)
// into out, in dir, with the Dockerfile's environment and flags.
func (b Build) Command(dir, out, pkg string) *exec.Cmd {
	if pkg == "" {
		pkg = b.Package
	}
	args := append([]string{"build"}, b.Flags...)
	args = append(args, "-o", out, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		_, set := b.Env[k]
		return set || k == "GOFLAGS"
	})
	for k, v := range b.Env {
		env = append(env, k+"="+v)
	}
	// The builder stage has no GOFLAGS and no .git (so no VCS stamp); a
	// developer's GOFLAGS (-tags, -race) must not leak into the image.
	env = append(env, "GOFLAGS=-buildvcs=false")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd
}

// HostArch is ${TARGETARCH} for an image built for this machine.
func HostArch() string { return runtime.GOARCH }

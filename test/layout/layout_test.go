// Package layout checks the import rules README's "Layout" describes: the
// domain packages under internal/ import neither controllers/ nor webhook/
// (not even in their tests), and the composition root operator/ is imported
// only by the commands at the top (main.go, hack/...) and by tests.
package layout

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

const module = "github.com/keyward/keyward"

// pkg is one package as `go list -test` lists it: test variants are named
// "<path> [<path>.test]", "<path>_test [<path>.test]" and "<path>.test".
type pkg struct {
	path    string
	imports []string // direct
	deps    []string // transitive
}

// below reports whether import path p is dir or a package under it.
func below(p, dir string) bool {
	dir = module + "/" + dir
	return p == dir || strings.HasPrefix(p, dir+"/") || strings.HasPrefix(p, dir+"_test") ||
		strings.HasPrefix(p, dir+" [") || strings.HasPrefix(p, dir+".test")
}

// isTest reports whether p is a test variant or a test binary.
func isTest(p string) bool {
	return strings.Contains(p, " [") || strings.HasSuffix(p, ".test") || strings.HasSuffix(p, "_test")
}

// violations lists every import that breaks the layout's rules.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		if below(p.path, "internal") {
			for _, d := range p.deps {
				if below(d, "controllers") || below(d, "webhook") {
					out = append(out, p.path+" depends on "+d+": internal/ holds domain packages, below controllers/ and webhook/")
				}
			}
		}
		// The root package (main.go) and hack/'s commands run the assembly;
		// tests may start it; nothing else may depend on it.
		if isTest(p.path) {
			continue
		}
		if below(p.path, "api") {
			for _, d := range p.deps {
				if strings.HasPrefix(d, module+"/") && !below(d, "api") {
					out = append(out, p.path+" depends on "+d+": api/ is the contract, it imports no other package of ours")
				}
			}
		}
		if below(p.path, "cmd") || below(p.path, "webhook/admission") {
			for _, d := range p.deps {
				if below(d, "controllers") || below(d, "webhook/keyserver") {
					out = append(out, p.path+" depends on "+d+": clients and admission use the contracts in api/, not the controllers or the key server")
				}
			}
		}
		if p.path == module || below(p.path, "hack") || below(p.path, "operator") {
			continue
		}
		if slices.Contains(p.imports, module+"/operator") {
			out = append(out, p.path+" imports "+module+"/operator: only main.go, hack/ and tests may use the composition root")
		}
	}
	return out
}

func TestViolations(t *testing.T) {
	for name, tc := range map[string]struct {
		pkg  pkg
		want bool
	}{
		"an internal package depending on a controller":   {pkg{path: module + "/internal/keyindex", deps: []string{module + "/controllers/apikey"}}, true},
		"an internal package depending on the key server": {pkg{path: module + "/internal/tokens", deps: []string{module + "/webhook/keyserver"}}, true},
		"an internal package's test depending on a webhook": {pkg{path: module + "/internal/testenv_test [" + module + "/internal/testenv.test]",
			deps: []string{module + "/webhook/admission"}}, true},
		"an internal package depending on the API types":    {pkg{path: module + "/internal/hashsecret", deps: []string{module + "/api/v1alpha1"}}, false},
		"an internal package depending on another":          {pkg{path: module + "/internal/keyindex", deps: []string{module + "/internal/hashsecret"}}, false},
		"a look-alike of internal/ depending on a webhook":  {pkg{path: module + "/internalx", deps: []string{module + "/webhook/keyserver"}}, false},
		"a controller importing the composition root":       {pkg{path: module + "/controllers", imports: []string{module + "/operator"}}, true},
		"the key server importing the composition root":     {pkg{path: module + "/webhook/keyserver", imports: []string{module + "/operator"}}, true},
		"the kubectl plugin importing the composition root": {pkg{path: module + "/cmd/kubectl-keyward", imports: []string{module + "/operator"}}, true},
		"main.go importing the composition root":            {pkg{path: module, imports: []string{module + "/operator"}}, false},
		"make dev importing the composition root":           {pkg{path: module + "/hack/dev", imports: []string{module + "/operator"}}, false},
		"the kubectl plugin depending on a controller":      {pkg{path: module + "/cmd/kubectl-keyward", deps: []string{module + "/controllers/apikey"}}, true},
		"the kubectl plugin depending on the key server":    {pkg{path: module + "/cmd/kubectl-keyward", deps: []string{module + "/webhook/keyserver"}}, true},
		"the kubectl plugin depending on the wire format":   {pkg{path: module + "/cmd/kubectl-keyward", deps: []string{module + "/api/wire"}}, false},
		"admission depending on a controller":               {pkg{path: module + "/webhook/admission", deps: []string{module + "/controllers/accesskeypair"}}, true},
		"the plugin's suite starting the operator":          {pkg{path: module + "/cmd/kubectl-keyward [" + module + "/cmd/kubectl-keyward.test]", deps: []string{module + "/controllers/apikey"}}, false},
		"the API types depending on an internal package":    {pkg{path: module + "/api/v1alpha1", deps: []string{module + "/internal/keymaterial"}}, true},
		"the wire format depending on the key server":       {pkg{path: module + "/api/wire", deps: []string{module + "/webhook/keyserver"}}, true},
		"a test importing the composition root": {pkg{path: module + "/webhook/keyserver_test [" + module + "/webhook/keyserver.test]",
			imports: []string{module + "/operator"}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := len(violations([]pkg{tc.pkg})) > 0; got != tc.want {
				t.Errorf("violation = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTheTreeKeepsItsLayout(t *testing.T) {
	cmd := exec.Command("go", "list", "-test", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}\t{{join .Deps \" \"}}", "./...")
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 3 {
			t.Fatalf("unexpected go list line %q", line)
		}
		pkgs = append(pkgs, pkg{path: f[0], imports: strings.Fields(f[1]), deps: strings.Fields(f[2])})
	}
	if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.path == module+"/internal/keyindex" }) ||
		!slices.ContainsFunc(pkgs, func(p pkg) bool { return p.path == module+"/operator" }) {
		t.Fatalf("go list did not list the tree (%d packages)", len(pkgs))
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

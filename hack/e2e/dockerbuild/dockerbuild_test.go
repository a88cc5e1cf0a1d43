package dockerbuild

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestTheDockerfilesGoBuildLineIsRead(t *testing.T) {
	df, err := os.ReadFile(filepath.Join("..", "..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(df, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	// What the image must be: static (no libc in distroless/static), no
	// local paths, stripped. If the Dockerfile changes these on purpose,
	// change them here: the e2e image follows the Dockerfile either way.
	want := map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64", "-trimpath": "true", "-ldflags": "-s -w"}
	if got := b.Settings(); !reflect.DeepEqual(got, want) {
		t.Errorf("settings %v, want %v", got, want)
	}
	if b.Package != "." {
		t.Errorf("package %q, want .", b.Package)
	}
}

func TestParse(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    Build
		wantErr string
	}{
		"quoted ldflags and build args": {
			in:   "RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -ldflags=\"-s -w\" -o keyward .",
			want: Build{Env: map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "arm64"}, Flags: []string{"-trimpath", "-ldflags=-s -w"}, Package: "."},
		},
		"continued lines": {
			in:   "RUN CGO_ENABLED=0 \\\n  go build -tags 'a b' \\\n  -o keyward ./cmd/x",
			want: Build{Env: map[string]string{"CGO_ENABLED": "0"}, Flags: []string{"-tags=a b"}, Package: "./cmd/x"},
		},
		"two builds":      {in: "RUN go build -o a .\nRUN go build -o b .", wantErr: "found 2"},
		"no build":        {in: "RUN go mod download", wantErr: "found 0"},
		"chained command": {in: "RUN go build -o a . && strip a", wantErr: "chains"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Parse([]byte(c.in), "arm64")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	want := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "-ldflags": "-s -w"}
	base := func() map[string]string {
		return map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "-ldflags": "-s -w", "-buildmode": "exe", "-compiler": "gc", "GOOS": "linux", "GOARCH": "amd64", "GOAMD64": "v1"}
	}
	cases := map[string]struct {
		edit  func(map[string]string)
		diffs []string
	}{
		"same":                  {edit: func(map[string]string) {}},
		"cgo on":                {edit: func(m map[string]string) { m["CGO_ENABLED"] = "1" }, diffs: []string{`CGO_ENABLED: the Dockerfile says "0", the binary has "1"`}},
		"no trimpath":           {edit: func(m map[string]string) { delete(m, "-trimpath") }, diffs: []string{`-trimpath: the Dockerfile says "true", the binary has ""`}},
		"other ldflags":         {edit: func(m map[string]string) { m["-ldflags"] = "-s" }, diffs: []string{`-ldflags: the Dockerfile says "-s -w", the binary has "-s"`}},
		"extra tags":            {edit: func(m map[string]string) { m["-tags"] = "e2e" }, diffs: []string{`-tags: the binary has "e2e", which the Dockerfile does not ask for`}},
		"race":                  {edit: func(m map[string]string) { m["-race"] = "true" }, diffs: []string{`-race: the binary has "true", which the Dockerfile does not ask for`}},
		"another build mode":    {edit: func(m map[string]string) { m["-buildmode"] = "pie" }, diffs: []string{`-buildmode: the binary has "pie", which the Dockerfile does not ask for`}},
		"GOOS/GOARCH not asked": {edit: func(m map[string]string) {}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := base()
			c.edit(got)
			if d := Compare(want, got); !reflect.DeepEqual(d, c.diffs) {
				t.Errorf("diffs %q, want %q", d, c.diffs)
			}
		})
	}
}

// A real binary built by Command carries the Dockerfile's settings, and
// one built without them is caught: the check the image tool runs on
// Keyward's binary, on a small program.
func TestCommandBuildsWithTheDockerfilesSettings(t *testing.T) {
	df, err := os.ReadFile(filepath.Join("..", "..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(df, HostArch())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "pause")
	cmd := b.Command("..", out, "./pause")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(raw); err != nil {
		t.Error(err)
	}
	plain := b
	plain.Flags = nil
	if err := plain.Command("..", out, "./pause").Run(); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(raw); err == nil || !strings.Contains(err.Error(), "-trimpath") || !strings.Contains(err.Error(), "-ldflags") {
		t.Errorf("a binary built without -trimpath passed the check: %v", err)
	}
}

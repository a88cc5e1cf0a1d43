// Command image builds the e2e images without Docker: Keyward's, from the
// static binary the Dockerfile's `go build` line makes (the flags are read
// from the Dockerfile, and the binary's build settings are checked against
// it), laid out as the Dockerfile's distroless stage ships it (/keyward,
// user 65532:65532); and the pause image. Each is written as an OCI archive
// that `ctr images import` loads.
//
//	image keyward -repo . -name keyward.local/keyward:e2e -o keyward.tar
//	image binary -bin pause -entrypoint /pause -user 65535:65535 -name … -o pause.tar
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/keyward/keyward/hack/e2e/dockerbuild"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	repo := fs.String("repo", ".", "the Keyward checkout (keyward)")
	bin := fs.String("bin", "", "the static binary to ship (binary)")
	entry := fs.String("entrypoint", "", "where the binary goes in the image (binary)")
	user := fs.String("user", "65532:65532", "uid:gid the image runs as")
	name := fs.String("name", "", "image reference, e.g. keyward.local/keyward:e2e")
	out := fs.String("o", "", "the OCI archive to write")
	keepBin := fs.String("keep-binary", "", "also copy the built binary here (keyward)")
	_ = fs.Parse(os.Args[2:])
	if *name == "" || *out == "" {
		usage()
	}
	switch os.Args[1] {
	case "keyward":
		df, err := os.ReadFile(filepath.Join(*repo, "Dockerfile"))
		check(err)
		b, err := dockerbuild.Parse(df, runtime.GOARCH)
		check(err)
		tmp, err := os.MkdirTemp("", "keyward-image-")
		check(err)
		defer func() { _ = os.RemoveAll(tmp) }()
		binPath := filepath.Join(tmp, "keyward")
		cmd := b.Command(*repo, binPath, "")
		fmt.Fprintf(os.Stderr, "image: %s (from the Dockerfile)\n", strings.Join(append(envList(b.Env), cmd.Args...), " "))
		check(cmd.Run())
		raw, err := os.ReadFile(binPath)
		check(err)
		check(b.Check(raw))
		if *keepBin != "" {
			check(os.WriteFile(*keepBin, raw, 0o755))
		}
		// The Dockerfile: WORKDIR /, COPY keyward ., USER 65532:65532, ENTRYPOINT ["/keyward"].
		check(write(*out, *name, "/keyward", raw, *user))
	case "binary":
		if *bin == "" || *entry == "" {
			usage()
		}
		raw, err := os.ReadFile(*bin)
		check(err)
		check(write(*out, *name, *entry, raw, *user))
	default:
		usage()
	}
}

func envList(env map[string]string) []string {
	var l []string
	for k, v := range env {
		l = append(l, k+"="+v)
	}
	return l
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: image keyward -repo DIR -name REF -o FILE.tar | image binary -bin FILE -entrypoint /PATH -user UID:GID -name REF -o FILE.tar")
	os.Exit(2)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// epoch is every file's time, so the same binary makes the same image.
var epoch = time.Unix(0, 0)

// rootfs is a one-layer filesystem like distroless/static's: the users, a
// sticky /tmp (unused: the pods' root filesystem is read-only) and the binary.
func rootfs(entry string, binary []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: epoch})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group := "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir("home/nonroot", 0o700, 65532) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return file(strings.TrimPrefix(entry, "/"), 0o755, binary) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

func describe(mediaType string, data []byte) descriptor {
	sum := sha256.Sum256(data)
	return descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: len(data)}
}

// write lays the image out as an OCI image layout in a tar archive.
func write(out, name, entry string, binary []byte, user string) error {
	layer, err := rootfs(entry, binary)
	if err != nil {
		return err
	}
	layerDesc := describe("application/vnd.oci.image.layer.v1.tar", layer)
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.UTC().Format(time.RFC3339),
		"config": map[string]any{
			"User":       user,
			"Entrypoint": []string{entry},
			"WorkingDir": "/",
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	if err != nil {
		return err
	}
	configDesc := describe("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc := describe("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Platform = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	tag := name[strings.LastIndex(name, ":")+1:]
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": tag,
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})
	if err != nil {
		return err
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	blob := func(d descriptor) string { return "blobs/sha256/" + strings.TrimPrefix(d.Digest, "sha256:") }
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blob(configDesc), config},
		{blob(layerDesc), layer},
		{blob(manifestDesc), manifest},
	} {
		if err := add(e.name, e.data); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

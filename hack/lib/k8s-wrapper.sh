# Sourced by hack/envtest-assets.sh and hack/e2e/node-assets.sh: building
# Kubernetes binaries from the Go module proxy, through a wrapper module over
# k8s.io/kubernetes, into a cache directory.
#
# The sourcing script sets K8S_VERSION, DEST (the cache directory), BINS (the
# binaries the cache must hold) and log(); it calls complete, then
# k8s_prepare, k8s_wrapper_module and k8s_build.

# complete DIR: whether DIR holds every one of BINS, executable.
complete() {
  local dir="$1" b
  for b in "${BINS[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

fail() {
  log "FAILED: $*"
  log "the build log is kept at $DEST/build.log"
  exit 1
}

# k8s_prepare: a scratch directory $work (removed on exit), DEST created
# with an empty build.log, and a pure-Go build outside any workspace.
k8s_prepare() {
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$DEST"
  export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
  : > "$DEST/build.log"
}

# k8s_wrapper_module DIR NAME STEP CMD...: writes in DIR a module NAME that
# requires k8s.io/kubernetes v${K8S_VERSION}, points each of its ./staging
# replaces at the published k8s.io/<name> v0.<minor>.<patch>, and imports
# k8s.io/kubernetes/cmd/CMD for each CMD; then resolves it (go mod tidy).
# STEP prefixes the progress lines, e.g. "[1/3]".
k8s_wrapper_module() {
  local mod="$1" name="$2" step="$3" staging_version="v0.${K8S_VERSION#*.}" gomod c
  shift 3
  mkdir -p "$mod"
  log "$step resolving k8s.io/kubernetes v${K8S_VERSION} from the module proxy"
  gomod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$gomod" ]] || fail "could not download k8s.io/kubernetes@v${K8S_VERSION}"
  {
    echo "module $name"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
    echo ")"
  } > "$mod/go.mod"
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    echo 'import ('
    for c in "$@"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ')'
  } > "$mod/tools.go"
  log "$step resolving dependencies (go mod tidy)"
  (cd "$mod" && go mod tidy -e >>"$DEST/build.log" 2>&1) || fail "go mod tidy for kubernetes"
}

# k8s_build DIR OUT CMD...: builds k8s.io/kubernetes/cmd/CMD for each CMD
# of the wrapper module in DIR into directory OUT, stamped with
# K8S_VERSION as the version they report.
k8s_build() {
  local mod="$1" out="$2" c pkgs=()
  shift 2
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$mod" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}" \
      -o "$out/" "${pkgs[@]}" >>"$DEST/build.log" 2>&1) || fail "go build $*"
}

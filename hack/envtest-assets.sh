#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, kubectl, etcd) from the Go
# module proxy and caches it in the setup-envtest layout, because the upstream
# prebuilt archives cannot be downloaded on our machines.
#
# Prints the asset directory on stdout (progress goes to stderr), so callers
# can do: KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)".
#
# Honours KUBEBUILDER_ASSETS: if it already names a directory holding all
# three binaries, nothing is built.
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ENVTEST_ETCD_VERSION:-v3.7.0}"   # the etcd that Kubernetes ${K8S_VERSION} pins
GOOS="$(go env GOOS)"
GOARCH="$(go env GOARCH)"
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
DEST="${ENVTEST_ASSETS_DIR:-$DATA_HOME/kubebuilder-envtest/k8s/${K8S_VERSION}-${GOOS}-${GOARCH}}"
BINS=(kube-apiserver etcd kubectl)

log() { echo "envtest-assets: $*" >&2; }

complete() {
  local dir="$1" b
  for b in "${BINS[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && complete "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
if complete "$DEST"; then
  echo "$DEST"; exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$DEST"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

fail() {
  log "FAILED: $*"
  log "the build log is kept at $DEST/build.log"
  exit 1
}

# Wrapper module for Kubernetes: require k8s.io/kubernetes and point each of
# its ./staging replaces at the published k8s.io/<name> v0.<minor>.<patch>.
build_kubernetes() {
  local mod="$work/k8s" staging_version="v0.${K8S_VERSION#*.}"
  mkdir -p "$mod"
  log "[1/3] resolving k8s.io/kubernetes v${K8S_VERSION} from the module proxy"
  local gomod
  gomod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$gomod" ]] || fail "could not download k8s.io/kubernetes@v${K8S_VERSION}"
  {
    echo "module envtestbuild"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
    echo ")"
  } > "$mod/go.mod"
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "[1/3] resolving dependencies (go mod tidy)"
  (cd "$mod" && go mod tidy -e >>"$DEST/build.log" 2>&1) || fail "go mod tidy for kubernetes"
  log "[2/3] building kube-apiserver and kubectl (a cold build takes ~10 minutes on 2 cores)"
  (cd "$mod" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}" \
      -o "$work/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >>"$DEST/build.log" 2>&1) \
    || fail "go build kube-apiserver/kubectl"
}

build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  log "[3/3] building etcd ${ETCD_VERSION} (main package of go.etcd.io/etcd/server/v3)"
  cat > "$mod/go.mod" <<GOMOD
module etcdbuild

go 1.26

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
GOMOD
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$mod" && go mod tidy -e >>"$DEST/build.log" 2>&1) || fail "go mod tidy for etcd"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3 >>"$DEST/build.log" 2>&1) \
    || fail "go build etcd"
}

: > "$DEST/build.log"
start=$SECONDS
build_kubernetes
build_etcd
for b in "${BINS[@]}"; do
  install -m 0755 "$work/bin/$b" "$DEST/$b"
done
log "done in $((SECONDS - start))s: $DEST"
echo "$DEST"

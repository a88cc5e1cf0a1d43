#!/usr/bin/env bash
# Builds the node components of a single-node cluster (kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy) from the Go module
# proxy, the way hack/envtest-assets.sh builds kube-apiserver (the same
# wrapper module over k8s.io/kubernetes), and caches them. etcd,
# kube-apiserver and kubectl are the envtest assets themselves.
#
# Prints the node asset directory on stdout (progress on stderr).
# Honours KEYWARD_E2E_NODE_ASSETS: a directory already holding the four.
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
GOOS="$(go env GOOS)"
GOARCH="$(go env GOARCH)"
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
DEST="${KEYWARD_E2E_NODE_ASSETS:-$DATA_HOME/kubebuilder-envtest/k8s/${K8S_VERSION}-${GOOS}-${GOARCH}-node}"
BINS=(kubelet kube-controller-manager kube-scheduler kube-proxy)

log() { echo "node-assets: $*" >&2; }

complete() {
  local dir="$1" b
  for b in "${BINS[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

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

: > "$DEST/build.log"
start=$SECONDS
mod="$work/k8s"
staging_version="v0.${K8S_VERSION#*.}"
mkdir -p "$mod"
log "[1/2] resolving k8s.io/kubernetes v${K8S_VERSION} from the module proxy"
gomod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[[ -f "$gomod" ]] || fail "could not download k8s.io/kubernetes@v${K8S_VERSION}"
{
  echo "module nodebuild"
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
  for b in "${BINS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
  echo ')'
} > "$mod/tools.go"
(cd "$mod" && go mod tidy -e >>"$DEST/build.log" 2>&1) || fail "go mod tidy"
log "[2/2] building ${BINS[*]} (~4 min with warm caches, much longer cold, on 2 cores)"
pkgs=()
for b in "${BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
(cd "$mod" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}" \
    -o "$work/bin/" "${pkgs[@]}" >>"$DEST/build.log" 2>&1) || fail "go build ${BINS[*]}"
for b in "${BINS[@]}"; do
  install -m 0755 "$work/bin/$b" "$DEST/$b"
done
log "done in $((SECONDS - start))s: $DEST"
echo "$DEST"

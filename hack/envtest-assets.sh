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

# shellcheck source=lib/k8s-wrapper.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s-wrapper.sh"

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && complete "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
if complete "$DEST"; then
  echo "$DEST"; exit 0
fi

k8s_prepare

build_kubernetes() {
  k8s_wrapper_module "$work/k8s" envtestbuild "[1/3]" kube-apiserver kubectl
  log "[2/3] building kube-apiserver and kubectl (a cold build takes ~10 minutes on 2 cores)"
  k8s_build "$work/k8s" "$work/bin" kube-apiserver kubectl
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

start=$SECONDS
build_kubernetes
build_etcd
for b in "${BINS[@]}"; do
  install -m 0755 "$work/bin/$b" "$DEST/$b"
done
log "done in $((SECONDS - start))s: $DEST"
echo "$DEST"

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

# shellcheck source=../lib/k8s-wrapper.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/k8s-wrapper.sh"

if complete "$DEST"; then
  echo "$DEST"; exit 0
fi

k8s_prepare
start=$SECONDS
k8s_wrapper_module "$work/k8s" nodebuild "[1/2]" "${BINS[@]}"
log "[2/2] building ${BINS[*]} (~4 min with warm caches, much longer cold, on 2 cores)"
k8s_build "$work/k8s" "$work/bin" "${BINS[@]}"
for b in "${BINS[@]}"; do
  install -m 0755 "$work/bin/$b" "$DEST/$b"
done
log "done in $((SECONDS - start))s: $DEST"
echo "$DEST"

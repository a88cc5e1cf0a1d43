#!/usr/bin/env bash
# make test-e2e: build the node binaries (cached), Keyward's image (from the
# Dockerfile's go build line, without Docker) and the pause image, bring a
# single-node cluster up on this host (hack/e2e/cluster.sh), run the ginkgo
# suite in test/e2e against it, and tear everything down — also when the
# suite fails or is interrupted. Needs root and Debian's containerd runc
# containernetworking-plugins iptables conntrack (.ci/install-e2e.sh).
#
# E2E_FLAGS go to `go test` (e.g. -ginkgo.focus=Helm).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/bin/e2e"
IMAGE=keyward.local/keyward:e2e
phase_start=$SECONDS
timings=()
phase() { timings+=("$(printf '%-28s %4ss' "$1" $((SECONDS - phase_start)))"); phase_start=$SECONDS; }
report() {
  echo "test-e2e timings:" >&2
  printf '  %s\n' "${timings[@]}" >&2
}

hack/e2e/cluster.sh preflight

mkdir -p "$OUT"
ASSETS="$(hack/envtest-assets.sh)"
NODE_ASSETS="$(hack/e2e/node-assets.sh)"
HELM="$(hack/helm.sh)"
phase "control-plane binaries"

# The Keyward image from the Dockerfile's own go build line (the tool
# refuses a binary whose build settings differ), the pause image, the plugin.
go run ./hack/e2e/image keyward -repo . -name "$IMAGE" -o "$OUT/keyward.tar" -keep-binary "$OUT/keyward"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/pause" ./hack/e2e/pause
go run ./hack/e2e/image binary -bin "$OUT/pause" -entrypoint /pause -user 65535:65535 -name keyward.local/pause:e2e -o "$OUT/pause.tar"
# The image build's settings, so that the two share the build cache.
CGO_ENABLED=0 go build -trimpath -o "$OUT/kubectl-keyward" ./cmd/kubectl-keyward
make --no-print-directory build-installer KUBECTL="$ASSETS/kubectl" >/dev/null
phase "images, plugin, installer"

rc=0
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  hack/e2e/cluster.sh down || code=1
  phase "teardown"
  report
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hack/e2e/cluster.sh up "$OUT/pause.tar" "$OUT/keyward.tar"
phase "node up (to Ready)"

KEYWARD_E2E_DIR="${KEYWARD_E2E_DIR:-/var/tmp/keyward-e2e}" \
KEYWARD_E2E_KUBECTL="$ASSETS/kubectl" \
KEYWARD_E2E_HELM="$HELM" \
KEYWARD_E2E_IMAGE="$IMAGE" \
KEYWARD_E2E_IMAGE_TAR="$OUT/keyward.tar" \
KEYWARD_E2E_PLUGIN="$OUT/kubectl-keyward" \
KEYWARD_E2E_CLUSTER="$ROOT/hack/e2e/cluster.sh" \
  go test -tags e2e -count=1 -timeout 60m ./test/e2e -v ${E2E_FLAGS:-} || rc=$?
phase "suite"
exit "$rc"

#!/usr/bin/env bash
# Builds helm from the Go module proxy (hack/tools/helm pins it, in a module
# of its own so its dependencies never touch Keyward's go.mod) and caches the
# binary. Prints its path. Honours HELM when it names a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${HELM:-}" && -x "${HELM}" ]]; then echo "$HELM"; exit 0; fi
version="$(sed -n 's#^\s*helm.sh/helm/v4 \(v[^ ]*\).*#\1#p' hack/tools/helm/go.mod | head -1)"
dest="${XDG_CACHE_HOME:-$HOME/.cache}/keyward-tools/helm-${version}"
if [[ -x "$dest/helm" ]]; then echo "$dest/helm"; exit 0; fi
mkdir -p "$dest"
echo "helm.sh: building helm ${version} from the module proxy (once; a few minutes)" >&2
(cd hack/tools/helm && GOWORK=off CGO_ENABLED=0 go build -trimpath -o "$dest/helm" helm.sh/helm/v4/cmd/helm) >&2
echo "$dest/helm"

#!/usr/bin/env bash
# Builds gitleaks from the Go module proxy (hack/tools/gitleaks pins it, in
# a module of its own so its dependencies never touch Keyward's go.mod) and
# caches the binary. Prints its path. Honours GITLEAKS when it names a
# binary. test/secretscan runs the rule docs/secret-scanning.md publishes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${GITLEAKS:-}" && -x "${GITLEAKS}" ]]; then echo "$GITLEAKS"; exit 0; fi
version="$(sed -n 's#^require github.com/zricethezav/gitleaks/v8 \(v[^ ]*\).*#\1#p' hack/tools/gitleaks/go.mod | head -1)"
dest="${XDG_CACHE_HOME:-$HOME/.cache}/keyward-tools/gitleaks-${version}"
if [[ -x "$dest/gitleaks" ]]; then echo "$dest/gitleaks"; exit 0; fi
mkdir -p "$dest"
echo "gitleaks.sh: building gitleaks ${version} from the module proxy (once; a minute or two)" >&2
(cd hack/tools/gitleaks && GOWORK=off GOFLAGS= CGO_ENABLED=0 go build -trimpath \
  -ldflags "-X github.com/zricethezav/gitleaks/v8/version.Version=${version}" \
  -o "$dest/gitleaks" github.com/zricethezav/gitleaks/v8) >&2
echo "$dest/gitleaks"

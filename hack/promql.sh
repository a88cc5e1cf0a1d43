#!/usr/bin/env bash
# Builds hack/tools/promql (Prometheus's PromQL parser, pinned in a module of
# its own so that its dependencies never touch Keyward's go.mod) and caches
# the binary. Prints its path. test/monitoring runs it on every alert rule
# and dashboard query.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(sed -n 's#^require github.com/prometheus/prometheus \(v[^ ]*\).*#\1#p' hack/tools/promql/go.mod | head -1)"
sum="$(sha256sum hack/tools/promql/main.go | cut -c1-12)"
dest="${XDG_CACHE_HOME:-$HOME/.cache}/keyward-tools/promql-${version}-${sum}"
if [[ -x "$dest/promql" ]]; then echo "$dest/promql"; exit 0; fi
mkdir -p "$dest"
echo "promql.sh: building the PromQL parser ${version} from the module proxy (once)" >&2
(cd hack/tools/promql && GOWORK=off GOFLAGS= CGO_ENABLED=0 go build -trimpath -o "$dest/promql" .) >&2
echo "$dest/promql"

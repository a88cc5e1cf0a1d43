#!/usr/bin/env bash
# Builds Traefik from the Go module proxy (hack/tools/traefik pins it, in a
# module of its own so its dependencies never touch Keyward's go.mod) and
# caches the binary, for `make test-gateways` (test/traefik). Prints its path.
# Honours TRAEFIK_BIN when it names a binary.
#
# A cold build takes about 10 minutes on 2 cores (measured: 607 s with an
# empty build cache, plus ~20 s of module downloads), which is why `make test`
# never calls this script. v3.6.x builds from the proxy; v3.7.x does not (the
# proxy refuses some of its modules).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${TRAEFIK_BIN:-}" && -x "${TRAEFIK_BIN}" ]]; then echo "$TRAEFIK_BIN"; exit 0; fi
version="$(sed -n 's#^\s*require github.com/traefik/traefik/v3 \(v[^ ]*\).*#\1#p; s#^\s*github.com/traefik/traefik/v3 \(v[^ ]*\).*#\1#p' hack/tools/traefik/go.mod | head -1)"
[[ -n "$version" ]] || { echo "traefik.sh: no Traefik version in hack/tools/traefik/go.mod" >&2; exit 1; }
dest="${XDG_CACHE_HOME:-$HOME/.cache}/keyward-tools/traefik-${version}"
if [[ -x "$dest/traefik" ]]; then echo "$dest/traefik"; exit 0; fi
mkdir -p "$dest"
echo "traefik.sh: building Traefik ${version} from the module proxy (once; about 10 minutes on 2 cores)" >&2
start=$SECONDS
# Built to a temporary name and renamed, so an interrupted build leaves no
# binary that the next run would take for a finished one.
(cd hack/tools/traefik && GOWORK=off CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${version}" \
    -o "$dest/traefik.tmp" github.com/traefik/traefik/v3/cmd/traefik) >&2
mv "$dest/traefik.tmp" "$dest/traefik"
echo "traefik.sh: built in $((SECONDS - start))s" >&2
echo "$dest/traefik"

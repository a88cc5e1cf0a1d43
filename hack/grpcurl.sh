#!/usr/bin/env bash
# Builds grpcurl from the Go module proxy (hack/tools/grpcurl pins it, in a
# module of its own so its dependencies never touch Keyward's go.mod) and
# caches the binary, for test/extauthz. Prints its path. Honours GRPCURL
# when it names a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${GRPCURL:-}" && -x "${GRPCURL}" ]]; then echo "$GRPCURL"; exit 0; fi
version="$(sed -n 's#^require github.com/fullstorydev/grpcurl \(v[^ ]*\).*#\1#p; s#^\s*github.com/fullstorydev/grpcurl \(v[^ ]*\).*#\1#p' hack/tools/grpcurl/go.mod | head -1)"
[[ -n "$version" ]] || { echo "grpcurl.sh: no grpcurl version in hack/tools/grpcurl/go.mod" >&2; exit 1; }
dest="${XDG_CACHE_HOME:-$HOME/.cache}/keyward-tools/grpcurl-${version}"
if [[ -x "$dest/grpcurl" ]]; then echo "$dest/grpcurl"; exit 0; fi
mkdir -p "$dest"
echo "grpcurl.sh: building grpcurl ${version} from the module proxy (once; one to two minutes)" >&2
start=$SECONDS
# Built to a temporary name and renamed: an interrupted build leaves no
# binary the next run would take for a finished one.
(cd hack/tools/grpcurl && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${version}" \
    -o "$dest/grpcurl.tmp" github.com/fullstorydev/grpcurl/cmd/grpcurl) >&2
mv "$dest/grpcurl.tmp" "$dest/grpcurl"
echo "grpcurl.sh: built in $((SECONDS - start))s" >&2
echo "$dest/grpcurl"

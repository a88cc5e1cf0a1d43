#!/usr/bin/env bash
# Installs Caddy for the real-Caddy integration test (test/caddy), which runs
# the forward_auth configuration of docs/gateways.md. Idempotent: does
# nothing when caddy is already on PATH. Debian/Ubuntu (apt-get), as root or
# with sudo.
set -euo pipefail

if command -v caddy >/dev/null 2>&1; then
  exit 0
fi

who=install-caddy
source "$(dirname "$0")/apt.sh"
apt_install caddy

# On a host with systemd the package also starts a system Caddy on :80; the
# test runs a Caddy of its own and does not need it.
if ! command -v caddy >/dev/null 2>&1; then
  echo "install-caddy: installed caddy but found no caddy binary on PATH" >&2
  exit 1
fi
caddy version

#!/usr/bin/env bash
# Installs redis-server for the rate-limit store tests (internal/ratelimit,
# the key server's --rate-limit-store=redis://): they start a redis-server of
# their own on a free port, without persistence. Idempotent: does nothing
# when redis-server is already on PATH. Debian/Ubuntu (apt-get), as root or
# with sudo.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi

who=install-redis
source "$(dirname "$0")/apt.sh"
apt_install redis-server

# On a host with systemd the package also starts a system Redis on :6379;
# the tests never use it.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "install-redis: installed redis-server but found no redis-server binary on PATH" >&2
  exit 1
fi
redis-server --version

#!/usr/bin/env bash
# Installs redis-server for the tests of the Redis rate-limit store
# (internal/ratelimit), which start a real Redis of their own
# (internal/testenv/redis.go). Idempotent: does nothing when redis-server is
# already installed. Debian/Ubuntu (apt-get), as root or with sudo.
set -euo pipefail

find_redis() {
  command -v redis-server 2>/dev/null || { [[ -x /usr/bin/redis-server ]] && echo /usr/bin/redis-server; }
}

if find_redis >/dev/null; then
  exit 0
fi

who=install-redis
source "$(dirname "$0")/apt.sh"
# On a host with systemd the package also starts a system Redis on :6379;
# the tests run Redis servers of their own on free ports and do not use it.
apt_install redis-server

if ! find_redis >/dev/null; then
  echo "install-redis: installed redis-server but found no redis-server binary" >&2
  exit 1
fi
"$(find_redis)" --version

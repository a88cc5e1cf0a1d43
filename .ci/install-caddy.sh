#!/usr/bin/env bash
# Installs Caddy for the real-Caddy integration test (test/caddy), which runs
# the forward_auth configuration of docs/gateways.md. Idempotent: does
# nothing when caddy is already on PATH. Debian/Ubuntu (apt-get), as root or
# with sudo.
set -euo pipefail

if command -v caddy >/dev/null 2>&1; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-caddy: caddy is missing and apt-get is not available; install Caddy 2.6 or later yourself" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-caddy: run as root (or install sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if ! "${sudo[@]}" apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-caddy: apt-get update failed" >&2
  exit 1
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends caddy >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-caddy: apt-get install caddy failed" >&2
  exit 1
fi

# On a host with systemd the package also starts a system Caddy on :80; the
# test runs a Caddy of its own and does not need it.
if ! command -v caddy >/dev/null 2>&1; then
  echo "install-caddy: installed caddy but found no caddy binary on PATH" >&2
  exit 1
fi
caddy version

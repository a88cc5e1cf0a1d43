#!/usr/bin/env bash
# Installs nginx for the real-nginx integration test (test/nginx), which
# runs the auth_request configuration of docs/gateways.md, and the
# headers-more module that configuration needs (more_clear_input_headers).
# Idempotent: does nothing when both are installed. Debian/Ubuntu
# (apt-get), as root or with sudo.
set -euo pipefail

# nginx on PATH, or in /usr/sbin, which is not on every user's PATH (the
# test looks there too).
find_nginx() {
  command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

# The headers-more module where Debian's package puts it (nginx's
# --modules-path); test/nginx loads it from there.
headers_more=/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so

if find_nginx >/dev/null && [[ -f $headers_more ]]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-nginx: nginx or its headers-more module is missing and apt-get is not available; install nginx (with the auth_request module) and headers-more yourself" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-nginx: run as root (or install sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if ! "${sudo[@]}" apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-nginx: apt-get update failed" >&2
  exit 1
fi

if ! find_nginx >/dev/null; then
  # nginx-light was Debian's smallest build with the auth_request module (on
  # Debian 12 it is a transitional package for nginx, which has the module);
  # where it no longer exists, install nginx itself.
  pkg=
  for candidate in nginx-light nginx; do
    if "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$candidate" >"$log" 2>&1; then
      pkg=$candidate
      break
    fi
  done
  if [[ -z $pkg ]]; then
    cat "$log" >&2
    echo "install-nginx: apt-get install nginx-light (or nginx) failed" >&2
    exit 1
  fi
fi

# On a host with systemd the package also starts a system nginx on :80; the
# test runs an nginx of its own and does not need it.
if ! bin=$(find_nginx); then
  echo "install-nginx: installed nginx but found no nginx binary" >&2
  exit 1
fi

# The module's package must match the installed nginx's ABI; apt picks the
# one built for Debian's nginx.
if [[ ! -f $headers_more ]]; then
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends libnginx-mod-http-headers-more-filter >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-nginx: apt-get install libnginx-mod-http-headers-more-filter failed" >&2
    exit 1
  fi
fi
if [[ ! -f $headers_more ]]; then
  echo "install-nginx: installed libnginx-mod-http-headers-more-filter but found no $headers_more" >&2
  exit 1
fi
"$bin" -v

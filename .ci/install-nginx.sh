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

who=install-nginx
source "$(dirname "$0")/apt.sh"

if ! find_nginx >/dev/null; then
  # nginx-light was Debian's smallest build with the auth_request module (on
  # Debian 12 it is a transitional package for nginx, which has the module);
  # where it no longer exists, install nginx itself.
  pkg=
  for candidate in nginx-light nginx; do
    if apt_try "$candidate"; then
      pkg=$candidate
      break
    fi
  done
  if [[ -z $pkg ]]; then
    cat "$apt_log" >&2
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
  apt_install libnginx-mod-http-headers-more-filter
fi
if [[ ! -f $headers_more ]]; then
  echo "install-nginx: installed libnginx-mod-http-headers-more-filter but found no $headers_more" >&2
  exit 1
fi
"$bin" -v

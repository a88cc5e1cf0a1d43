# Sourced by the .ci/install-*.sh scripts: apt_install NAME… installs
# Debian packages, as root or with sudo, quietly unless it fails. $who names
# the caller in messages.
apt_sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    apt_sudo=(sudo)
  else
    echo "$who: run as root (or install sudo)" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$who: apt-get is not available; install the packages yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=

# apt_try NAME…: install, returning non-zero (output kept in $apt_log) on failure.
apt_try() {
  apt_log=$(mktemp)
  if [[ -z $apt_updated ]]; then
    "${apt_sudo[@]}" apt-get update -qq >"$apt_log" 2>&1 || return 1
    apt_updated=1
  fi
  "${apt_sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >"$apt_log" 2>&1
}

# apt_install NAME…: install or fail loudly.
apt_install() {
  if ! apt_try "$@"; then
    cat "$apt_log" >&2
    echo "$who: apt-get install $* failed" >&2
    exit 1
  fi
}

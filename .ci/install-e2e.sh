#!/usr/bin/env bash
# Installs what `make test-e2e` needs besides Go: Debian's containerd, runc,
# CNI plugins (/usr/lib/cni), iptables and conntrack. Idempotent. The e2e
# cluster runs its own containerd (own socket and directories); the
# package's service, where systemd starts it, is not used.
set -euo pipefail

need=()
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
if ((${#need[@]} == 0)); then
  exit 0
fi
who=install-e2e
source "$(dirname "$0")/apt.sh"
apt_install "${need[@]}"

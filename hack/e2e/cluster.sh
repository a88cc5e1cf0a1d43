#!/usr/bin/env bash
# A single-node Kubernetes cluster on this host, for the e2e suite: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy (iptables mode) as host processes, containerd (Debian's, with
# its own socket, root and state) as the runtime, a bridge + host-local +
# portmap CNI. Everything it creates lives under $KEYWARD_E2E_DIR, except
# what the kernel holds: iptables chains (KUBE-*, CNI-*), the bridge, the
# kubepods cgroups and a few sysctls (saved, and restored by `down`).
#
#   cluster.sh preflight          refuse unless root with the Debian packages
#   cluster.sh up IMAGE.tar…      start it, import the images, wait for the node
#   cluster.sh down               stop and remove everything, then check
#   cluster.sh restart-apiserver [FLAG…]
#                                 restart kube-apiserver with extra flags (the
#                                 TokenReview webhook is configured this way)
#
# Needs: root; containerd runc containernetworking-plugins iptables conntrack
# (.ci/install-e2e.sh); the envtest assets and hack/e2e/node-assets.sh's.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
E2E_DIR="${KEYWARD_E2E_DIR:-/var/tmp/keyward-e2e}"
LOG_DIR="${KEYWARD_E2E_LOGS:-$ROOT/bin/e2e/logs}"
NODE_NAME=e2e-node   # not keyward-*: the suite checks no keyward-* object is left
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/12
KUBERNETES_SERVICE_IP=10.96.0.1
BRIDGE=kwe2e0
PAUSE_IMAGE=keyward.local/pause:e2e
# Fixed ports away from the defaults (other tests on the machine take
# random free ports in the ephemeral range, 32768 and up).
APISERVER_PORT="${KEYWARD_E2E_APISERVER_PORT:-16443}"
ETCD_PORT=12379
ETCD_PEER_PORT=12380
KUBELET_PORT=20250
KUBELET_HEALTHZ_PORT=20248
KCM_PORT=20257
SCHEDULER_PORT=20259
PROXY_METRICS_PORT=20249
PROXY_HEALTHZ_PORT=20256
# Sysctls the node changes (kubelet sets the kernel/vm ones at start; the
# cluster needs forwarding and bridged traffic through iptables).
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Host paths the components use whatever their flags say; removed by down
# only when up found them absent.
HOST_PATHS=(/var/log/containers /run/containerd /var/lib/cni /var/run/netns /opt/containerd /var/run/kubernetes)

PKI="$E2E_DIR/pki"
PIDS="$E2E_DIR/pids"
SOCK="$E2E_DIR/containerd/containerd.sock"

log() { echo "e2e-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# package:probe — a command name or an absolute path.
REQUIRED=(containerd:containerd containerd:ctr runc:runc containernetworking-plugins:/usr/lib/cni/bridge
  containernetworking-plugins:/usr/lib/cni/host-local containernetworking-plugins:/usr/lib/cni/portmap
  containernetworking-plugins:/usr/lib/cni/loopback iptables:iptables iptables:ip6tables conntrack:conntrack
  iproute2:ip util-linux:unshare)

preflight() {
  if [[ $(id -u) -ne 0 ]]; then
    die "refusing: the e2e cluster runs kubelet, containerd and kube-proxy, which need root (it changes iptables, adds a bridge and cgroups); run as root"
  fi
  local missing=() entry pkg probe
  for entry in "${REQUIRED[@]}"; do
    pkg="${entry%%:*}" probe="${entry#*:}"
    if [[ $probe == /* ]]; then [[ -x $probe ]] && continue; else command -v "$probe" >/dev/null 2>&1 && continue; fi
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    die "refusing: missing Debian package(s): ${missing[*]} — install them with: apt-get install -y ${missing[*]} (or .ci/install-e2e.sh)"
  fi
  [[ -d /proc/sys/net/bridge ]] || die "refusing: bridged traffic cannot go through iptables (no /proc/sys/net/bridge): modprobe br_netfilter"
  grep -qw overlay /proc/filesystems || die "refusing: the kernel has no overlay filesystem (containerd's overlayfs snapshotter): modprobe overlay"
  local p
  for p in "$APISERVER_PORT" $ETCD_PORT $ETCD_PEER_PORT $KUBELET_PORT $KUBELET_HEALTHZ_PORT $KCM_PORT $SCHEDULER_PORT $PROXY_METRICS_PORT $PROXY_HEALTHZ_PORT; do
    if [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
      die "refusing: port $p is in use (is another e2e cluster up? hack/e2e/cluster.sh down)"
    fi
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "refusing: the bridge $BRIDGE exists (a previous run not torn down? hack/e2e/cluster.sh down)"
  fi
}

node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1
}

kubeconfig() { # name user-cert-basename
  cat > "$E2E_DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$PKI/ca.crt"}
users:
  - name: $2
    user: {client-certificate: "$PKI/$2.crt", client-key: "$PKI/$2.key"}
contexts:
  - name: e2e
    context: {cluster: e2e, user: $2}
current-context: e2e
EOF
}

start() { # name binary args…
  local name="$1"; shift
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

wait_for() { # what seconds command…
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "$what not ready after ${secs}s; last lines of the logs:"
      tail -n 20 "$LOG_DIR"/*.log >&2 || true
      return 1
    fi
    sleep 1
  done
}

kubectl_admin() { "$ASSETS/kubectl" --kubeconfig "$E2E_DIR/admin.kubeconfig" "$@"; }

snapshot() { # dir: what the host looks like, compared after down
  local d="$1" t
  mkdir -p "$d"
  for t in filter nat mangle raw; do
    { iptables -t "$t" -S 2>/dev/null; ip6tables -t "$t" -S 2>/dev/null; } | grep -E '^-N (KUBE-|CNI-)' || true
  done | sort > "$d/chains"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^($BRIDGE|veth)" | sort > "$d/links" || true
  { find /sys/fs/cgroup -maxdepth 2 -name kubepods -type d 2>/dev/null || true; } | sort > "$d/cgroups"
  awk -v dir="$E2E_DIR" 'index($5, dir) == 1 {print $5}' /proc/self/mountinfo | sort > "$d/mounts"
  nft list tables 2>/dev/null | grep -i kube | sort > "$d/nft" || true
  { ls /run/containerd/s 2>/dev/null || true; } | sort > "$d/shim-sockets"
}

up() {
  preflight
  ASSETS="$("$ROOT/hack/envtest-assets.sh")"
  NODE_ASSETS="$("$ROOT/hack/e2e/node-assets.sh")"
  local ip; ip="$(node_ip)"
  [[ -n $ip ]] || die "cannot tell this host's address (no default route)"
  mkdir -p "$E2E_DIR" "$PIDS" "$LOG_DIR" "$E2E_DIR/before"
  : > "$E2E_DIR/created"
  for p in "${HOST_PATHS[@]}"; do [[ -e $p ]] || echo "$p" >> "$E2E_DIR/created"; done
  {
    echo "ASSETS=$ASSETS"
    echo "NODE_ASSETS=$NODE_ASSETS"
    echo "NODE_IP=$ip"
  } > "$E2E_DIR/env"
  snapshot "$E2E_DIR/before"
  # Saved once: a second `up` after a failed one must not save the changed values.
  if [[ ! -s $E2E_DIR/sysctl.saved ]]; then
    for s in "${SYSCTLS[@]}"; do
      v="$(sysctl -n "$s" 2>/dev/null)" && printf '%s=%s\n' "$s" "$v"
    done > "$E2E_DIR/sysctl.saved"
  fi
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1

  local t0=$SECONDS
  log "certificates (hack/e2e/pki)"
  (cd "$ROOT" && go run ./hack/e2e/pki -dir "$PKI" -node-name "$NODE_NAME" -node-ip "$ip" -service-ip "$KUBERNETES_SERVICE_IP")
  for c in admin controller-manager scheduler kube-proxy kubelet-client; do kubeconfig "$c" "$c"; done

  log "etcd"
  start etcd "$ASSETS/etcd" --name e2e --data-dir "$E2E_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync
  start_apiserver
  wait_for "kube-apiserver" 120 kubectl_admin get --raw /readyz

  log "kube-controller-manager, kube-scheduler"
  start kube-controller-manager "$NODE_ASSETS/kube-controller-manager" \
    --kubeconfig "$E2E_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$E2E_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$E2E_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$E2E_DIR/kcm-certs" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials --leader-elect=false \
    --cluster-cidr "$CLUSTER_CIDR" --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false
  start kube-scheduler "$NODE_ASSETS/kube-scheduler" \
    --kubeconfig "$E2E_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$E2E_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$E2E_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --cert-dir "$E2E_DIR/scheduler-certs" --leader-elect=false

  log "containerd"
  mkdir -p "$E2E_DIR/containerd" "$E2E_DIR/cni/net.d" "$E2E_DIR/cni/ipam"
  cat > "$E2E_DIR/containerd/config.toml" <<EOF
version = 2
root = "$E2E_DIR/containerd/root"
state = "$E2E_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$E2E_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Setting a negative oom_score_adj is refused here (no CAP_SYS_RESOURCE):
  # without this every sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$E2E_DIR/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$E2E_DIR/cni/net.d"
EOF
  cat > "$E2E_DIR/cni/net.d/10-keyward-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "keyward-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$E2E_DIR/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start containerd containerd --config "$E2E_DIR/containerd/config.toml"
  wait_for "containerd" 60 ctr --address "$SOCK" version
  local img
  for img in "$@"; do
    log "importing $(basename "$img")"
    ctr --address "$SOCK" -n k8s.io images import "$img" >&2
  done

  log "kubelet"
  mkdir -p "$E2E_DIR/kubelet" "$E2E_DIR/pod-logs" "$E2E_DIR/kubelet-plugins"
  cat > "$E2E_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host is cgroup v1 (hybrid); kubelet refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$SOCK
address: $ip
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
readOnlyPort: 0
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
podLogsDirectory: $E2E_DIR/pod-logs
volumePluginDir: $E2E_DIR/kubelet-plugins
failSwapOn: false
# A shared build machine: evict nothing because other jobs fill the disk.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
  start kubelet "$NODE_ASSETS/kubelet" --config "$E2E_DIR/kubelet.yaml" \
    --kubeconfig "$E2E_DIR/kubelet-client.kubeconfig" --root-dir "$E2E_DIR/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$ip" --oom-score-adj=0 --v=1
  local tk=$SECONDS

  log "kube-proxy (iptables)"
  cat > "$E2E_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $E2E_DIR/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$NODE_ASSETS/kube-proxy" --config "$E2E_DIR/kube-proxy.yaml" --v=1

  wait_for "node $NODE_NAME Ready" 180 kubectl_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  wait_for "the default ServiceAccount" 60 kubectl_admin -n default get serviceaccount default
  wait_for_service_ip
  log "node Ready $((SECONDS - tk))s after kubelet started; cluster up in $((SECONDS - t0))s"
  log "KUBECONFIG=$E2E_DIR/admin.kubeconfig"
}

start_apiserver() {
  log "kube-apiserver${*:+ (with $*)}"
  # shellcheck disable=SC1091
  source "$E2E_DIR/env"
  start kube-apiserver "$ASSETS/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" --cert-dir "$E2E_DIR/apiserver-certs" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=false --profiling=false "$@"
}

# restart-apiserver FLAG…: stop kube-apiserver and start it again with the
# flags (as an operator edits its manifest).
restart_apiserver() {
  # shellcheck disable=SC1091
  source "$E2E_DIR/env"
  stop_pid kube-apiserver 30
  start_apiserver "$@"
  wait_for "kube-apiserver" 120 kubectl_admin get --raw /readyz
  wait_for_service_ip
}

# Pods reach kube-apiserver at the kubernetes Service's ClusterIP, whose
# endpoint kube-apiserver removes when it stops and adds back once ready;
# kube-proxy then rewrites its rules. Until then pods get "connection refused".
wait_for_service_ip() {
  wait_for "the kubernetes Service at $KUBERNETES_SERVICE_IP" 60 \
    kubectl_admin --server "https://$KUBERNETES_SERVICE_IP" get --raw /readyz
}

# stop_pid NAME SECONDS: SIGTERM the recorded pid, SIGKILL after SECONDS.
stop_pid() {
  local f="$PIDS/$1.pid" pid
  [[ -f $f ]] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS > deadline)); then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; break; fi
      sleep 0.2
    done
  fi
  rm -f "$f"
}

# Pids of processes in the kubepods cgroups (the pods' containers).
pod_pids() {
  { find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs 2>/dev/null | xargs -r cat 2>/dev/null | sort -u; } || true
}

# Pids of the containerd shims this cluster's containerd started (they
# outlive it): named by their -address, which is this cluster's socket.
shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ -r $p/cmdline ]] || continue
    if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q -- "containerd-shim.* -address $SOCK "; then
      echo "${p#/proc/}"
    fi
  done
}

sweep_iptables() {
  local cmd t line chain
  for cmd in iptables ip6tables; do
    for t in filter nat mangle raw; do
      "$cmd" -t "$t" -S >/dev/null 2>&1 || continue
      # Rules in any other chain that jump to ours first, then our chains.
      while read -r line; do
        eval "$cmd -t $t -D ${line#-A }" 2>/dev/null || true
      done < <("$cmd" -t "$t" -S | grep -E '^-A ' | grep -vE '^-A (KUBE-|CNI-)' | grep -E -- '-j (KUBE-|CNI-)' || true)
      for chain in $("$cmd" -t "$t" -S | sed -n 's/^-N \(\(KUBE\|CNI\)-[^ ]*\)$/\1/p'); do
        "$cmd" -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$cmd" -t "$t" -S | sed -n 's/^-N \(\(KUBE\|CNI\)-[^ ]*\)$/\1/p'); do
        "$cmd" -t "$t" -X "$chain" 2>/dev/null || log "could not delete $cmd -t $t chain $chain"
      done
    done
  done
  local fam
  for fam in ip ip6; do nft delete table "$fam" kube-proxy 2>/dev/null || true; done
}

down() {
  [[ -d $E2E_DIR ]] || { log "nothing to tear down ($E2E_DIR does not exist)"; return 0; }
  local t0=$SECONDS
  mkdir -p "$LOG_DIR" "$PIDS"
  # shellcheck disable=SC1091
  [[ -f $E2E_DIR/env ]] && source "$E2E_DIR/env"
  log "tearing down"
  stop_pid kubelet 20
  # The pods' containers and sandboxes, by pid (the members of the kubepods
  # cgroups): containerd is stopped after them and its shims by pid, the
  # rootfs and netns mounts are swept below.
  local pid
  for _ in $(seq 1 40); do
    local pids; pids="$(pod_pids)"
    [[ -z $pids ]] && break
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.25
  done
  stop_pid kube-proxy 10
  if [[ -n ${NODE_ASSETS:-} && -x $NODE_ASSETS/kube-proxy ]]; then
    "$NODE_ASSETS/kube-proxy" --cleanup >>"$LOG_DIR/kube-proxy-cleanup.log" 2>&1 || true
  fi
  stop_pid kube-scheduler 10
  stop_pid kube-controller-manager 10
  # kube-apiserver before etcd: it would otherwise spin on a gone etcd.
  stop_pid kube-apiserver 30
  stop_pid etcd 20
  stop_pid containerd 20
  # A killed shim leaves its socket in /run/containerd/s (a path containerd
  # 1.6 fixes), named sha256(<our socket>/<namespace>/<id>): remove ours,
  # which matters when a system containerd owns that directory.
  local sockets=() id
  for pid in $(shim_pids); do
    id="$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | sed -n '/^-id$/{n;p}')"
    [[ -n $id ]] && sockets+=("/run/containerd/s/$(printf '%s' "$SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)")
  done
  for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  ((${#sockets[@]})) && rm -f "${sockets[@]}"
  for pid in $(pod_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  sleep 0.5

  # Mounts under our directory (container rootfs, netns, secret volumes),
  # deepest first.
  local m
  for _ in 1 2 3; do
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk -v dir="$E2E_DIR" 'index($5, dir) == 1 {print $5}' /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
  done

  # The kubepods cgroups, leaves first (a cgroup with a process cannot go).
  local d
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    for d in $(find /sys/fs/cgroup -maxdepth 2 -name kubepods -type d 2>/dev/null); do
      find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    [[ -z $(find /sys/fs/cgroup -maxdepth 2 -name kubepods -type d 2>/dev/null) ]] && break
    sleep 0.5
  done

  sweep_iptables
  ip link del "$BRIDGE" 2>/dev/null || true
  conntrack -D -s "$CLUSTER_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$SERVICE_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$CLUSTER_CIDR" >/dev/null 2>&1 || true

  if [[ -s $E2E_DIR/sysctl.saved ]]; then
    while IFS= read -r kv; do sysctl -qw "$kv" 2>/dev/null || log "could not restore $kv"; done < "$E2E_DIR/sysctl.saved"
  fi

  # Host paths the components made (kubelet's /var/log/containers symlinks,
  # the shims' sockets under /run/containerd): only those up found absent.
  if [[ -f $E2E_DIR/created ]]; then
    while read -r p; do [[ -n $p ]] && rm -rf "$p"; done < "$E2E_DIR/created"
  fi

  local leftovers=() after="$LOG_DIR/after"
  rm -rf "$after"
  snapshot "$after"
  local what
  for what in chains links cgroups mounts nft shim-sockets; do
    if [[ -f $E2E_DIR/before/$what ]]; then
      local extra
      extra="$(comm -13 "$E2E_DIR/before/$what" "$after/$what" | tr '\n' ' ')"
      [[ -z ${extra// } ]] || leftovers+=("$what: $extra")
    fi
  done
  if [[ -s $E2E_DIR/sysctl.saved ]]; then
    while IFS='=' read -r k v; do
      [[ "$(sysctl -n "$k" 2>/dev/null)" == "$v" ]] || leftovers+=("sysctl $k is $(sysctl -n "$k"), was $v")
    done < "$E2E_DIR/sysctl.saved"
  fi
  for f in "$PIDS"/*.pid; do [[ -e $f ]] && leftovers+=("process $(basename "$f" .pid) $(cat "$f")"); done
  local s; s="$(shim_pids | tr '\n' ' ')"; [[ -z ${s// } ]] || leftovers+=("containerd shims: $s")
  s="$(pod_pids | tr '\n' ' ')"; [[ -z ${s// } ]] || leftovers+=("pod processes: $s")
  if ((${#leftovers[@]})); then
    log "teardown LEFT BEHIND (state kept in $E2E_DIR):"
    printf '  %s\n' "${leftovers[@]}" >&2
    return 1
  fi
  rm -rf "$E2E_DIR"
  log "torn down in $((SECONDS - t0))s: no process, mount, cgroup, iptables chain, link or changed sysctl left"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  preflight) preflight ;;
  up) up "$@" ;;
  down) down ;;
  restart-apiserver) restart_apiserver "$@" ;;
  *) echo "usage: $0 preflight | up IMAGE.tar… | down | restart-apiserver [FLAG…]" >&2; exit 2 ;;
esac

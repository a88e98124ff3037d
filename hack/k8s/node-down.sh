#!/usr/bin/env bash
# Stops what node-up.sh started and undoes what it changed, using only what it recorded under
# $FERRUM_K8S_DIR/node: pods torn down through the kubelet (CNI DEL, netns, mounts), then the
# processes by pid, containerd's shims for our socket, leftover mounts under the node dir,
# network namespaces and iptables chains created since node-up, the pod bridge, and sysctls.
# Safe to run twice. Run it before down.sh so the pods can still be drained.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
. "$here/node-env.sh"

if [ ! -d "$N" ]; then
  echo "node-down: nothing recorded in $N"
  exit 0
fi
alive() { [ -f "$N/$1.pid" ] && kill -0 "$(cat "$N/$1.pid")" 2>/dev/null; }
stop() { # name
  alive "$1" || { rm -f "$N/$1.pid"; return 0; }
  local pid
  pid="$(cat "$N/$1.pid")"
  echo "node-down: stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  rm -f "$N/$1.pid"
}
KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$D/kubeconfig" --request-timeout=10s)
api_up() { [ -f "$D/apiserver.pid" ] && kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; }

# 1. Drain: the kubelet stops every sandbox through the CRI, which runs CNI DEL and removes
#    the pod's netns and mounts. Cordon first so controllers' replacements stay Pending.
if api_up && alive kubelet; then
  echo "node-down: draining $NODE_NAME"
  "${KUBECTL[@]}" cordon "$NODE_NAME" >/dev/null 2>&1
  "${KUBECTL[@]}" delete pods -A --field-selector "spec.nodeName=$NODE_NAME" \
    --grace-period=2 --wait=true --timeout=90s >/dev/null 2>&1 ||
    echo "node-down: drain did not finish; forcing" >&2
fi

# 2. Processes, by recorded pid.
for p in coredns kube-proxy kubelet kube-scheduler; do stop "$p"; done
if api_up; then
  "${KUBECTL[@]}" delete node "$NODE_NAME" --ignore-not-found >/dev/null 2>&1
  "${KUBECTL[@]}" -n kube-system delete service kube-dns --ignore-not-found >/dev/null 2>&1
  "${KUBECTL[@]}" -n kube-system delete endpointslice kube-dns-host --ignore-not-found >/dev/null 2>&1
fi

# 3. Containers the drain did not remove (e.g. the apiserver was already gone).
if alive containerd; then
  CTR=(ctr --address "$CONTAINERD_SOCK" -n k8s.io)
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1
  done
  sleep 1
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1
  done
  for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do
    "${CTR[@]}" containers delete "$c" >/dev/null 2>&1
  done
fi
stop containerd
# Shims outlive containerd by design; only those serving our socket are ours.
for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null); do
  echo "node-down: stopping shim pid $pid"
  kill -9 "$pid" 2>/dev/null
done

# 4. iptables: kube-proxy's own clean-up, then every chain created since node-up (kubelet's
#    canaries, CNI masquerade and portmap chains), with the rules that jump to them.
"$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
for cmd in iptables ip6tables; do
  [ -f "$N/$cmd.chains.before" ] || continue
  for table in filter nat mangle; do
    now=$("$cmd" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" {print $2}')
    new=()
    for c in $now; do
      grep -qx "$table $c" "$N/$cmd.chains.before" && continue
      # Others (podman's netavark, another CNI network) may add chains meanwhile: only
      # Kubernetes' chains and CNI chains of our network (or portmap's shared ones) go.
      case $c in
        KUBE-*|CNI-HOSTPORT-*) new+=("$c") ;;
        CNI-*) "$cmd" -w -t "$table" -S "$c" 2>/dev/null | grep -q 'ferrum-pods' && new+=("$c") ;;
      esac
    done
    [ "${#new[@]}" -gt 0 ] || continue
    echo "node-down: removing $cmd $table chains: ${new[*]}"
    for c in "${new[@]}"; do
      "$cmd" -w -t "$table" -S 2>/dev/null | grep -E -- "-j $c( |\$)" | sed 's/^-A /-D /' |
        while read -r rule; do eval "$cmd -w -t $table $rule" 2>/dev/null; done
    done
    for c in "${new[@]}"; do "$cmd" -w -t "$table" -F "$c" 2>/dev/null; done
    for c in "${new[@]}"; do "$cmd" -w -t "$table" -X "$c" 2>/dev/null; done
  done
done

# 5. Mounts under the node dir (kubelet volumes, containerd rootfs and shm), deepest first.
for m in $(findmnt -rn -o TARGET | grep -F "$N/" | sort -r); do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
done

# 6. Network namespaces the CRI made and did not remove.
for ns in $(ls /var/run/netns 2>/dev/null); do
  case $ns in cni-*) ;; *) continue ;; esac
  grep -qx "$ns" "$N/netns.before" 2>/dev/null && continue
  echo "node-down: removing netns $ns"
  ip netns delete "$ns" 2>/dev/null
done

# 7. The pod bridge, unless it predates node-up.
if [ ! -f "$N/bridge.before" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link delete "$BRIDGE" 2>/dev/null
fi

# 8. Host sysctls the kubelet or node-up changed.
if [ -f "$N/sysctl.before" ]; then
  while IFS='=' read -r k v; do
    [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -qw "$k=$v" 2>/dev/null
  done < "$N/sysctl.before"
fi

# Keep the logs for a post-mortem; the rest of the node dir goes.
rm -rf "$D/node-logs"
cp -r "$N/logs" "$D/node-logs" 2>/dev/null
# A mount still under the node dir may be a bind of host data (a hostPath volume): never
# delete through it.
left=$(findmnt -rn -o TARGET | grep -F "$N/" || true)
if [ -n "$left" ]; then
  echo "node-down: mounts left under $N, so it is kept:" >&2
  echo "$left" >&2
  exit 1
fi
rm -rf "$N"
echo "node-down: node $NODE_NAME stopped and cleaned"

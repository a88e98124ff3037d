#!/usr/bin/env bash
# Stops the control plane started by up.sh: only the processes whose pids it recorded.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"

for name in controller-manager apiserver etcd; do
  f="$FERRUM_K8S_DIR/$name.pid"
  [ -f "$f" ] || continue
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
done
echo "control plane in $FERRUM_K8S_DIR stopped"

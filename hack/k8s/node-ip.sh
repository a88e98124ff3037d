#!/usr/bin/env bash
# Prints the host address the node uses: the source address of the default route.
set -euo pipefail
ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)
if [ -z "$ip" ]; then
  ip=$(ip -4 route show default | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -1 | xargs -r ip -4 -o addr show dev | awk '{print $4}' | cut -d/ -f1 | head -1)
fi
if [ -z "$ip" ]; then
  echo "node-ip.sh: no IPv4 default route; set FERRUM_NODE_IP" >&2
  exit 1
fi
echo "$ip"

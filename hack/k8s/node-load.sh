#!/usr/bin/env bash
# Loads images into the running node's containerd (k8s.io namespace), where pods with
# imagePullPolicy: Never or IfNotPresent find them. Each argument is either a tarball made by
# `podman save` / `docker save` (docker-archive or oci-archive), or the name of an image in
# podman's local storage, which is saved first.
#   hack/k8s/node-load.sh localhost/ferrum/broker:dev out/namesrv.tar
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
. "$here/node-env.sh"
[ "$#" -gt 0 ] || { echo "usage: node-load.sh IMAGE-OR-TARBALL..." >&2; exit 2; }
if ! ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
  echo "node-load.sh: no containerd at $CONTAINERD_SOCK; run node-up.sh first" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for a in "$@"; do
  if [ -f "$a" ]; then
    tar=$a
  else
    tar="$tmp/image.tar"
    rm -f "$tar"
    echo "saving $a from podman"
    podman save -q -o "$tar" "$a"
  fi
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$tar"
done

#!/usr/bin/env bash
# Builds the node's local images and saves each as a docker-archive tarball in OUT_DIR:
#   pause.tar    localhost/ferrum/pause:1.0    the pod sandbox (hack/k8s/pause)
#   testbox.tar  localhost/ferrum/testbox:1.0  the smoke test's workload (hack/k8s/testbox)
# Both are static Go binaries (CGO_ENABLED=0) in FROM scratch images built with podman, since
# no base image can be pulled here. node-up.sh imports the tarballs into containerd.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
. "$here/node-env.sh"
out="${1:?usage: node-images.sh OUT_DIR}"
mkdir -p "$out"
for img in pause testbox; do
  ctx="$out/$img-context"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  echo "building $img (static Go)"
  (cd "$here/$img" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-p=${FERRUM_GO_JOBS:-1} \
    go build -trimpath -ldflags "-s -w" -o "$ctx/$img" .)
  cp "$here/$img/Containerfile" "$ctx/Containerfile"
  case $img in
    pause) tag=$PAUSE_IMAGE ;;
    testbox) tag=$TESTBOX_IMAGE ;;
  esac
  podman build -q -t "$tag" "$ctx" >/dev/null
  rm -f "$out/$img.tar"
  podman save -q -o "$out/$img.tar" "$tag"
  echo "image $tag -> $out/$img.tar ($(du -k "$out/$img.tar" | cut -f1) KiB)"
done

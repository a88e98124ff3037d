#!/usr/bin/env bash
# Runs the images built by `make images` the way a restricted pod would: read-only root
# filesystem, user 65532, all capabilities dropped, data only in a volume and the broker's
# config mounted read-only. A NameServer and a broker share one podman pod (one network
# namespace); ferrumctl from the tools image creates a topic, sends and consumes a message.
#   VERSION=<tag>  the tag to run (default: what build.sh would tag now)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$here/env.sh"

CARGO_VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
VERSION="${VERSION:-$CARGO_VERSION-$(git -C "$repo" rev-parse --short HEAD)}"
REGISTRY="${REGISTRY:-docker.io/ferrum}"
pod="ferrum-smoke-$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-image-smoke.XXXXXX")"
cleanup() {
  podman pod rm -f "$pod" >/dev/null 2>&1 || true
  podman volume rm -f "$pod-data" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

restricted=(--runtime "$PODMAN_RUNTIME" --pod "$pod" --read-only --read-only-tmpfs=false
  --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges)
cat > "$work/broker.conf" <<CONF
brokerClusterName=smoke
brokerName=smoke-a
brokerId=0
brokerIP1=127.0.0.1
listenPort=10911
namesrvAddr=127.0.0.1:9876
storePathRootDir=/data/store
# The volume is on the host's disk, whose fullness is not what this checks (see Makefile).
diskSpaceWarningLevelRatio=${FERRUM_BROKER_DISK_SPACE_WARNING_LEVEL_RATIO:-98}
diskSpaceCleanForciblyRatio=${FERRUM_BROKER_DISK_SPACE_CLEAN_FORCIBLY_RATIO:-97}
cleanFileForciblyEnable=${FERRUM_BROKER_CLEAN_FILE_FORCIBLY_ENABLE:-false}
CONF
chmod 644 "$work/broker.conf"

echo "pod $pod: namesrv + broker from $REGISTRY/*:$VERSION (read-only root, uid 65532)"
podman pod create --name "$pod" >/dev/null
podman volume create "$pod-data" >/dev/null
# A fresh named volume is root-owned; the pod's fsGroup does this in Kubernetes.
chown 65532:65532 "$(podman volume inspect --format '{{.Mountpoint}}' "$pod-data")"
podman run -d --name "$pod-namesrv" "${restricted[@]}" "$REGISTRY/namesrv:$VERSION" \
  --listen 127.0.0.1:9876 >/dev/null
podman run -d --name "$pod-broker" "${restricted[@]}" -v "$pod-data:/data" \
  -v "$work/broker.conf:/etc/ferrum/broker.conf:ro" "$REGISTRY/broker:$VERSION" \
  -c /etc/ferrum/broker.conf >/dev/null

ctl() { podman run --rm "${restricted[@]}" "$REGISTRY/tools:$VERSION" --namesrv 127.0.0.1:9876 "$@"; }
registered=0
for _ in $(seq 1 60); do
  if ctl cluster list 2>/dev/null | grep -q smoke-a; then registered=1; break; fi
  sleep 1
done
if [ "$registered" != 1 ]; then
  echo "the broker never registered; its log:" >&2
  podman logs "$pod-broker" >&2 || true
  podman logs "$pod-namesrv" >&2 || true
  exit 1
fi
ctl topic create Smoke --cluster smoke >/dev/null
ctl message send Smoke 'hello from a read-only container' >/dev/null
got="$(ctl consume Smoke --from-beginning --count 1)"
echo "$got" | grep -q 'hello from a read-only container' || { echo "consumed: $got" >&2; exit 1; }
echo "smoke ok: a message went through namesrv + broker containers with read-only roots"

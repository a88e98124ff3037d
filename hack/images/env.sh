# Shared settings of the image scripts; sourced by bases.sh and build.sh.
FERRUM_CACHE="${FERRUM_CACHE:-$HOME/.cache/ferrum}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The builder carries the host's Rust toolchain, so its version names the bases.
RUST_VERSION="${RUST_VERSION:-$(rustc --version | cut -d' ' -f2)}"
BASES_VERSION="${BASES_VERSION:-$DEBIAN_SUITE-rust$RUST_VERSION}"
BASES_DIR="$FERRUM_CACHE/images-$BASES_VERSION"
BUILDER_BASE="localhost/ferrum-base/builder:$BASES_VERSION"
RUNTIME_BASE="localhost/ferrum-base/runtime:$BASES_VERSION"

# podman on these machines: the default nofile ulimit cannot be applied inside the build
# containers, and crun refuses the host's hybrid cgroups, so Debian's runc is used.
_images_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$_images_here/containers.conf}"
PODMAN_RUNTIME="${PODMAN_RUNTIME:-/usr/sbin/runc}"

# Installs podman, runc and debootstrap from Debian when they are missing.
ensure_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  [ -x "$PODMAN_RUNTIME" ] || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

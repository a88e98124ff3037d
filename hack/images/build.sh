#!/usr/bin/env bash
# `make images`: builds every Dockerfile target (broker, namesrv, operator, tools) with
# podman from the locally made bases, tags each docker.io/ferrum/<target>:<version> (the
# name Kubernetes resolves `ferrum/<target>:<version>` to) and :<cargo version>, and saves
# them all into one docker-archive for `ctr -n k8s.io images import`. Only the newest
# FERRUM_IMAGE_ARCHIVES_KEPT archives (default 2) stay; the podman tags of pruned ones go too.
#
# Where the binaries come from (the Dockerfile's BINARIES build argument):
#   FERRUM_IMAGE_BINARIES=prebuilt  (default) cargo on this host compiles them into a target
#       directory kept under ~/.cache/ferrum/image-build-<suite>-rust<version>, from a copy of
#       the sources there in which only files whose bytes changed are rewritten, so a rebuild
#       compiles only what changed; the images then only COPY them. The host must run the
#       runtime base's Debian release (its glibc); each image runs its binary once to prove it.
#   FERRUM_IMAGE_BINARIES=source    cargo runs inside podman (the Dockerfile's build stage, as
#       `docker build` does anywhere); its cargo caches live in buildah's cache directory.
#
#   TARGETS="broker operator"  only these targets
#   SAVE=0                     skip the archive
#   CONTEXT=worktree           build the working tree instead of the committed HEAD
# Prints the tags, the image sizes and the archive path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$here/env.sh"

TARGETS="${TARGETS:-broker namesrv operator tools}"
SAVE="${SAVE:-1}"
CARGO_VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
REVISION="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
VERSION="${VERSION:-$CARGO_VERSION-$REVISION}"
REGISTRY="${REGISTRY:-docker.io/ferrum}"
ARCHIVE_DIR="${ARCHIVE_DIR:-$FERRUM_CACHE/images}"
ARCHIVE="$ARCHIVE_DIR/ferrum-images-$VERSION.tar"
BINARIES="${FERRUM_IMAGE_BINARIES:-prebuilt}"
KEEP_ARCHIVES="${FERRUM_IMAGE_ARCHIVES_KEPT:-2}"
case $BINARIES in
  prebuilt|source) ;;
  *) echo "build.sh: FERRUM_IMAGE_BINARIES must be prebuilt or source, not '$BINARIES'" >&2; exit 2 ;;
esac
SOURCES=(Cargo.toml Cargo.lock protocol store broker namesrv client operator)

start=$(date +%s)
# Host-built binaries need only the runtime base; the builder base (debootstrap + the Rust
# toolchain, about 1 GB) is made only for BINARIES=source.
if [ "$BINARIES" = prebuilt ]; then
  "$here/bases.sh" runtime >/dev/null
else
  "$here/bases.sh" >/dev/null
fi

# sources_to DIR: writes the sources the images are made of into DIR: the committed HEAD
# (what the revision label names), or the working tree with CONTEXT=worktree.
sources_to() {
  if [ "${CONTEXT:-head}" = worktree ]; then
    tar -C "$repo" -c --exclude=target "${SOURCES[@]}" | tar -x -C "$1"
  else
    git -C "$repo" archive --format=tar HEAD -- "${SOURCES[@]}" | tar -x -C "$1"
  fi
}

# sync_tree FROM TO: makes TO hold exactly FROM's files, rewriting only those whose bytes
# differ. cargo decides what to recompile by comparing file times with its outputs', so
# unchanged files keep their old times and changed ones get the present time (git archive
# stamps every file with the commit's time, which can be older than the outputs).
sync_tree() {
  local from=$1 to=$2 f
  mkdir -p "$to"
  (cd "$from" && find . -type f) | while IFS= read -r f; do
    if ! cmp -s "$from/$f" "$to/$f"; then
      mkdir -p "$to/$(dirname "$f")"
      rm -f "$to/$f"
      cp "$from/$f" "$to/$f"
    fi
  done
  (cd "$to" && find . -type f) | while IFS= read -r f; do
    [ -e "$from/$f" ] || rm -f "$to/$f"
  done
}

ctx="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-image-context.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$repo/Dockerfile" "$repo/.dockerignore" "$ctx/"

if [ "$BINARIES" = prebuilt ]; then
  # Keyed by what decides the binaries: the Debian release (glibc) and the Rust version.
  BUILD_CACHE="${FERRUM_IMAGE_BUILD_DIR:-$FERRUM_CACHE/image-build-$BASES_VERSION}"
  host_suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")"
  if [ "$host_suite" != "$DEBIAN_SUITE" ]; then
    echo "build.sh: this host runs '$host_suite', the runtime base is Debian '$DEBIAN_SUITE':" \
      "binaries built here may need a newer glibc; use FERRUM_IMAGE_BINARIES=source" >&2
    exit 1
  fi
  mkdir -p "$BUILD_CACHE"
  # One build at a time uses the cached sources and target.
  exec 9>"$BUILD_CACHE/.lock"
  flock 9
  # Superseded dependency versions pile up in a long-lived target directory; past
  # FERRUM_IMAGE_TARGET_MAX_GB (default 12) it starts over.
  max_gb="${FERRUM_IMAGE_TARGET_MAX_GB:-12}"
  if [ -d "$BUILD_CACHE/target" ] \
    && [ "$(du -sk "$BUILD_CACHE/target" | cut -f1)" -gt $(( max_gb * 1024 * 1024 )) ]; then
    echo "the cargo target $BUILD_CACHE/target is over $max_gb GB: starting it over"
    rm -rf "$BUILD_CACHE/target"
  fi
  mkdir -p "$ctx/src"
  sources_to "$ctx/src"
  sync_tree "$ctx/src" "$BUILD_CACHE/src"
  rm -rf "$ctx/src"
  echo "cargo build --release on the host (sources and target under $BUILD_CACHE)"
  t_cargo=$(date +%s)
  (cd "$BUILD_CACHE/src" && CARGO_TARGET_DIR="$BUILD_CACHE/target" nice -n 10 \
    cargo build --release --locked -p ferrum-broker -p ferrum-namesrv -p ferrum-operator -p ferrum-client --bins)
  echo "cargo build --release: $(( $(date +%s) - t_cargo )) s"
  mkdir -p "$ctx/prebuilt"
  for b in ferrum-broker ferrum-namesrv ferrum-operator ferrumctl; do
    cp "$BUILD_CACHE/target/release/$b" "$ctx/prebuilt/$b"
    strip --strip-debug "$ctx/prebuilt/$b"
  done
  flock -u 9
else
  sources_to "$ctx"
fi

# buildah 1.28 resolves the Dockerfile's `FROM binaries-${BINARIES}` only when BINARIES is
# given here, even for its default.
common=(--runtime "$PODMAN_RUNTIME" --pull=never --layers
  --build-arg "BUILDER_IMAGE=$BUILDER_BASE" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE"
  --build-arg "BINARIES=$BINARIES"
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" -f "$ctx/Dockerfile")
if [ "$BINARIES" = source ]; then
  # The build stage runs cargo once; naming it keeps it (the layer cache of every target)
  # out of the prune below, which drops the stages of earlier builds (about 1 GB each).
  echo "podman build --target build (one cargo build --release for all binaries)"
  nice -n 10 podman build "${common[@]}" --target build -t localhost/ferrum/build-stage:latest "$ctx"
fi

tags=()
for t in $TARGETS; do
  echo "podman build --target $t -> $REGISTRY/$t:$VERSION"
  nice -n 10 podman build "${common[@]}" --target "$t" \
    -t "$REGISTRY/$t:$VERSION" -t "$REGISTRY/$t:$CARGO_VERSION" "$ctx"
  tags+=("$REGISTRY/$t:$VERSION" "$REGISTRY/$t:$CARGO_VERSION")
done

if [ "$BINARIES" = source ]; then
  podman image prune -f --filter label=dev.ferrum.stage=build >/dev/null
fi

# Each image runs its binary once, read-only and as its own user: a binary the runtime base
# cannot load (a missing shared library or glibc symbol version) fails here, not in a pod.
for t in $TARGETS; do
  case $t in
    broker|namesrv|operator) bin=ferrum-$t ;;
    tools) bin=ferrumctl ;;
    *) continue ;;
  esac
  podman run --rm --runtime "$PODMAN_RUNTIME" --pull=never --network=none --read-only \
    "$REGISTRY/$t:$VERSION" --help >/dev/null \
    || { echo "build.sh: $bin does not run in $REGISTRY/$t:$VERSION" >&2; exit 1; }
done

if [ "$SAVE" = 1 ]; then
  mkdir -p "$ARCHIVE_DIR"
  echo "podman save -> $ARCHIVE"
  rm -f "$ARCHIVE"
  podman save --multi-image-archive --format docker-archive -o "$ARCHIVE" "${tags[@]}"
  # One archive (~55 MB) is made per source revision: keep the newest few, and drop the
  # podman tags of the versions pruned (a tag a container still uses stays).
  ls -t "$ARCHIVE_DIR"/ferrum-images-*.tar | tail -n +"$(( KEEP_ARCHIVES + 1 ))" \
    | while IFS= read -r old; do
        v="$(basename "$old" .tar)"
        v="${v#ferrum-images-}"
        echo "pruning $old and the podman tags $REGISTRY/*:$v"
        rm -f "$old"
        for t in broker namesrv operator tools; do
          podman rmi "$REGISTRY/$t:$v" >/dev/null 2>&1 || true
          podman rmi "$REGISTRY/$t:$v-b" >/dev/null 2>&1 || true
        done
      done
fi

echo "images built in $(( $(date +%s) - start )) s ($BINARIES binaries):"
for t in $TARGETS; do
  podman image inspect --format "{{index .RepoTags 0}} {{.Size}}" "$REGISTRY/$t:$VERSION" \
    | awk '{ printf "  %-45s %6.1f MB\n", $1, $2 / 1e6 }'
done
if [ "$SAVE" = 1 ]; then
  echo "archive: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1)); import with: ctr -n k8s.io images import $ARCHIVE"
fi

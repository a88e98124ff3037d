#!/usr/bin/env bash
# `make images`: builds every Dockerfile target (broker, namesrv, operator, tools) with
# podman from the locally made bases, tags each docker.io/ferrum/<target>:<version> (the
# name Kubernetes resolves `ferrum/<target>:<version>` to) and :<cargo version>, and saves
# them all into one docker-archive for `ctr -n k8s.io images import`.
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

start=$(date +%s)
"$here/bases.sh" >/dev/null

# The images hold the committed sources (what the revision label names), not whatever is
# half-edited in the working tree; the Dockerfile and .dockerignore come from the tree.
ctx="$repo"
if [ "${CONTEXT:-head}" != worktree ]; then
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-image-context.XXXXXX")"
  trap 'rm -rf "$ctx"' EXIT
  git -C "$repo" archive --format=tar HEAD -- Cargo.toml Cargo.lock protocol store broker namesrv client operator \
    | tar -x -C "$ctx"
  cp "$repo/Dockerfile" "$repo/.dockerignore" "$ctx/"
fi

common=(--runtime "$PODMAN_RUNTIME" --pull=never --layers
  --build-arg "BUILDER_IMAGE=$BUILDER_BASE" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE"
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" -f "$ctx/Dockerfile")
# The build stage runs cargo once; naming it keeps it (the layer cache of every target) out
# of the prune below, which drops the stages of earlier builds (about 1 GB each).
echo "podman build --target build (one cargo build --release for all binaries)"
nice -n 10 podman build "${common[@]}" --target build -t localhost/ferrum/build-stage:latest "$ctx"

tags=()
for t in $TARGETS; do
  echo "podman build --target $t -> $REGISTRY/$t:$VERSION"
  nice -n 10 podman build "${common[@]}" --target "$t" \
    -t "$REGISTRY/$t:$VERSION" -t "$REGISTRY/$t:$CARGO_VERSION" "$ctx"
  tags+=("$REGISTRY/$t:$VERSION" "$REGISTRY/$t:$CARGO_VERSION")
done

podman image prune -f --filter label=dev.ferrum.stage=build >/dev/null

if [ "$SAVE" = 1 ]; then
  mkdir -p "$ARCHIVE_DIR"
  echo "podman save -> $ARCHIVE"
  rm -f "$ARCHIVE"
  podman save --multi-image-archive --format docker-archive -o "$ARCHIVE" "${tags[@]}"
fi

echo "images built in $(( $(date +%s) - start )) s:"
for t in $TARGETS; do
  podman image inspect --format "{{index .RepoTags 0}} {{.Size}}" "$REGISTRY/$t:$VERSION" \
    | awk '{ printf "  %-45s %6.1f MB\n", $1, $2 / 1e6 }'
done
if [ "$SAVE" = 1 ]; then
  echo "archive: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1)); import with: ctr -n k8s.io images import $ARCHIVE"
fi

#!/usr/bin/env bash
# The Java client image of the cluster scenario: Apache RocketMQ's Java remoting client
# (rocketmq-client from Maven Central, the version of hack/compat/java-client/pom.xml) with
# hack/images/java-client/ClusterClient.java, on a Java runtime cut from the host's JDK with
# jlink (only the modules jdeps finds) plus the shared libraries it needs beyond the runtime
# base of bases.sh (glibc, libgcc). No registry is needed.
#
# Tagged docker.io/ferrum/java-client:<hash of its inputs> and saved as a docker-archive for
# `ctr -n k8s.io images import`; prints the archive's path on its last line. Idempotent: an
# archive of the same inputs is reused.
#
#   FERRUM_M2   local Maven repository (default ~/.cache/ferrum/m2)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$here/env.sh"

if [ "$(id -u)" != 0 ]; then
  echo "java-client.sh: rootful podman needs root" >&2
  exit 1
fi
for tool in mvn javac jlink jdeps podman; do
  command -v "$tool" >/dev/null || { echo "java-client.sh: $tool is not installed" >&2; exit 1; }
done
M2="${FERRUM_M2:-$HOME/.cache/ferrum/m2}"
POM="$repo/hack/compat/java-client/pom.xml"
SRC="$here/java-client/ClusterClient.java"
JAVA_VERSION="$(javac -version 2>&1 | awk '{ print $2 }')"
HASH="$(cat "$POM" "$SRC" "$0" <(echo "$JAVA_VERSION $BASES_VERSION") | sha256sum | cut -c1-12)"
IMAGE="docker.io/ferrum/java-client:$HASH"
ARCHIVE_DIR="$FERRUM_CACHE/images-java"
ARCHIVE="$ARCHIVE_DIR/ferrum-java-client-$HASH.tar"

if [ -f "$ARCHIVE" ] && podman image exists "$IMAGE"; then
  echo "java-client image $IMAGE is up to date"
  echo "$ARCHIVE"
  exit 0
fi
"$here/bases.sh" runtime >/dev/null
start=$(date +%s)
ctx="$(mktemp -d "${TMPDIR:-/tmp}/ferrum-java-client.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$M2" "$ctx/app/lib" "$ctx/app/classes" "$ctx/libs"

echo "resolving rocketmq-client with Maven ($M2)"
mvn -q -B -f "$POM" -Dmaven.repo.local="$M2" dependency:build-classpath \
  -Dmdep.outputFile="$ctx/deps" >"$ctx/mvn.log" 2>&1 \
  || { cat "$ctx/mvn.log" >&2; exit 1; }
tr ':' '\n' <"$ctx/deps" | while read -r jar; do cp "$jar" "$ctx/app/lib/"; done
echo "javac ClusterClient.java against $(ls "$ctx/app/lib" | grep -o 'rocketmq-client-[0-9.]*' | head -1)"
javac --release 17 -d "$ctx/app/classes" -cp "$(cat "$ctx/deps")" "$SRC"

modules="$(jdeps --print-module-deps --ignore-missing-deps --multi-release 17 --recursive \
  -cp "$(cat "$ctx/deps")" "$ctx/app/classes")"
echo "jlink a Java $JAVA_VERSION runtime with $modules"
jlink --add-modules "$modules" --strip-debug --no-header-files --no-man-pages \
  --compress=2 --output "$ctx/jre"

# Shared libraries of the runtime that the base (glibc, libgcc) does not carry, from the
# host (the same Debian release as the base). java.desktop is in only for java.beans: its
# native AWT, font, image and sound libraries are never loaded headless, so their X11 and
# media dependencies stay out.
base_has() { case $1 in libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libgcc_s.so*) return 0 ;; esac; return 1; }
find "$ctx/jre" -type f \( -name '*.so' -o -path '*/bin/*' \) \
  ! -regex '.*/lib\(awt\|jawt\|awt_xawt\|awt_headless\|fontmanager\|javajpeg\|jsound\|lcms\|mlib_image\|splashscreen\)\.so' -print0 \
  | xargs -0 ldd 2>/dev/null | awk '/=> \// { print $1, $3 }' | sort -u \
  | while read -r name path; do
      base_has "$name" && continue
      [ -e "$ctx/jre/lib/$name" ] && continue
      cp -L "$path" "$ctx/libs/$name"
    done
echo "host libraries added: $(ls "$ctx/libs" | tr '\n' ' ')"

cat >"$ctx/Containerfile" <<CF
FROM $RUNTIME_BASE
COPY jre /opt/java
COPY libs /usr/lib/x86_64-linux-gnu/
COPY app /opt/app
ENV JAVA_HOME=/opt/java ROCKETMQ_CLIENT_LOG_ROOT=/tmp
LABEL org.opencontainers.image.title="ferrum-java-client" \\
      org.opencontainers.image.description="Apache RocketMQ Java client scenarios for Ferrum's cluster end to end"
USER 65532:65532
ENTRYPOINT ["/opt/java/bin/java", "-Xmx256m", "-XX:-UsePerfData", "-Drocketmq.client.logRoot=/tmp", "-cp", "/opt/app/classes:/opt/app/lib/*", "io.ferrum.e2e.ClusterClient"]
CF
podman build --runtime "$PODMAN_RUNTIME" --pull=never -q -t "$IMAGE" -f "$ctx/Containerfile" "$ctx" >/dev/null
mkdir -p "$ARCHIVE_DIR"
rm -f "$ARCHIVE" "$ARCHIVE_DIR"/ferrum-java-client-*.tar
podman save -q --format docker-archive -o "$ARCHIVE" "$IMAGE"
size="$(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
echo "java-client image $IMAGE ($size) built in $(( $(date +%s) - start )) s"
echo "$ARCHIVE"

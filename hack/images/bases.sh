#!/usr/bin/env bash
# Makes the two base images the Dockerfile needs, for machines that cannot pull from a
# container registry:
#   builder  Debian minbase (debootstrap) + gcc/libc6-dev + the host's Rust toolchain, laid
#            out like docker.io/library/rust (cargo and rustc in /usr/local/cargo/bin)
#   runtime  distroless-like: only libc6, libgcc-s1, netbase and the CA bundle unpacked from
#            Debian packages, /etc/passwd with nonroot (65532), USER 65532, no shell
# Root filesystems are cached as tarballs under ~/.cache/ferrum/images-<suite>-rust<version>;
# the podman images are (re)imported from them when missing. Prints the image names.
#
#   bases.sh runtime   only the runtime base: what images of host-built binaries need
#                      (hack/images/build.sh's default) and the java-client image
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
wanted="${1:-all}"
case $wanted in
  all|runtime) ;;
  *) echo "bases.sh: say 'all' or 'runtime', not '$wanted'" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "bases.sh: debootstrap and rootful podman need root" >&2
  exit 1
fi
ensure_tools
mkdir -p "$BASES_DIR"
work="$(mktemp -d "$BASES_DIR/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

have_image() { podman image exists "$1"; }

# --- builder -------------------------------------------------------------------------
builder_tar="$BASES_DIR/builder-rootfs.tar"
if [ "$wanted" = all ] && [ ! -f "$builder_tar" ]; then
  echo "debootstrap $DEBIAN_SUITE (minbase + gcc) for the builder base"
  root="$work/builder"
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$BASES_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$BASES_DIR/debootstrap.log" >&2; exit 1; }
  sysroot="$(rustc --print sysroot)"
  echo "copying the Rust $RUST_VERSION toolchain from $sysroot (without its docs)"
  mkdir -p "$root/usr/local/cargo"
  for d in bin lib libexec etc; do
    [ -d "$sysroot/$d" ] && cp -a "$sysroot/$d" "$root/usr/local/cargo/"
  done
  # Build machines that intercept TLS add their CA to the host; cargo inside the builder
  # must trust it too to reach the crate registry.
  for ca in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$ca" ] || continue
    echo "builder trusts the host's extra CA $(basename "$ca")"
    cp "$ca" "$root/usr/local/share/ca-certificates/"
    cat "$ca" >> "$root/etc/ssl/certs/ca-certificates.crt"
  done
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" -cf "$builder_tar.partial" .
  mv "$builder_tar.partial" "$builder_tar"
  rm -rf "$root"
fi
if [ "$wanted" = all ] && ! have_image "$BUILDER_BASE"; then
  echo "importing $BUILDER_BASE"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'WORKDIR /' \
    "$builder_tar" "$BUILDER_BASE" >/dev/null
fi

# --- runtime -------------------------------------------------------------------------
runtime_tar="$BASES_DIR/runtime-rootfs.tar"
if [ ! -f "$runtime_tar" ]; then
  echo "unpacking libc6 libgcc-s1 netbase ca-certificates for the runtime base"
  root="$work/runtime"
  debs="$work/debs"
  mkdir -p "$root" "$debs"
  # apt downloads as _apt when it can write the directory, otherwise it warns.
  if id _apt >/dev/null 2>&1; then chown _apt "$debs"; fi
  (cd "$debs" && apt-get download libc6 libgcc-s1 netbase ca-certificates >/dev/null)
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  # What update-ca-certificates would write, without running anything inside the rootfs.
  mkdir -p "$root/etc/ssl/certs"
  cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" \
    "$root/usr/sbin" "$root/usr/bin"
  cat > "$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PW
  cat > "$root/etc/group" <<'GR'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
GR
  echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
  mkdir -p "$root/home/nonroot" "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  tar -C "$root" --owner=0 --group=0 -cf "$runtime_tar.partial" --exclude=./home/nonroot .
  tar -C "$root" --owner=65532 --group=65532 -rf "$runtime_tar.partial" ./home/nonroot
  mv "$runtime_tar.partial" "$runtime_tar"
  rm -rf "$root"
fi
if ! have_image "$RUNTIME_BASE"; then
  echo "importing $RUNTIME_BASE"
  podman import --quiet \
    --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    "$runtime_tar" "$RUNTIME_BASE" >/dev/null
fi
[ "$wanted" = runtime ] || echo "BUILDER_IMAGE=$BUILDER_BASE"
echo "RUNTIME_IMAGE=$RUNTIME_BASE"

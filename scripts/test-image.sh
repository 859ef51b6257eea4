#!/usr/bin/env bash
# Builds the Dockerfile for real and tests the image, without a Docker daemon or an image registry:
#   1. a Debian 12 base image (docker.io/library/debian:bookworm) made locally by debootstrap
#      (minbase, as Debian's official image is), once per machine, kept in the image store below;
#   2. `buildah bud --isolation chroot` (vfs storage) of the Dockerfile;
#   3. tests/image/test_image.py: pushes the image to the real distribution registry, signs it with
#      the test signer, runs the image's own entrypoint (`sigil serve`) from its root filesystem
#      (chroot, as user 65532) and has it admit its own signed image and deny an unsigned one.
#
#   scripts/test-image.sh            (as root; installs buildah, debootstrap, ... with deps.sh)
#
# Environment: SIGIL_IMAGE_STORE (default /var/tmp/sigil-image-test) holds the image store and
# the base image; SIGIL_IMAGE_KEEP=1 keeps the built image.
# Too long for every CI run: .ci/run calls it when its inputs changed since .ci/verified-base
# (scripts/image-inputs.sh), or with SIGIL_IMAGE_TEST=1. Measured on the 2-core CI-like machine
# with other builds running: 13 min 45 s with a cold compiler cache (the build stage's compile is
# 13.7 min of it), 4 min 35 s to 9 min with a warm one (apt archives and ccache are build caches
# between runs); a machine's first run adds about a minute of debootstrap.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STORE="${SIGIL_IMAGE_STORE:-/var/tmp/sigil-image-test}"
BASE=docker.io/library/debian:bookworm
IMAGE=localhost/sigil:test
[ "$(id -u)" = 0 ] || { echo "test-image.sh: run as root (buildah chroot isolation, chroot)" >&2; exit 1; }
"$ROOT/scripts/deps.sh" image
mkdir -p "$STORE"
B=(buildah --root "$STORE/root" --runroot "$STORE/runroot" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot
start=$SECONDS
# Working containers an interrupted run left in this store (it is the test's own).
"${B[@]}" rm --all >/dev/null 2>&1 || true

# 1. The base image.
if ! "${B[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  echo "== debootstrap: $BASE"
  rootfs="$(mktemp -d "$STORE/debootstrap.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" >"$STORE/debootstrap.log" 2>&1 \
    || { tail -20 "$STORE/debootstrap.log" >&2; exit 1; }
  # The apt sources of this machine (which reach a Debian mirror, with -updates and -security),
  # as deb822 like Debian's own image; no package lists or caches in the image.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "$rootfs/etc/apt/sources.list"
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  ctr="$("${B[@]}" from scratch)"
  mnt="$("${B[@]}" mount "$ctr")"
  tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
  "${B[@]}" umount "$ctr" >/dev/null
  "${B[@]}" config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  "${B[@]}" commit --quiet --rm "$ctr" "$BASE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "== base image made in $((SECONDS - start)) s"
fi

# 2. The Dockerfile.
echo "== buildah bud $IMAGE"
build_start=$SECONDS
version="$(sed -n 's/^project(sigil VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")"
revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
"${B[@]}" bud --pull=never --layers=false -f "$ROOT/Dockerfile" -t "$IMAGE" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ROOT" >"$STORE/build.log" 2>&1 \
  || { tail -40 "$STORE/build.log" >&2; exit 1; }
echo "== built in $((SECONDS - build_start)) s"
# Only the base and the newest image stay (vfs stores every layer in full).
"${B[@]}" rmi --prune >/dev/null 2>&1 || true

# 3. The image, for real.
SIGIL_IMAGE="$IMAGE" SIGIL_BUILDAH="${B[*]}" python3 "$ROOT/tests/image/test_image.py"
if [ "${SIGIL_IMAGE_KEEP:-0}" != 1 ]; then
  "${B[@]}" rmi "$IMAGE" >/dev/null 2>&1 || true
fi
echo "== image test passed in $((SECONDS - start)) s"

#!/usr/bin/env bash
# What the container image test (scripts/test-image.sh) depends on. CI (.ci/run) runs that test
# when the last commit changed one of these, or when asked (SIGIL_IMAGE_TEST=1).
#   scripts/image-inputs.sh paths     the Dockerfile and its ignore file, the scripts the image
#                                     build runs (deps.sh is the dependency list; build.sh,
#                                     image-rootfs.sh), the image test and the support code it
#                                     uses. Not every CMake file: image-rootfs.sh copies whatever
#                                     libraries ldd names, so a new library needs no image change
#   scripts/image-inputs.sh changed   exit 0 when one of them changed since the commit in
#                                     .ci/verified-base (the last commit a clean CI run verified;
#                                     without it, the last commit's first parent), naming them on
#                                     stderr; 1 when not
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PATHS=(Dockerfile .dockerignore scripts/deps.sh scripts/build.sh scripts/image-rootfs.sh
  scripts/test-image.sh scripts/image-inputs.sh tests/image tests/support/registry.py
  tests/support/fixture.py)

case "${1:-}" in
  paths) printf '%s\n' "${PATHS[@]}" ;;
  changed)
    base="$(cat .ci/verified-base 2>/dev/null || true)"
    if [ -z "$base" ] || ! git cat-file -e "$base^{commit}" 2>/dev/null; then base='HEAD^1'; fi
    git rev-parse -q --verify "$base" >/dev/null 2>&1 || exit 1
    changed="$(git diff --name-only "$base" HEAD -- "${PATHS[@]}")"
    [ -n "$changed" ] || exit 1
    echo "image inputs changed since $base: $(echo "$changed" | head -5 | tr '\n' ' ')" >&2
    ;;
  *) echo "usage: $0 paths|changed" >&2; exit 2 ;;
esac

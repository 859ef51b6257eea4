#!/usr/bin/env bash
# What the container image test (scripts/test-image.sh) depends on. CI runs that test only when
# asked (SIGIL_IMAGE_TEST=1 .ci/run); this tells when it should be asked.
#   scripts/image-inputs.sh paths     the Dockerfile and its ignore file, scripts/ (deps.sh is the
#                                     dependency list; build.sh, image-rootfs.sh), the image test and
#                                     the support code it uses, and the CMake files that find and
#                                     link libraries
#   scripts/image-inputs.sh changed   exit 0 when the last commit changed one of them (compared with
#                                     its first parent, so a merge into main counts everything it
#                                     brought; CI runs in a fresh clone with no branch to compare
#                                     with), naming them on stderr; 1 when not
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PATHS=(Dockerfile .dockerignore scripts tests/image tests/support/registry.py tests/support/fixture.py
  CMakeLists.txt ':(glob)*/CMakeLists.txt' ':!tests/CMakeLists.txt' ':!bench/CMakeLists.txt')

case "${1:-}" in
  paths) printf '%s\n' "${PATHS[@]}" ;;
  changed)
    git rev-parse -q --verify 'HEAD^1' >/dev/null 2>&1 || exit 1
    changed="$(git diff --name-only 'HEAD^1' HEAD -- "${PATHS[@]}")"
    [ -n "$changed" ] || exit 1
    echo "image inputs changed in the last commit: $(echo "$changed" | head -5 | tr '\n' ' ')" >&2
    ;;
  *) echo "usage: $0 paths|changed" >&2; exit 2 ;;
esac

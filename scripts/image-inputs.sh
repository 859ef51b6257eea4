#!/usr/bin/env bash
# What the container image test (scripts/test-image.sh) depends on, and whether it must run.
#   scripts/image-inputs.sh paths    the paths: the Dockerfile and its ignore file, scripts/ (deps.sh
#                                    is the dependency list; build.sh, image-rootfs.sh), the image
#                                    test, and the CMake files that find and link libraries
#   scripts/image-inputs.sh id       a hash of those files' contents in the work tree
#   scripts/image-inputs.sh needed   exit 0 if the test must run, 1 if not, saying why on stderr
#
# "needed" is answered without a base revision to compare with, since CI runs in a fresh clone of
# main, where no branch or merge base exists: the test runs when
#   - SIGIL_IMAGE_TEST=1 (never when 0), or
#   - the last commit touched those paths, compared with its first parent (so a merge commit
#     counts everything it brought into main), or HEAD has no parent to compare with;
# and is skipped when this machine already passed it for exactly these inputs (the stamp
# $SIGIL_IMAGE_STORE/passed that test-image.sh writes), or when not root.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STORE="${SIGIL_IMAGE_STORE:-/var/tmp/sigil-image-test}"
PATHS=(Dockerfile .dockerignore scripts tests/image tests/support/registry.py tests/support/fixture.py
  CMakeLists.txt ':(glob)*/CMakeLists.txt' ':!tests/CMakeLists.txt' ':!bench/CMakeLists.txt')

inputs_id() {
  git ls-files -z -- "${PATHS[@]}" | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

case "${1:-}" in
  paths) printf '%s\n' "${PATHS[@]}" ;;
  id) inputs_id ;;
  needed)
    case "${SIGIL_IMAGE_TEST:-auto}" in
      1) echo "image test: SIGIL_IMAGE_TEST=1" >&2; exit 0 ;;
      0) echo "image test: skipped (SIGIL_IMAGE_TEST=0)" >&2; exit 1 ;;
    esac
    if [ "$(id -u)" != 0 ]; then echo "image test: skipped (needs root)" >&2; exit 1; fi
    if [ -f "$STORE/passed" ] && [ "$(cat "$STORE/passed")" = "$(inputs_id)" ]; then
      echo "image test: skipped (passed on this machine for these inputs)" >&2; exit 1
    fi
    if ! git rev-parse -q --verify 'HEAD^1' >/dev/null; then
      echo "image test: HEAD has no parent to compare with" >&2; exit 0
    fi
    changed="$(git diff --name-only 'HEAD^1' HEAD -- "${PATHS[@]}")"
    if [ -n "$changed" ]; then
      echo "image test: the last commit changed $(echo "$changed" | head -5 | tr '\n' ' ')" >&2; exit 0
    fi
    echo "image test: skipped (the last commit changed none of its inputs; SIGIL_IMAGE_TEST=1 forces it)" >&2
    exit 1
    ;;
  *) echo "usage: $0 paths|id|needed" >&2; exit 2 ;;
esac

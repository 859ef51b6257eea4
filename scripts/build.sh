#!/usr/bin/env bash
# Configures and builds sigil into build/ (or $BUILD_DIR). Extra args go to cmake.
# TARGETS="sigil" builds only those ninja targets (default: all); BUILD_TYPE (default
# RelWithDebInfo) and JOBS (default: the number of cores) as named.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
# TARGETS (e.g. "sigil"): build only those; default: everything, tests included.
# shellcheck disable=SC2086 # TARGETS is a list
ninja -C "$BUILD_DIR" -j"${JOBS:-$(nproc)}" ${TARGETS:-}

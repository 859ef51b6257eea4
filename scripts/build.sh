#!/usr/bin/env bash
# Configures and builds sigil into build/ (or $BUILD_DIR). Extra args go to cmake.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
# TARGETS (e.g. "sigil"): build only those; default: everything, tests included.
ninja -C "$BUILD_DIR" -j"${JOBS:-$(nproc)}" ${TARGETS:-}

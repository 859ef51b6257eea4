#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. This is what CI runs (.ci/run).
#   1. format check (clang-format) of the modules, tests/ and bench/
#   2. sanitizer build (ASan + UBSan) running the unit, fuzz-corpus and integration tests
#   3. the libFuzzer targets built with clang and each run briefly on its corpus
#   4. the main build with -Werror running the whole suite; its ctest summary ends the output
# SIGIL_QUICK=1 skips steps 2 and 3 (for a fast local loop).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/deps.sh"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
JOBS="${JOBS:-$(nproc)}"

echo "== format check"
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null || true)
if [ -n "$files" ]; then
  clang-format --dry-run --Werror $files
fi

if [ "${SIGIL_QUICK:-0}" != 1 ]; then
  echo "== sanitizer build (ASan + UBSan)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSIGIL_SANITIZE=ON -DSIGIL_WERROR=ON >/dev/null
  ninja -C build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS" -LE bench

  echo "== libFuzzer targets (clang), 20 s each"
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DSIGIL_FUZZ=ON >/dev/null
  ninja -C build-fuzz -j"$JOBS" $(ninja -C build-fuzz -t targets all | grep -o '^fuzz_[a-z0-9_]*' | sort -u)
  for f in build-fuzz/fuzz_*; do
    name=$(basename "$f"); name=${name#fuzz_}
    mkdir -p "build-fuzz/corpus-$name"
    "$f" -max_total_time=20 -print_final_stats=0 "build-fuzz/corpus-$name" "tests/fuzz/corpus/$name" >/dev/null 2>&1 \
      || { echo "fuzzer $name found a crash:"; "$f" -max_total_time=20 "build-fuzz/corpus-$name" "tests/fuzz/corpus/$name" 2>&1 | tail -40; exit 1; }
    echo "fuzz_$name: ok"
  done
fi

echo "== main build (-Werror) and the whole suite"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIGIL_WERROR=ON >/dev/null
ninja -C build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"

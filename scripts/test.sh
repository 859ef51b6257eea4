#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. This is what CI runs (.ci/run).
#   0. module rules (scripts/check-deps.py): no include ARCHITECTURE.md forbids; seconds
#   1. format check (clang-format) of the modules, tests/ and bench/
#   2. sanitizer build (ASan + UBSan) running the unit, fuzz-corpus and integration tests
#   3. clang-tidy (.clang-tidy, warnings are errors) on the module sources changed since the
#      commit in .ci/verified-base (SIGIL_TIDY=all: every module source)
#   4. the libFuzzer targets built with clang and each run briefly on its corpus, two at a time
#   5. the main build with -Werror running the whole suite; its ctest summary ends the output
# Each stage prints its wall time, and a table of them all comes just before the last summary.
# SIGIL_QUICK=1 skips steps 2 to 4 (for a fast local loop). Every build keeps line tables only
# (SIGIL_DEBUG_INFO=lines): sanitizer and crash traces keep file:line, compiles take ~25% less.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
JOBS="${JOBS:-$(nproc)}"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"

STAGES=""
stage_start=$SECONDS
stage() {  # stage NAME: closes the stage before and opens NAME
  local now=$SECONDS
  if [ -n "${stage_name:-}" ]; then
    STAGES="$STAGES$(printf '  %-34s %4d s' "$stage_name" $((now - stage_start)))"$'\n'
    echo "   ($stage_name: $((now - stage_start)) s)"
  fi
  stage_name="$1"
  stage_start=$now
  [ -n "$1" ] && echo "== $1"
  return 0
}

# First and cheap (python3 only): a forbidden include fails the run before anything is built.
stage "module rules (check-deps)"
python3 "$ROOT/scripts/check-deps.py" "$ROOT"

stage "dependencies (scripts/deps.sh)"
"$ROOT/scripts/deps.sh"

stage "format check"
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null || true)
if [ -n "$files" ]; then
  clang-format --dry-run --Werror $files
fi

if [ "${SIGIL_QUICK:-0}" != 1 ]; then
  stage "sanitizer build (ASan + UBSan)"
  cmake --preset asan -DSIGIL_DEBUG_INFO=lines >/dev/null
  ninja -C build-asan -j"$JOBS"

  stage "sanitizer tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS" -LE bench

  stage "clang-tidy"
  modules='^(common|asio|crypto|oci|policy|admission|net|registry|kube|verify|server|app|azure)/'
  if [ "${SIGIL_TIDY:-changed}" = all ] || ! base=$(cat .ci/verified-base 2>/dev/null) \
      || ! git cat-file -e "$base^{commit}" 2>/dev/null; then
    tidy_files=$(git ls-files '*.cpp' | grep -E "$modules" || true)
  else
    tidy_files=$(git diff --name-only --diff-filter=AMR "$base" HEAD -- '*.cpp' | grep -E "$modules" || true)
  fi
  echo "   $(echo "$tidy_files" | grep -c . || true) files"
  if [ -n "$tidy_files" ]; then
    echo "$tidy_files" | xargs -n1 -P"$JOBS" clang-tidy -p build-asan --quiet 2>&1 \
      | grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated|^Suppressed|^Use -header-filter|^$' \
      > build-asan/tidy.log || true
    # Diagnostics located in system headers are not ours to fix: clang 14's analyzer does not
    # model coroutines and reports Boost.Asio's awaitable internals (core.CallAndMessage).
    if grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' build-asan/tidy.log | grep -q -v '^/usr/'; then
      grep -v '^/usr/' build-asan/tidy.log
      echo "clang-tidy found the problems above"
      exit 1
    fi
  fi

  stage "libFuzzer targets: build (clang)"
  cmake --preset fuzz -DSIGIL_DEBUG_INFO=lines >/dev/null
  ninja -C build-fuzz -j"$JOBS" $(ninja -C build-fuzz -t targets all | grep -o '^fuzz_[a-z0-9_]*' | sort -u)

  stage "libFuzzer targets: ${FUZZ_SECONDS} s each"
  run_fuzzer() {
    local f=$1 name
    name=$(basename "$f"); name=${name#fuzz_}
    mkdir -p "build-fuzz/corpus-$name"
    if "$f" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 "build-fuzz/corpus-$name" \
        "tests/fuzz/corpus/$name" >"build-fuzz/fuzz-$name.log" 2>&1; then
      echo "fuzz_$name: ok"
    else
      echo "fuzzer $name found a crash:"; tail -40 "build-fuzz/fuzz-$name.log"; return 1
    fi
  }
  export -f run_fuzzer
  export FUZZ_SECONDS
  ls build-fuzz/fuzz_* | xargs -n1 -P"$JOBS" bash -c 'run_fuzzer "$0"'
fi

stage "main build (-Werror)"
cmake --preset dev -DSIGIL_DEBUG_INFO=lines >/dev/null
ninja -C build -j"$JOBS"

stage "the whole suite"
set +e
ctest --test-dir build --output-on-failure -j"$JOBS" >build/ctest.log 2>&1
rc=$?
set -e
stage ""
echo "== stage times"
printf '%s' "$STAGES"
printf '  %-34s %4d s\n' "total" "$SECONDS"
echo "== ctest (build/)"
cat build/ctest.log
exit $rc

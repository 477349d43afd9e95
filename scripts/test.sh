#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through CTest: once in Release (GCC), once
# under AddressSanitizer + UndefinedBehaviorSanitizer (clang), the multi-threaded tests under
# ThreadSanitizer, then the fuzz targets for a bounded time.
# Set TAPEGRAD_SKIP_SANITIZE=1, TAPEGRAD_SKIP_TSAN=1 or TAPEGRAD_SKIP_FUZZ=1 to leave those passes out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

jobs=2
log=$(mktemp)
consumer_log=$(mktemp)
fuzz_log=$(mktemp)
consumer=
# One cleanup, set once. It must not fail: under set -e a failing command in an EXIT trap becomes
# the script's exit status, and `kill` of a consumer already waited for fails, which turned a green
# run into exit code 1 after its closing line.
cleanup() {
  if [ -n "$consumer" ]; then kill "$consumer" 2>/dev/null || true; fi
  rm -f "$log" "$consumer_log" "$fuzz_log"
}
trap cleanup EXIT
# Each phase's duration, so that the 20-minute budget on 2 cores can be watched phase by phase.
phase_start=$SECONDS
phase() { echo "== test.sh: $1 took $((SECONDS - phase_start)) s (total $SECONDS s)"; phase_start=$SECONDS; }
phase "dependencies"

# LibTorch, where installed, only adds comparisons to two benchmarks (benchmarks/README.md); the
# tests never need it, and compiling against it costs minutes, so this pass leaves it out.
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_WERROR=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON >/dev/null
cmake --build build/release -j"$jobs"
# All but the add_subdirectory consumer, which compiles the libraries once more (about two minutes
# of one core): it runs beside the fuzzers below, which leave one core of two idle.
consumer_test='^add_subdirectory_consumer$'
ctest --test-dir build/release --output-on-failure -j"$jobs" -E "$consumer_test" | tee -a "$log"
phase "Release build and tests"

fuzz_build=()
if [ "${TAPEGRAD_SKIP_SANITIZE:-0}" != 1 ]; then
  # The fuzz targets are built here too (same compiler, sanitizers and flags), so that fuzz.sh below
  # needs no build of its own: that was two to three minutes of the budget. The libraries then
  # carry the fuzzers' coverage counters in the tests as well, which costs the tests seconds.
  fuzz_option=()
  if [ "${TAPEGRAD_SKIP_FUZZ:-0}" != 1 ]; then
    fuzz_option=(-DTAPEGRAD_FUZZ=ON)
    fuzz_build=(env TAPEGRAD_FUZZ_BUILD=build/sanitize)
  fi
  # Built with clang (the Release pass uses the default compiler, GCC on Debian): one build covers
  # the other compiler, warnings as errors included, and the sanitizers. -O1 -g1 (line tables,
  # enough for the sanitizers' stack traces): about half the build time of -O2 -g, and the tests
  # still run in seconds. The test executables at -O0: instrumented code generation was most of
  # this build (a test file took up to 44 s at -O1), -O0 halves it (about two minutes of the
  # budget), and the sanitizers check unoptimised code as fully. The libraries stay at -O1; the
  # tests' own loops run slower (test_nn 30 s -> 42 s), far less than the build saves. The Release
  # pass covers optimised test code.
  cmake -S . -B build/sanitize -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_WERROR=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DTAPEGRAD_TEST_COMPILE_OPTIONS=-O0 \
    -DTAPEGRAD_BUILD_BENCHMARKS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF "${fuzz_option[@]}" >/dev/null
  cmake --build build/sanitize -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build/sanitize --output-on-failure -j"$jobs" | tee -a "$log"
  phase "ASan/UBSan build and tests"
fi

if [ "${TAPEGRAD_SKIP_TSAN:-0}" != 1 ]; then
  # The thread-safety contract (docs/design.md, Note [Threads]) under ThreadSanitizer: only the
  # multi-threaded tests, so only their targets are built. OpenBLAS's own threads are not
  # instrumented; one BLAS thread keeps them out of the report.
  cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPEGRAD_SANITIZE_THREAD=ON -DTAPEGRAD_WERROR=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DTAPEGRAD_TEST_COMPILE_OPTIONS=-O0 \
    -DTAPEGRAD_BUILD_BENCHMARKS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/tsan -j"$jobs" --target test_threads
  OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    ctest --test-dir build/tsan --output-on-failure -R '^test_threads$' | tee -a "$log"
  phase "ThreadSanitizer build and tests"
fi

fuzzed=0
ctest --test-dir build/release --output-on-failure -R "$consumer_test" >"$consumer_log" 2>&1 &
consumer=$!
if [ "${TAPEGRAD_SKIP_FUZZ:-0}" != 1 ]; then
  "${fuzz_build[@]}" scripts/fuzz.sh | tee "$fuzz_log"
  # fuzz.sh's own count of the targets it ran and passed (its last line).
  fuzzed=$(sed -n 's/^fuzz\.sh: [0-9]* targets ran: \([0-9]*\) passed.*/\1/p' "$fuzz_log" | tail -n 1)
fi
if ! wait "$consumer"; then
  consumer=
  cat "$consumer_log"
  echo "test.sh: the add_subdirectory consumer failed" >&2
  exit 1
fi
consumer=
tee -a "$log" <"$consumer_log"
phase "fuzzing and the add_subdirectory consumer"

# One closing line for the whole run: the tests CTest ran in each pass (from its summaries) and the
# fuzz targets fuzz.sh ran; a failure in either stopped the script above.
ran=$(grep -o 'tests passed, [0-9]* tests failed out of [0-9]*' "$log" | awk '{s += $NF} END {print s + 0}')
echo "tapegrad: $((ran + ${fuzzed:-0})) passed (CTest $ran, fuzz targets ${fuzzed:-0}), 0 failed"

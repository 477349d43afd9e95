#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through CTest: once in Release, once under
# AddressSanitizer + UndefinedBehaviorSanitizer, the multi-threaded tests under ThreadSanitizer,
# then the fuzz targets for a bounded time.
# Set TAPEGRAD_SKIP_SANITIZE=1, TAPEGRAD_SKIP_TSAN=1 or TAPEGRAD_SKIP_FUZZ=1 to leave those passes out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

jobs=2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Each phase's duration, so that the 20-minute budget on 2 cores can be watched phase by phase.
phase_start=$SECONDS
phase() { echo "== test.sh: $1 took $((SECONDS - phase_start)) s (total $SECONDS s)"; phase_start=$SECONDS; }
phase "dependencies"

cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_WERROR=ON >/dev/null
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs" | tee -a "$log"
phase "Release build and tests"

if [ "${TAPEGRAD_SKIP_SANITIZE:-0}" != 1 ]; then
  # -O1 -g1 (line tables, enough for the sanitizers' stack traces): this build takes half the time
  # of -O2 -g (5.5 against 11 minutes on 2 cores), and the tests still run in seconds.
  cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_WERROR=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DTAPEGRAD_BUILD_BENCHMARKS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF >/dev/null
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
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DTAPEGRAD_BUILD_BENCHMARKS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/tsan -j"$jobs" --target test_threads
  OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    ctest --test-dir build/tsan --output-on-failure -R '^test_threads$' | tee -a "$log"
  phase "ThreadSanitizer build and tests"
fi

fuzzed=0
if [ "${TAPEGRAD_SKIP_FUZZ:-0}" != 1 ] && [ -x scripts/fuzz.sh ]; then
  scripts/fuzz.sh
  fuzzed=$(grep -c '^  "fuzz_' scripts/fuzz.sh || true)
  phase "fuzzing"
fi

# One closing line for the whole run (ctest passes above failed the script already if any test did).
ran=$(grep -o 'tests failed out of [0-9]*' "$log" | awk '{s += $5} END {print s + 0}')
echo "tapegrad: $((ran + fuzzed)) passed, 0 failed"

#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through CTest: once in Release, once under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzz targets for a bounded time.
# Set TAPEGRAD_SKIP_SANITIZE=1 to run only the Release pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

jobs=2
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs"

if [ "${TAPEGRAD_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPEGRAD_SANITIZE=ON \
    -DTAPEGRAD_BUILD_BENCHMARKS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/sanitize -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build/sanitize --output-on-failure -j"$jobs"
fi

if [ -x scripts/fuzz.sh ]; then
  scripts/fuzz.sh
fi

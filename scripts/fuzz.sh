#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build/fuzz and runs each for a bounded
# time on a scratch copy of its seed corpus. Fails if a fuzzer finds a crash, leak or timeout; the
# input that triggered it is kept in build/fuzz/artifacts/.
# TAPEGRAD_FUZZ_SECONDS overrides every target's time (e.g. 10 for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."

# The fuzz targets: "executable corpus-directory seconds", one per line. Add new targets here.
targets=(
  "fuzz_parse tests/fuzz/corpus/parse 45"
  "fuzz_safetensors tests/fuzz/corpus/safetensors 45"
)

build=build/fuzz
CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPEGRAD_FUZZ=ON -DTAPEGRAD_BUILD_TESTS=ON \
  -DTAPEGRAD_BUILD_BENCHMARKS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF >/dev/null

names=()
for t in "${targets[@]}"; do
  read -r name _ _ <<<"$t"
  names+=("$name")
done
cmake --build "$build" -j2 --target "${names[@]}"

artifacts="$build/artifacts"
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

status=0
for t in "${targets[@]}"; do
  read -r name corpus seconds <<<"$t"
  seconds=${TAPEGRAD_FUZZ_SECONDS:-$seconds}
  work="$scratch/$name"
  mkdir -p "$work"
  cp -R "$corpus/." "$work/"
  exe=$(find "$build" -type f -name "$name" -perm -u+x | head -n 1)
  echo "fuzz.sh: running $name for ${seconds}s on a copy of $corpus"
  if ! "$exe" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$name-" "$work" 2>"$scratch/$name.log"; then
    tail -n 60 "$scratch/$name.log"
    echo "fuzz.sh: $name FAILED; reproducer in $artifacts/" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|Done" "$scratch/$name.log" || true
    echo "fuzz.sh: $name passed"
  fi
done
exit "$status"

#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build/fuzz, replays each target's corpus
# (tests/fuzz/corpus/<target>: the seeds and every input that ever found a defect), then fuzzes it
# for a bounded time on a scratch copy of the corpus. Fails if a fuzzer finds a crash, leak or
# timeout; the input that triggered it is kept in build/fuzz/artifacts/ (add it to the corpus once
# fixed).
#
#   scripts/fuzz.sh            CI's short run: the times below, about 90 s in all
#   scripts/fuzz.sh 3600       an hour per target, for a long local run
#   scripts/fuzz.sh 0          only replay the corpora
# TAPEGRAD_FUZZ_SECONDS does the same as the argument (the argument wins).
# TAPEGRAD_FUZZ_BUILD=<dir> uses a build folder configured already with clang, -DTAPEGRAD_SANITIZE=ON
# and -DTAPEGRAD_FUZZ=ON (scripts/test.sh's sanitizer build) instead of configuring build/fuzz.
# The last line says how many targets ran and passed ("fuzz.sh: 4 targets ran: 4 passed, 0 failed");
# scripts/test.sh reads its count from there.
set -euo pipefail
cd "$(dirname "$0")/.."
override=${1:-${TAPEGRAD_FUZZ_SECONDS:-}}
if [ -n "$override" ] && ! [[ "$override" =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh [seconds per target]" >&2
  exit 2
fi

# The fuzz targets: "executable corpus-directory seconds", one per line. Add new targets here; keep
# the sum of the seconds about 90 (the CI budget).
targets=(
  "fuzz_parse tests/fuzz/corpus/parse 25"
  "fuzz_safetensors tests/fuzz/corpus/safetensors 25"
  "fuzz_idx tests/fuzz/corpus/idx 20"
  "fuzz_state_dict tests/fuzz/corpus/state_dict 20"
)

if [ -n "${TAPEGRAD_FUZZ_BUILD:-}" ]; then
  build=$TAPEGRAD_FUZZ_BUILD
else
  build=build/fuzz
  # -O1 -g1, as test.sh's sanitizer build: at -O2 -g the build was more than half of this
  # script's time. Each target fuzzes for a fixed time, so -O1 costs executions, not minutes.
  CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTAPEGRAD_FUZZ=ON -DTAPEGRAD_BUILD_TESTS=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DTAPEGRAD_BUILD_BENCHMARKS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF \
    >/dev/null
fi

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
ran=0
passed=0
for t in "${targets[@]}"; do
  read -r name corpus seconds <<<"$t"
  seconds=${override:-$seconds}
  work="$scratch/$name"
  mkdir -p "$work"
  cp -R "$corpus/." "$work/"
  exe=$(find "$build" -type f -name "$name" -perm -u+x | head -n 1)
  ran=$((ran + 1))
  # Replay first: every kept input must still pass, whatever the fuzzing below finds.
  echo "fuzz.sh: replaying $corpus with $name"
  if ! "$exe" -timeout=5 -rss_limit_mb=2048 -detect_leaks=1 "$corpus"/* 2>"$scratch/$name.replay.log"; then
    tail -n 60 "$scratch/$name.replay.log"
    echo "fuzz.sh: $name FAILED on a corpus input" >&2
    status=1
    continue
  fi
  if [ "$seconds" -eq 0 ]; then
    passed=$((passed + 1))
    continue
  fi
  echo "fuzz.sh: running $name for ${seconds}s on a copy of $corpus"
  if ! "$exe" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$name-" "$work" 2>"$scratch/$name.log"; then
    tail -n 60 "$scratch/$name.log"
    echo "fuzz.sh: $name FAILED; reproducer in $artifacts/" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|Done" "$scratch/$name.log" || true
    echo "fuzz.sh: $name passed"
    passed=$((passed + 1))
  fi
done
echo "fuzz.sh: $ran targets ran: $passed passed, $((ran - passed)) failed"
exit "$status"

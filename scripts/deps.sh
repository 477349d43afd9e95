#!/usr/bin/env bash
# Installs the Debian packages tapegrad needs, only if some are missing (quiet when all present).
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

packages=(
  cmake g++ make pkg-config       # the toolchain
  libboost-test-dev               # Boost.Test: the unit tests
  libfmt-dev                      # fmt: all formatting and printing
  libopenblas-dev                 # OpenBLAS (CBLAS): matrix products
  libbenchmark-dev                # Google Benchmark: benchmarks/
  libcli11-dev                    # CLI11: command-line options of the tools and examples
  nlohmann-json3-dev              # JSON: safetensors headers, --json output
  zlib1g-dev                      # zlib: gzipped IDX datasets
  gnuplot-nox                     # plots written by the examples
  graphviz                        # renders tape graphs (tapegrad graph)
  clang                           # libFuzzer targets
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "Installing missing packages: ${missing[*]}"
# On a fresh machine the package lists are empty until the first update.
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

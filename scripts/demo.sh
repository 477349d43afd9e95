#!/usr/bin/env bash
# Installs what is missing, builds Release, and runs the main example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh dataset-fashion-mnist
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j2 --target train_fashion_mnist
echo
. scripts/openblas_env.sh
./build/release/examples/train_fashion_mnist --out build/fashion_mnist "$@"

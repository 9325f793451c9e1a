#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (with the CUDA toolkit): install what is
# missing, build moec into build/release, plan every example spec, and build the tiny
# example's kernels (NVRTC cubins, CPU twins, model.h) into build/tiny.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release

for spec in examples/*.yaml; do
  echo
  echo "################ moec plan $spec"
  build/release/moec plan "$spec" --ranks 16
done
echo
echo "################ moec build examples/tiny_qwen3_moe.yaml -o build/tiny"
build/release/moec build examples/tiny_qwen3_moe.yaml -o build/tiny
build/release/moec inspect build/tiny
echo
echo "moec is built: build/release/moec (try: build/release/moec --help)"

#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (with the CUDA toolkit): install what is
# missing, build moec into build/release, plan every example spec, build the tiny example's
# trainer into build/tiny (NVRTC cubins, CPU twins, the generated step, the linked trainer)
# and train it on the bundled Tiny Shakespeare shard (CPU backend; checkpoints and the
# metrics file go to build/run/).
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
echo "################ build/tiny/train   (in build/run; 200 steps, about 20 s on 2 cores)"
mkdir -p build/run
(cd build/run && ../tiny/train --no-resume)
echo
echo "moec is built: build/release/moec (try: build/release/moec --help);"
echo "the tiny trainer: build/tiny/train --help; its run: build/run/checkpoints/tiny_qwen3_moe/"

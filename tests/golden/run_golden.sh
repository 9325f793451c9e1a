#!/bin/sh
# run_golden.sh MOEC COMPARE CONFIG_DIR OUT - the HF golden test of one config: build the
# trainer for CONFIG_DIR/spec.yaml, initialize it from CONFIG_DIR (the HF weights), train one
# step on the golden batch, dump everything, and compare with CONFIG_DIR/golden.safetensors.
set -e
moec=$1 compare=$2 cfg=$3 out=$4
rm -rf "$out"
"$moec" build "$cfg/spec.yaml" -o "$out"
lr=$(sed -n 's/^  lr: *\([0-9.e+-]*\).*/\1/p' "$cfg/spec.yaml")
"$out/train" --init-from "$cfg" --batch "$cfg/golden.safetensors" --dump "$out/dump.safetensors" --metrics "$out/metrics.jsonl"
"$compare" "$out/dump.safetensors" "$cfg/golden.safetensors" "$lr"

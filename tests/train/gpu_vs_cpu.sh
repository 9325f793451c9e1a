#!/bin/sh
# gpu_vs_cpu.sh TRAIN COMPARE WORK - the tiny step on the GPU against the CPU backend: one
# step from the same weights and batch on each; loss, logits, every gradient and every
# weight after AdamW must agree (golden_compare's tolerances). Skipped (77) without a GPU.
. "$(dirname "$0")/lib.sh"
train=$1 compare=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
"$train" --quiet --steps 1 --device cpu --no-resume --ckpt-dir cpu --metrics cpu.jsonl --dump cpu.safetensors ||
	fail "CPU step"
if ! "$train" --quiet --steps 1 --device cuda --no-resume --ckpt-dir gpu --metrics gpu.jsonl --dump gpu.safetensors \
	2>err.txt; then
	grep -q "no CUDA driver\|no CUDA device" err.txt && { echo "SKIP: $(cat err.txt)"; exit 77; }
	fail "GPU step: $(cat err.txt)"
fi
lr=$(metric cpu.jsonl 1 lr)
"$compare" gpu.safetensors cpu.safetensors "$lr" || fail "the GPU step differs from the CPU step"
echo "loss cpu $(metric cpu.jsonl 1 loss), gpu $(metric gpu.jsonl 1 loss)"
echo PASS

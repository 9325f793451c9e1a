#!/bin/sh
# templates_used.sh MOEC OUT - every template in kernels/ is instantiated by some
# configuration: over the tiny spec in fp32, and in bf16 with low-probability capacity
# drops over 2 expert-parallel GPUs (ep_regroup) under selective recompute (swiglu_fwd), the templates neither build uses (MOEC_DEBUG=1 lists them after kernel selection)
# must be none: a template no step selects is dead, or compiler/kernels.c does not know
# it yet. Only kernel selection must succeed here; whether each kernel compiles is the
# build/<spec>_<arch> tests' business. The builds go through the shared kernel cache.
moec=$1 out=$2
selected() { grep -Eq '^moec: kernels +[0-9.]+ ms' "$1"; }
MOEC_DEBUG=1 "$moec" build examples/tiny_qwen3_moe.yaml -o "$out/f32" --kernels-only >/dev/null 2>"$out.f32.err"
selected "$out.f32.err" || { echo "FAIL: kernel selection, fp32"; tail -n 20 "$out.f32.err"; exit 1; }
MOEC_DEBUG=1 "$moec" build examples/tiny_qwen3_moe.yaml -o "$out/bf16" --kernels-only --set train.precision=bf16 \
	--set moe.capacity_factor=1.25 --set moe.drop_policy=low_prob --set parallel.gpus_per_node=2 \
	--set parallel.ep=2 --set train.recompute=selective >/dev/null 2>"$out.bf16.err"
selected "$out.bf16.err" || { echo "FAIL: kernel selection, bf16"; tail -n 20 "$out.bf16.err"; exit 1; }
unused=$(sed -n 's/^moec: kernels: .*\/\([^/]*\.cu\) is not used.*/\1/p' "$out.f32.err" "$out.bf16.err" | sort | uniq -d)
[ -z "$unused" ] || { echo "FAIL: templates no configuration uses: $unused"; exit 1; }
echo "PASS: every template is used"

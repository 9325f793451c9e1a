#!/bin/sh
# bf16.sh MOEC TRAIN_F32 WORK [DEVICE] - the tiny example as a bf16 step (bf16 activations and
# GEMM weights, fp32 masters, gradients and AdamW) trains along the fp32 step's trajectory:
# the loss of every tenth step within 1% of fp32's, and falling. Per-tensor comparisons do
# not hold in bf16 (a token whose top-k is a near tie may pick another expert), the
# trajectory does. DEVICE cuda: the bf16 step on the GPU (exit 77 where there is none).
# BF16_TRAIN: a bf16 trainer built already (MOEC is then not used: bench/gpu_session.sh,
# where moec cannot run); TRAIN_DATA: the shard both train on (else the spec's).
. "$(dirname "$0")/lib.sh"
moec=$1 train32=$2 work=$3 device=${4:-cpu}
rm -rf "$work" && mkdir -p "$work" || exit 1
train16=${BF16_TRAIN:-$work/bf16/train}
if [ -z "${BF16_TRAIN:-}" ]; then
	"$moec" build examples/tiny_qwen3_moe.yaml --set train.precision=bf16 -o "$work/bf16" >"$work/build.log" 2>&1 ||
		fail "moec build bf16: $(tail -3 "$work/build.log")"
	within_plan "$work/build.log"
fi
set -- --quiet --steps 60 --no-resume --no-save
[ -n "${TRAIN_DATA:-}" ] && set -- "$@" --data "$TRAIN_DATA"
cd "$work" || exit 1
"$train32" "$@" --device cpu --metrics f32.jsonl || fail "fp32 run"
if ! "$train16" "$@" --device "$device" --metrics bf16.jsonl 2>err.txt; then
	grep -q "no CUDA driver\|no CUDA device" err.txt && { echo "SKIP: $(cat err.txt)"; exit 77; }
	fail "bf16 run on $device: $(cat err.txt)"
fi
for s in 1 10 20 30 40 50 60; do
	a=$(metric bf16.jsonl $s loss) b=$(metric f32.jsonl $s loss)
	echo "step $s: bf16 $a, fp32 $b"
	awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * b)}' ||
		fail "step $s: bf16 loss $a is not within 1% of fp32's $b"
done
awk -v a="$(metric bf16.jsonl 60 ce_loss)" -v b="$(metric bf16.jsonl 1 ce_loss)" 'BEGIN {exit !(a < b - 0.5)}' ||
	fail "the bf16 loss does not fall"
echo PASS

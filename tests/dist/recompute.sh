#!/bin/sh
# recompute.sh MOEC WORK RANKS EP [TP [PRECISION [--set KEY=VALUE]...]] - train.recompute changes what the step
# keeps for the backward, not what it computes: the tiny example on RANKS ranks with EP
# expert-parallel and TP tensor-parallel ranks (as layout.sh), built with recompute none,
# selective and full, trains two steps to bit-identical dumps (loss terms, logits, every
# gradient, every weight after AdamW: the same kernels on the same inputs), while the
# activation arena shrinks from none to selective to full and each build stays within
# moec plan's estimate. On one rank also: a checkpoint saved by the none trainer resumes in
# the full one, along the same trajectory. MOEC_TEST_DEVICE=cuda: the CUDA step (tests/emu's
# emulator here, NCCL between ranks). Further arguments change the model (a dense layer, no
# q/k norms: the other paths of step_recompute).
. "$(dirname "$0")/lib.sh"
device=${MOEC_TEST_DEVICE:-cpu}
moec=$1 work=$2 ranks=$3 ep=$4 tp=${5:-1} precision=${6:-fp32}
shift $(($# < 6 ? $# : 6))
rm -rf "$work" && mkdir -p "$work" || exit 1
last=
for policy in none selective full; do
	build_layout "$moec" "$work/$policy" "$ranks" "$ep" $((4 * tp / ranks)) "$tp" --set train.recompute=$policy \
		--set train.precision="$precision" "$@"
	act=$(sed -n 's/^#define MOEC_ACT_FLOATS \([0-9]*\)$/\1/p' "$work/$policy/gen/model.c")
	echo "recompute $policy: activation arena $act floats"
	[ -n "$act" ] || fail "no MOEC_ACT_FLOATS in $work/$policy/gen/model.c"
	[ -z "$last" ] || [ "$act" -lt "$last" ] || fail "recompute $policy keeps $act floats of activations, not fewer than $last"
	last=$act
	(
		cd "$work" || exit 1
		run_ranks "$ranks" "$policy/train" --device "$device" --steps 2 --no-resume --no-save --metrics "$policy.jsonl" \
			--dump "$policy.safetensors" >"$policy.out" 2>&1 || fail "recompute $policy: $(tail -5 "$policy.out")"
	) || exit 1
done
cd "$work" || exit 1
echo "loss after 2 steps: none $(metric none.jsonl 2 loss), selective $(metric selective.jsonl 2 loss), full $(metric full.jsonl 2 loss)"
same_tensors none.safetensors selective.safetensors
same_tensors none.safetensors full.safetensors
if [ "$ranks" = 1 ]; then
	none/train --device "$device" --quiet --steps 2 --stop-after 1 --save-every 1 --no-resume --ckpt-dir ck \
		--metrics ck.jsonl >ck.out 2>&1 || fail "none, first step: $(tail -3 ck.out)"
	full/train --device "$device" --steps 2 --save-every 0 --ckpt-dir ck --metrics ck.jsonl --dump resumed.safetensors \
		>resume.out 2>&1 || fail "full, resumed: $(tail -3 resume.out)"
	grep -q "resumed from ck/step_00000001 at step 1" resume.out || fail "full did not resume: $(head -3 resume.out)"
	same_tensors none.safetensors resumed.safetensors
	echo "a checkpoint of recompute none resumed under full: the same second step"
fi
echo PASS

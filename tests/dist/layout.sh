#!/bin/sh
# layout.sh MOEC COMPARE REF_DIR WORK RANKS EP [TP] - one step of the tiny example on RANKS
# CPU ranks (mpirun) with EP expert-parallel and TP tensor-parallel ranks (attention heads
# split, the MoE sequence-parallel over tp), the same global batch as the single-rank
# reference: the loss and every gradient and updated weight match it (golden_compare's
# fp32 tolerances; logits are per rank and not compared).
# MOEC_TEST_DEVICE=cuda runs the ranks on the CUDA backend instead, with NCCL between them:
# with tests/emu's device emulator (CMakeLists.txt sets it up) on this machine, or on GPUs.
. "$(dirname "$0")/lib.sh"
device=${MOEC_TEST_DEVICE:-cpu}
moec=$1 compare=$2 ref=$3 work=$4 ranks=$5 ep=$6 tp=${7:-1}
rm -rf "$work" && mkdir -p "$work" || exit 1
build_layout "$moec" "$work/t" "$ranks" "$ep" $((4 * tp / ranks)) "$tp"
cd "$work" || exit 1
run_ranks "$ranks" t/train --device "$device" --steps 1 --no-resume --ckpt-dir ck --metrics m.jsonl --dump dump.safetensors >out.txt 2>&1 ||
	fail "$ranks ranks, ep $ep, tp $tp on $device: $(tail -5 out.txt)"
grep -q '"event":"device".*NCCL' m.jsonl || [ "$device" = cpu ] || fail "the run did not use NCCL: $(grep device m.jsonl)"
lr=$(metric m.jsonl 1 lr)
echo "loss $(metric m.jsonl 1 loss) (one rank: $(metric "$ref/m.jsonl" 1 loss))"
"$compare" dump.safetensors "$ref/ref.safetensors" "$lr" --no-logits || fail "$ranks ranks, ep $ep, tp $tp on $device differ from one rank"
echo PASS

#!/bin/sh
# ranks.sh MOEC REF_DIR EMU_LIB WORK - the tiny example's GPU step over NCCL on emulated
# GPUs under mpirun (README.md here), beyond tests/dist/layout.sh's one fp32 step:
#   bf16, TP 2 x EP 2 (bf16 tp sums with ncclBfloat16, rows over ncclSend/Recv) along the
#   same layout's CPU ranks, step for step, for 8 steps;
#   fp32 EP 2, saved on the emulated GPUs at step 2 and resumed on one CPU rank, along the
#   uninterrupted single-rank run (REF_DIR: tests/dist/reference.sh's).
. "$(dirname "$0")/../dist/lib.sh"
moec=$1 ref=$2 emu=$3 work=$4
rm -rf "$work" && mkdir -p "$work" || exit 1
export MOEC_TRAIN_CFLAGS=-DMOEC_EMU_LAUNCH
"$moec" build examples/tiny_qwen3_moe.yaml -o "$work/bf16" --set train.precision=bf16 --set parallel.gpus_per_node=2 \
	--set parallel.tp=2 --set parallel.ep=2 >"$work/bf16.build.log" 2>&1 ||
	fail "moec build bf16: $(tail -3 "$work/bf16.build.log")"
build_layout "$moec" "$work/ep2" 2 2 2
cd "$work" || exit 1

# on_emu N ARGS...: N ranks on emulated GPUs
on_emu() {
	n=$1
	shift
	(export LD_LIBRARY_PATH="$emu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" && run_ranks "$n" "$@" --device cuda)
}

# within A B TOL: |A - B| <= TOL |B|
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN {d = a - b; if (d < 0) d = -d; if (b < 0) b = -b; exit !(d <= t * b)}'; }

on_emu 2 bf16/train --quiet --steps 8 --no-resume --no-save --metrics bf16_emu.jsonl >emu.out 2>&1 ||
	fail "bf16 TP 2 x EP 2 on emulated GPUs: $(tail -5 emu.out)"
grep -q '"event":"device".*NCCL' bf16_emu.jsonl || fail "the emulated run did not use NCCL: $(grep device bf16_emu.jsonl)"
run_ranks 2 bf16/train --device cpu --quiet --steps 8 --no-resume --no-save --metrics bf16_cpu.jsonl >cpu.out 2>&1 ||
	fail "bf16 TP 2 x EP 2 on CPU ranks: $(tail -5 cpu.out)"
for s in 1 2 4 8; do
	a=$(metric bf16_emu.jsonl $s loss) b=$(metric bf16_cpu.jsonl $s loss)
	echo "bf16 TP 2 x EP 2, step $s: emulated GPUs $a, CPU ranks $b"
	[ -n "$a" ] && within "$a" "$b" 1e-5 || fail "step $s: bf16 loss $a on emulated GPUs, $b on CPU ranks"
done

on_emu 2 ep2/train --quiet --steps 4 --stop-after 2 --save-every 2 --no-resume --ckpt-dir ck --metrics ep2.jsonl \
	>ep2.out 2>&1 || fail "EP 2 on emulated GPUs: $(tail -5 ep2.out)"
"$ref/one/train" --device cpu --steps 4 --save-every 0 --ckpt-dir ck --metrics one.jsonl >one.out 2>&1 ||
	fail "resuming on one CPU rank: $(tail -5 one.out)"
grep -q "resumed from ck/step_00000002 at step 2" one.out || fail "one rank did not resume: $(head -5 one.out)"
for s in 1 2 3 4; do
	f=$([ $s -le 2 ] && echo ep2.jsonl || echo one.jsonl)
	a=$(metric $f $s loss) b=$(metric "$ref/traj.jsonl" $s loss)
	echo "step $s: $([ $s -le 2 ] && echo "EP 2 on emulated GPUs" || echo "resumed on one CPU rank") $a, uninterrupted $b"
	[ -n "$a" ] && within "$a" "$b" 1e-5 || fail "step $s: $a, uninterrupted single-rank run $b"
done
echo PASS

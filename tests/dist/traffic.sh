#!/bin/sh
# traffic.sh MOEC WORK - the bytes rank 0 sends in one step equal what `moec plan` predicts
# for the layout: the gradient all-reduces exactly, and the all-to-alls when routing is
# balanced as the plan assumes (every token forced to experts 0 and 4: one row to each of
# the 2 EP ranks), and the tensor-parallel bytes too; with parallel.shard_optimizer the
# weights' all-gather after AdamW as well, and with full recompute its extra all-to-alls
# and all-reduces. MOEC_TEST_DEVICE=cuda: on GPUs over
# NCCL (tests/emu's emulator here).
. "$(dirname "$0")/lib.sh"
moec=$1 work=$2 device=${MOEC_TEST_DEVICE:-cpu}
rm -rf "$work" && mkdir -p "$work" || exit 1
# traffic RANKS EP TP MICRO_BATCH DIR [MOEC_ARGS...]: one step under forced balanced routing;
# the bytes rank 0 counted (the log's traffic line) against moec plan's prediction for the
# same layout (built and planned with MOEC_ARGS)
traffic() {
	_r=$1 _e=$2 _t=$3 _b=$4 _d=$5
	shift 5
	extra="$*"
	set -- "$_r" "$_e" "$_t" "$_b" "$_d"
	# shellcheck disable=SC2086 # extra: whole --set words, no spaces inside
	build_layout "$moec" "$work/$5" "$1" "$2" "$4" "$3" $extra
	(
		cd "$work" || exit 1
		MOERT_TEST_FORCE_EXPERTS=0,4 run_ranks "$1" -x MOERT_TEST_FORCE_EXPERTS "$5/train" --device "$device" --steps 1 \
			--no-resume --ckpt-dir "ck_$5" --metrics "$5.jsonl" >"$5.out" 2>&1 || fail "$1 ranks: $(tail -5 "$5.out")"
		grep -q '"event":"device".*NCCL' "$5.jsonl" || [ "$device" = cpu ] ||
			fail "the run did not use NCCL: $(grep device "$5.jsonl")"
		counted=$(grep -o 'all-to-all [0-9]*, dp all-reduce [0-9]*, edp all-reduce [0-9]*, tp [0-9]*' "$5.jsonl" |
			tr -dc '0-9 ' | tr -s ' ')
		"$moec" plan "$OLDPWD/examples/tiny_qwen3_moe.yaml" --json --set parallel.gpus_per_node="$1" \
			--set parallel.ep="$2" --set parallel.tp="$3" --set train.micro_batch="$4" $extra >"$5.plan.json" ||
			fail "moec plan"
		predicted=
		for k in a2a_bytes dp_bytes edp_bytes tp_bytes; do
			predicted="$predicted $(grep -o "\"$k\":[0-9.e+]*" "$5.plan.json" | tail -1 | cut -d: -f2)"
		done
		echo "$1 ranks, ep $2, tp $3, recompute $recompute: counted (all-to-all, dp, edp, tp):$counted; plan:$predicted"
		# shellcheck disable=SC2086 # two lists of four numbers
		set -- $counted $predicted
		[ $# -eq 8 ] || fail "expected 4 counted and 4 predicted numbers"
		for kind in all-to-all dp edp tp; do
			awk -v a="$1" -v b="$5" 'BEGIN {exit !(a == b)}' || fail "$kind: counted $1 bytes, the plan predicts $5"
			shift
		done
	) || exit 1
}
traffic 2 2 1 2 t        # dp 2 x EP 2
traffic 4 2 2 2 t4       # dp 2 x TP 2, EP 2 x edp 2: the tp activations, the tp-partial gradients
traffic 4 2 2 2 z4 --set parallel.shard_optimizer=true # the same, AdamW sharded: the weights all-gathered
traffic 4 2 1 1 zb --set parallel.shard_optimizer=true --set train.precision=bf16 # bf16 copies, fp32 norms
# full recompute: each MoE layer's dispatch and combine again, each attention all-reduce again
traffic 4 2 2 2 t4full --set train.recompute=full
cd "$work" || exit 1
# started without its launcher, the 2-rank trainer says how it was built and how to start it
t/train --steps 1 --no-resume --ckpt-dir ck2 >alone.out 2>&1 && fail "a 2-rank trainer ran as one rank"
grep -q "built for 2 ranks.*started as 1.*mpirun -np 2" alone.out || fail "world-size mismatch message: $(cat alone.out)"
echo "ok: $(cat alone.out)"
# started torchrun-style on the CPU (no driver here, or --device cpu), it says how to start
# CPU ranks instead: torchrun-style ranks talk over NCCL
tr="RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29555"
env $tr t/train --device cpu --steps 1 --no-resume --ckpt-dir ck3 >torchrun.out 2>&1 &&
	fail "a 2-rank trainer ran on the CPU under a torchrun-style environment"
grep -q "torchrun-style.*NCCL.*CPU.*mpirun -np 2" torchrun.out || fail "torchrun message: $(cat torchrun.out)"
echo "ok: $(cat torchrun.out)"
# an incomplete torchrun-style environment names what is missing
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29555 t/train --device cpu --steps 1 --no-resume --ckpt-dir ck3 \
	>torchrun2.out 2>&1 && fail "a 2-rank trainer ran without LOCAL_RANK"
grep -q "torchrun-style.*LOCAL_WORLD_SIZE is not set" torchrun2.out || fail "torchrun message: $(cat torchrun2.out)"
# torchrun-style with the wrong world size names both numbers
RANK=0 WORLD_SIZE=4 LOCAL_RANK=0 LOCAL_WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 MASTER_PORT=29555 t/train --device cpu \
	--steps 1 --no-resume --ckpt-dir ck3 >torchrun3.out 2>&1 && fail "a 2-rank trainer ran as 4 torchrun-style ranks"
grep -q "built for 2 ranks.*WORLD_SIZE=4" torchrun3.out || fail "torchrun world message: $(cat torchrun3.out)"
echo PASS

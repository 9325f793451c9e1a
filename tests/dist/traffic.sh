#!/bin/sh
# traffic.sh MOEC WORK - the bytes rank 0 sends in one step equal what `moec plan` predicts
# for the layout: the gradient all-reduces exactly, and the all-to-alls when routing is
# balanced as the plan assumes (every token forced to experts 0 and 4: one row to each of
# the 2 EP ranks). MOEC_TEST_DEVICE=cuda: on GPUs over NCCL (tests/emu's emulator here).
. "$(dirname "$0")/lib.sh"
moec=$1 work=$2 device=${MOEC_TEST_DEVICE:-cpu}
rm -rf "$work" && mkdir -p "$work" || exit 1
build_layout "$moec" "$work/t" 2 2 2
cd "$work" || exit 1
MOERT_TEST_FORCE_EXPERTS=0,4 run_ranks 2 -x MOERT_TEST_FORCE_EXPERTS t/train --device "$device" --steps 1 --no-resume \
	--ckpt-dir ck --metrics m.jsonl >out.txt 2>&1 || fail "2 ranks: $(tail -5 out.txt)"
grep -q '"event":"device".*NCCL' m.jsonl || [ "$device" = cpu ] || fail "the run did not use NCCL: $(grep device m.jsonl)"
counted=$(grep -o 'all-to-all [0-9]*, dp all-reduce [0-9]*, edp all-reduce [0-9]*' m.jsonl | tr -dc '0-9 ' | tr -s ' ')
set -- $counted
a2a=$1 dp=$2 edp=$3
"$moec" plan "$OLDPWD/examples/tiny_qwen3_moe.yaml" --json --set parallel.gpus_per_node=2 --set parallel.ep=2 \
	--set train.micro_batch=2 >plan.json || fail "moec plan"
plan() { grep -o "\"$1\":[0-9.e+]*" plan.json | tail -1 | cut -d: -f2; }
echo "counted: all-to-all $a2a, dp $dp, edp $edp; plan: $(plan a2a_bytes), $(plan dp_bytes), $(plan edp_bytes)"
for pair in "$a2a $(plan a2a_bytes)" "$dp $(plan dp_bytes)" "$edp $(plan edp_bytes)"; do
	set -- $pair
	awk -v a="$1" -v b="$2" 'BEGIN {exit !(a == b)}' || fail "counted $1 bytes, the plan predicts $2"
done
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

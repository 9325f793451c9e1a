#!/bin/sh
# zero.sh MOEC WORK RANKS EP TP PRECISION [RANKS2 EP2] - parallel.shard_optimizer (ZeRO-1)
# against the same layout unsharded, on RANKS CPU ranks (MOEC_TEST_DEVICE=cuda: GPUs over
# NCCL, tests/emu's emulator here):
#   - four optimizer steps: every loss and gradient norm, and the step-4 checkpoint's weights
#     and AdamW moments, bit for bit the unsharded run's (the gradients are all-reduced whole
#     and the norm computed as without sharding; AdamW is element-wise, so which rank updates
#     an element cannot change it);
#   - a sharded run's step-2 checkpoint resumed unsharded, and an unsharded one resumed
#     sharded, reach the uninterrupted runs' step-4 checkpoints bit for bit;
#   - with RANKS2 EP2: the sharded step-2 checkpoint resumed sharded on that other layout
#     (another dp) follows the uninterrupted losses to 1e-5 (its sums run in another order).
. "$(dirname "$0")/lib.sh"
moec=$1 work=$2 ranks=$3 ep=$4 tp=$5 precision=$6 ranks2=$7 ep2=$8
device=${MOEC_TEST_DEVICE:-cpu}
rm -rf "$work" && mkdir -p "$work" || exit 1
micro=$((4 * tp / ranks))
for sh in false true; do
	build_layout "$moec" "$work/$sh" "$ranks" "$ep" "$micro" "$tp" --set parallel.shard_optimizer=$sh \
		--set train.precision="$precision"
done
grep -q 'shard_optimizer = 1' "$work/true/gen/model.c" || fail "the sharded build does not shard"
[ -z "$ranks2" ] || build_layout "$moec" "$work/other" "$ranks2" "$ep2" $((4 / ranks2)) 1 \
	--set parallel.shard_optimizer=true --set train.precision="$precision"
cd "$work" || exit 1

# data_sum FILE: checksum of a safetensors file's tensor bytes (its header holds the build's
# spec hash, which differs between the two builds)
data_sum() {
	h=$(od -An -t u8 -N8 "$1" | tr -d ' ')
	tail -c +$((h + 9)) "$1" | cksum
}
# same_ckpt A B: the two checkpoint directories hold the same weights and AdamW moments
same_ckpt() {
	for f in model optimizer; do
		[ "$(data_sum "$1/$f.safetensors")" = "$(data_sum "$2/$f.safetensors")" ] ||
			fail "$f.safetensors of $1 and $2 differ"
	done
}
# train NAME BUILD CKPT: four steps, checkpoints at 2 and 4, resuming from CKPT if it has one
train() {
	run_ranks "$ranks" "$2/train" --device "$device" --steps 4 --save-every 2 --ckpt-dir "$3" --metrics "$1.jsonl" \
		>"$1.out" 2>&1 || fail "$1 ($ranks ranks, ep $ep, tp $tp, $precision, $device): $(tail -5 "$1.out")"
	grep -q '"event":"device".*NCCL' "$1.jsonl" || [ "$device" = cpu ] || fail "$1 did not use NCCL"
}

train plain false plain
train sharded true sharded
grep -q '"event":"zero".*AdamW sharded' sharded.jsonl || fail "the sharded run did not shard: $(head -3 sharded.out)"
grep -q '"event":"zero"' plain.jsonl && fail "the unsharded run sharded"
echo "$(grep -o 'this rank.s moments are [^(]*' sharded.out | head -1)"
# a bf16 step shards its fp32 masters too, keeping only the norms whole in fp32
[ "$precision" = fp32 ] || grep -q '"event":"zero".*fp32 masters sharded' sharded.jsonl ||
	fail "the bf16 run did not shard its masters"
for s in 1 2 3 4; do
	for k in loss grad_norm; do
		a=$(metric plain.jsonl $s $k) b=$(metric sharded.jsonl $s $k)
		[ -n "$a" ] && [ "$a" = "$b" ] || fail "step $s $k: unsharded $a, sharded $b"
	done
	echo "step $s: loss $(metric plain.jsonl $s loss), grad norm $(metric plain.jsonl $s grad_norm) in both"
done
same_ckpt plain/step_00000004 sharded/step_00000004
echo "step 4 checkpoints: the same weights and moments"

# across: each run's step-2 checkpoint, resumed by the other build
mkdir -p s2p p2s && cp -r sharded/step_00000002 s2p/ && cp -r plain/step_00000002 p2s/
train s2p false s2p
train p2s true p2s
grep -q "resumed from s2p/step_00000002" s2p.out || fail "the unsharded run did not resume: $(head -3 s2p.out)"
grep -q "resumed from p2s/step_00000002" p2s.out || fail "the sharded run did not resume: $(head -3 p2s.out)"
same_ckpt s2p/step_00000004 plain/step_00000004
same_ckpt p2s/step_00000004 sharded/step_00000004
echo "sharded -> unsharded and unsharded -> sharded resumes: the uninterrupted step 4 exactly"

if [ -n "$ranks2" ]; then
	mkdir -p other_ck && cp -r sharded/step_00000002 other_ck/
	ranks=$ranks2
	train other other other_ck
	grep -q "resumed from other_ck/step_00000002" other.out || fail "$ranks2 ranks did not resume"
	for s in 3 4; do
		a=$(metric other.jsonl $s loss) b=$(metric sharded.jsonl $s loss)
		awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b)}' ||
			fail "step $s: resumed on $ranks2 ranks (ep $ep2) $a, uninterrupted $b"
		echo "step $s: resumed sharded on $ranks2 ranks (ep $ep2) $a, uninterrupted $b"
	done
fi
echo PASS

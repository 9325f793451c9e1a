#!/bin/sh
# bad_inputs.sh MOEC TRAIN MAKE_SHARD WORK - bad data, checkpoints and weights each stop the
# trainer with exit status 1 and a message naming the file; NaN/Inf stops it naming the step.
. "$(dirname "$0")/lib.sh"
moec=$1 train=$2 make_shard=$3 work=$4
src=$(pwd)
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1

# expect_error WHAT PATTERN CMD...: CMD exits 1 and its stderr matches PATTERN (grep -E)
expect_error() {
	what=$1 pattern=$2
	shift 2
	"$@" >out.txt 2>err.txt
	rc=$?
	[ $rc -eq 1 ] || fail "$what: exit status $rc, expected 1; stderr: $(cat err.txt)"
	grep -Eq "$pattern" err.txt || fail "$what: stderr does not match '$pattern': $(cat err.txt)"
	echo "ok: $what: $(head -1 err.txt)"
}

toks=$(seq 1 600 | awk '{printf "%d ", $1 % 500}')
"$make_shard" bad_magic.bin 20240521 1 $toks
expect_error "wrong magic" "bad_magic.bin" "$train" --data bad_magic.bin --steps 1 --ckpt-dir c0
"$make_shard" big_token.bin 20240520 1 $toks 600
expect_error "token >= vocab" "big_token.bin.*(600|vocab)" "$train" --data big_token.bin --steps 1 --ckpt-dir c1
printf 'short' >short.bin
expect_error "truncated shard" "short.bin" "$train" --data short.bin --steps 1 --ckpt-dir c2

# a good checkpoint, then damaged copies of it
"$train" --quiet --steps 2 --ckpt-dir good --metrics good.jsonl || fail "training 2 steps"
ck=good/step_00000002
mkdir trunc && cp -r $ck trunc/ && truncate -s -100 trunc/step_00000002/model.safetensors
expect_error "truncated checkpoint" "model.safetensors" "$train" --steps 3 --ckpt-dir trunc
mkdir corrupt && cp -r $ck corrupt/ && printf 'X' | dd of=corrupt/step_00000002/model.safetensors bs=1 seek=20 conv=notrunc 2>/dev/null
expect_error "corrupted checkpoint header" "model.safetensors" "$train" --steps 3 --ckpt-dir corrupt
expect_error "corrupted --init-from" "model.safetensors" "$train" --steps 1 --ckpt-dir c3 --init-from corrupt/step_00000002

# a checkpoint of another model (4 experts instead of 8)
"$moec" build "$src/examples/tiny_qwen3_moe.yaml" --set moe.num_experts=4 -o other >/dev/null || fail "building the 4-expert trainer"
expect_error "checkpoint of another model" "good/step_00000002/optimizer.safetensors.*another model" \
	other/train --steps 3 --ckpt-dir good

# the benchmarks' router-bias hook: a malformed value names the variable; a +8 bias on
# experts 0-1 (of 8, top-2) sends every token there
expect_error "router bias without a value" "MOERT_ROUTER_BIAS='0-1'" env MOERT_ROUTER_BIAS=0-1 "$train" --steps 1 --ckpt-dir c5
MOERT_ROUTER_BIAS=0-1:8 "$train" --steps 1 --no-save --ckpt-dir c6 --metrics c6.jsonl >/dev/null || fail "MOERT_ROUTER_BIAS=0-1:8"
grep -q '"expert_counts":\[\[[0-9]*,[0-9]*,0,0,0,0,0,0\]' c6.jsonl || fail "the bias did not skew the routing: $(grep expert_counts c6.jsonl | cut -c1-300)"

# a learning rate that blows the weights up: stopped at the step, naming a tensor
expect_error "non-finite loss" "step [0-9]+: non-finite .*first non-finite (weight|gradient): model\." \
	"$train" --steps 5 --lr 1e30 --ckpt-dir c4 --metrics c4.jsonl
echo PASS

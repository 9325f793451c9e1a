#!/bin/sh
# bf16.sh MOEC REF_DIR WORK - a bf16 step on 2 ranks with TP 2 and EP 2 (tp sums of bf16
# activations in fp32, rows moved as bytes) trains along the one-rank fp32 trajectory:
# every tenth step's loss within 1% (per-tensor bounds do not hold in bf16, see
# tests/train/bf16.sh).
. "$(dirname "$0")/lib.sh"
moec=$1 ref=$2 work=$3
rm -rf "$work" && mkdir -p "$work" || exit 1
"$moec" build examples/tiny_qwen3_moe.yaml -o "$work/t" --set train.precision=bf16 --set parallel.gpus_per_node=2 \
	--set parallel.tp=2 --set parallel.ep=2 >"$work/build.log" 2>&1 || fail "moec build: $(tail -3 "$work/build.log")"
within_plan "$work/build.log"
cd "$work" || exit 1
run_ranks 2 t/train --quiet --steps 30 --no-resume --no-save --metrics bf16.jsonl >out.txt 2>&1 ||
	fail "bf16 on 2 ranks: $(tail -5 out.txt)"
"$ref/one/train" --quiet --steps 30 --no-resume --no-save --metrics f32.jsonl || fail "fp32 reference"
for s in 1 10 20 30; do
	a=$(metric bf16.jsonl $s loss) b=$(metric f32.jsonl $s loss)
	echo "step $s: bf16 TP 2 x EP 2 $a, fp32 one rank $b"
	awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * b)}' || fail "step $s: not within 1%"
done
echo PASS

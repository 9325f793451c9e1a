#!/bin/sh
# converges.sh TRAIN ENTROPY WORK - the tiny example trains with the spec's defaults (200
# steps on the bundled Tiny Shakespeare shard): the cross-entropy of the last 10 steps falls
# well below the data's unigram entropy, and every step records per-layer expert counts.
. "$(dirname "$0")/lib.sh"
train=$1 entropy=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
h=$("$entropy" 512 511 "$OLDPWD/data/tiny_shakespeare_train.bin") || fail "unigram entropy"
"$train" --quiet --metrics m.jsonl || fail "training exited $?"
steps=$(grep -c '^{"step"' m.jsonl)
[ "$steps" -eq 200 ] || fail "$steps step records, expected 200"
ce=$(grep '^{"step"' m.jsonl | tail -10 | sed 's/.*"ce_loss":\([^,]*\).*/\1/' | awk '{s += $1} END {printf "%.4f", s / NR}')
echo "unigram entropy $h nats; cross-entropy over the last 10 steps $ce"
awk -v ce="$ce" -v h="$h" 'BEGIN {exit !(ce < h - 0.5)}' || fail "loss $ce is not well below the unigram entropy $h"
# 2 MoE layers x 8 experts, and each layer's counts sum to tokens x top-k = 1024 x 2
grep '^{"step"' m.jsonl | sed 's/.*"expert_counts":\[\[\(.*\)\]\]}/\1/' | awk -F'\\],\\[' '
	{ if (NF != 2) { print "FAIL: " NF " layers of expert counts"; exit 1 }
	  for (l = 1; l <= NF; l++) { n = split($l, c, ","); s = 0; for (i = 1; i <= n; i++) s += c[i];
	    if (n != 8 || s != 2048) { print "FAIL: layer " l ": " n " experts, " s " routed rows"; exit 1 } } }' || exit 1
for key in aux_loss z_loss expert_utilization load_imbalance tokens_per_s grad_norm lr; do
	[ -n "$(metric m.jsonl 200 $key)" ] || fail "no $key in the step record"
done
echo PASS

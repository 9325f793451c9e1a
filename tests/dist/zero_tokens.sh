#!/bin/sh
# zero_tokens.sh MOEC COMPARE REF_DIR WORK - 4 ranks, EP 4, every token forced to experts 0
# and 1 (both on EP rank 0): ranks 1-3 get no rows, yet every rank issues every collective
# (a skipped one would hang: the test has a timeout) and the step equals one rank's.
. "$(dirname "$0")/lib.sh"
moec=$1 compare=$2 ref=$3 work=$4
rm -rf "$work" && mkdir -p "$work" || exit 1
build_layout "$moec" "$work/t" 4 4 1
cd "$work" || exit 1
MOERT_TEST_FORCE_EXPERTS=0,1 run_ranks 4 -x MOERT_TEST_FORCE_EXPERTS t/train --steps 1 --no-resume --ckpt-dir ck \
	--metrics m.jsonl --dump dump.safetensors >out.txt 2>&1 || fail "forced routing: $(tail -5 out.txt)"
grep -q '"expert_counts":\[\[1024,1024,0,0,0,0,0,0\],\[1024,1024,0,0,0,0,0,0\]\]' m.jsonl ||
	fail "expected all 1024 tokens on experts 0 and 1: $(grep -o '"expert_counts":.*' m.jsonl)"
"$compare" dump.safetensors "$ref/ref_forced.safetensors" "$(metric m.jsonl 1 lr)" --no-logits || fail "differs from one rank"
echo PASS

#!/bin/sh
# profile.sh TRAIN WORK - train --profile: the per-kernel table covers the steps after the
# first (warm-up) when more follow, lists kernels with their call counts per step, and the
# MoE layers' line; a one-step run keeps its only step.
. "$(dirname "$0")/lib.sh"
train=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
"$train" --steps 3 --device cpu --no-resume --no-save --profile --ckpt-dir c >out.txt 2>&1 || fail "train --profile: $(tail -3 out.txt)"
grep -q "^profile over 2 steps (per kernel; each call timed on its own; the run's first step, warm-up, not counted):" out.txt ||
	fail "the title should say 2 steps, warm-up not counted: $(grep '^profile' out.txt)"
grep -q "^  moe_gate_up_fwd" out.txt || fail "no moe_gate_up_fwd row: $(cat out.txt)"
grep -q "MoE layer (router_\* and moe_\* kernels, forward + backward): [0-9.]* ms per layer per step" out.txt ||
	fail "no MoE layer line"
# the calls column counts the counted steps' calls: embedding_fwd runs once per micro-batch,
# so 2 here (3 if the warm-up step were kept)
calls2=$(awk '$1 ~ /^embedding_fwd/ {print $2}' out.txt)
[ "$calls2" = 2 ] || fail "embedding_fwd calls over 2 counted steps: want 2 (one micro-batch per step), got '$calls2'"
"$train" --steps 1 --device cpu --no-resume --no-save --profile --ckpt-dir c >one.txt 2>&1 || fail "one step: $(tail -3 one.txt)"
grep -q "^profile over 1 step (per kernel; each call timed on its own):" one.txt || fail "one step: $(grep '^profile' one.txt)"
echo PASS

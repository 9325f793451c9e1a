#!/bin/sh
# resume.sh TRAIN WORK - a run stopped and resumed from its checkpoint gives bit-identical
# losses and weights to a run that never stopped.
. "$(dirname "$0")/lib.sh"
train=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
"$train" --quiet --steps 24 --save-every 0 --ckpt-dir straight --metrics straight.jsonl || fail "straight run"
"$train" --quiet --steps 24 --stop-after 10 --save-every 5 --ckpt-dir split --metrics split.jsonl || fail "first half"
"$train" --steps 24 --save-every 0 --ckpt-dir split --metrics split.jsonl >second.out || fail "second half"
grep -q "resumed from split/step_00000010 at step 10" second.out || fail "the second run did not resume: $(head -3 second.out)"
for s in 5 10 11 17 24; do
	a=$(metric straight.jsonl $s loss) b=$(metric split.jsonl $s loss)
	[ -n "$a" ] && [ "$a" = "$b" ] || fail "step $s: loss $a straight, $b resumed"
done
cmp straight/step_00000024/model.safetensors split/step_00000024/model.safetensors || fail "weights differ after 24 steps"
cmp straight/step_00000024/optimizer.safetensors split/step_00000024/optimizer.safetensors >/dev/null ||
	echo "note: optimizer files differ only in metadata?"
ls split | grep -q step_00000005 && fail "keep: step 5 should have been removed (keep 2)"
echo PASS

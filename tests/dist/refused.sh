#!/bin/sh
# refused.sh MOEC WORK - layouts the step does not cover get their kernels and a one-line
# "no trainer yet: why", never a trainer that computes something else: tensor parallelism
# over more ranks than kv heads when there are several (the tiny example has 2; tp 4 would
# share each between two ranks), and LoRA.
. "$(dirname "$0")/lib.sh"
moec=$1 work=$2
rm -rf "$work" && mkdir -p "$work" || exit 1
expect_refused() { # WHAT PATTERN ARGS...
	what=$1 pattern=$2
	shift 2
	"$moec" build examples/tiny_qwen3_moe.yaml -o "$work/t" "$@" >"$work/out.txt" 2>&1 ||
		fail "$what: moec build failed: $(tail -3 "$work/out.txt")"
	grep -q "no trainer yet: .*$pattern" "$work/out.txt" || fail "$what: no refusal: $(tail -3 "$work/out.txt")"
	[ ! -e "$work/t/train" ] || fail "$what: a trainer was linked"
	echo "ok: $what: $(grep 'no trainer yet' "$work/out.txt")"
	rm -rf "$work/t"
}
expect_refused "tp 4 over 2 kv heads" "more ranks than kv heads" --set parallel.gpus_per_node=4 --set parallel.tp=4
expect_refused "LoRA" "LoRA" --set train.mode=lora
echo PASS

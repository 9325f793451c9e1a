#!/bin/sh
# golden.sh MOEC COMPARE CFG WORK RANKS TP EP - the HF transformers golden step (tests/golden)
# on RANKS CPU ranks with TP tensor-parallel and EP expert-parallel ranks (one data-parallel
# rank, so every rank takes the golden batch): loss, every gradient and every updated
# weight must match what transformers computed, as on one rank.
. "$(dirname "$0")/lib.sh"
moec=$1 compare=$2 cfg=$3 work=$4 ranks=$5 tp=$6 ep=$7
rm -rf "$work" && mkdir -p "$work" || exit 1
"$moec" build "$cfg/spec.yaml" -o "$work/t" --set parallel.gpus_per_node="$ranks" --set parallel.tp="$tp" \
	--set parallel.ep="$ep" >"$work/build.log" 2>&1 || fail "moec build: $(tail -3 "$work/build.log")"
within_plan "$work/build.log"
lr=$(sed -n 's/^  lr: *\([0-9.e+-]*\).*/\1/p' "$cfg/spec.yaml")
run_ranks "$ranks" "$work/t/train" --init-from "$cfg" --batch "$cfg/golden.safetensors" --dump "$work/dump.safetensors" \
	--metrics "$work/m.jsonl" >"$work/out.txt" 2>&1 || fail "$ranks ranks: $(tail -5 "$work/out.txt")"
"$compare" "$work/dump.safetensors" "$cfg/golden.safetensors" "$lr" --no-logits || fail "differs from transformers"
echo PASS

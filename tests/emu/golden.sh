#!/bin/sh
# golden.sh MOEC COMPARE CONFIG_DIR EMU_LIB OUT - tests/golden's HF golden test of one config
# (run_golden.sh) with the step on an emulated GPU: the trainer built with
# MOEC_TRAIN_CFLAGS=-DMOEC_EMU_LAUNCH, initialized from the HF weights (--init-from), one step
# on the golden batch with --device cuda, every dumped tensor against transformers'
# (golden_compare's tolerances). Config b's dense layer and one kv head take kernels and
# GEMM shapes the tiny example does not.
. "$(dirname "$0")/../train/lib.sh"
moec=$1 compare=$2 cfg=$3 emu=$4 out=$5
rm -rf "$out" && mkdir -p "$out" || exit 1
MOEC_TRAIN_CFLAGS=-DMOEC_EMU_LAUNCH "$moec" build "$cfg/spec.yaml" -o "$out/t" >"$out/build.log" 2>&1 ||
	fail "moec build: $(tail -5 "$out/build.log")"
lr=$(sed -n 's/^  lr: *\([0-9.e+-]*\).*/\1/p' "$cfg/spec.yaml")
LD_LIBRARY_PATH="$emu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$out/t/train" --init-from "$cfg" \
	--batch "$cfg/golden.safetensors" --dump "$out/dump.safetensors" --metrics "$out/metrics.jsonl" --device cuda \
	>"$out/out.txt" 2>&1 || fail "the step on the emulated GPU: $(tail -5 "$out/out.txt")"
grep -q "device: moec device emulator" "$out/out.txt" || fail "not on the emulator: $(head -3 "$out/out.txt")"
"$compare" "$out/dump.safetensors" "$cfg/golden.safetensors" "$lr" || fail "the emulated GPU step differs from transformers'"
echo PASS

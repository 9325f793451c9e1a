#!/bin/sh
# run_golden.sh MOEC COMPARE CONFIG_DIR OUT [DEVICE] - the HF golden test of one config: build
# the trainer for CONFIG_DIR/spec.yaml, initialize it from CONFIG_DIR (the HF weights), train
# one step on the golden batch on DEVICE (cpu, or cuda: exit 77 where there is no GPU), dump
# everything, and compare with CONFIG_DIR/golden.safetensors.
set -e
moec=$1 compare=$2 cfg=$3 out=$4 device=${5:-cpu}
# no driver where the loader would look (its cache, or LD_LIBRARY_PATH as containers
# often have it): skip before building; a driver without a device skips below
has_driver() {
	ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1' && return 0
	for d in $(echo "${LD_LIBRARY_PATH:-}" | tr ':' ' '); do
		[ -e "$d/libcuda.so.1" ] && return 0
	done
	return 1
}
if [ "$device" = cuda ] && ! has_driver; then
	echo "SKIP: no CUDA driver (libcuda.so.1 is neither in the loader cache nor on LD_LIBRARY_PATH)"
	exit 77
fi
rm -rf "$out"
"$moec" build "$cfg/spec.yaml" -o "$out"
lr=$(sed -n 's/^  lr: *\([0-9.e+-]*\).*/\1/p' "$cfg/spec.yaml")
if ! "$out/train" --init-from "$cfg" --batch "$cfg/golden.safetensors" --dump "$out/dump.safetensors" \
	--metrics "$out/metrics.jsonl" --device "$device" 2>"$out/err.txt"; then
	cat "$out/err.txt"
	grep -q "no CUDA driver\|no CUDA device" "$out/err.txt" && exit 77
	exit 1
fi
"$compare" "$out/dump.safetensors" "$cfg/golden.safetensors" "$lr"

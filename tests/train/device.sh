#!/bin/sh
# device.sh TRAIN WORK - without a CUDA driver the trainer still starts and trains on the
# CPU (--device auto), and --device cuda fails with a message saying there is no driver.
# Where a driver exists this test has nothing to check (exit 77: skipped); the gpu tests run.
. "$(dirname "$0")/lib.sh"
train=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
if "$train" --steps 1 --device cuda --no-resume --ckpt-dir c >out.txt 2>err.txt; then
	echo "SKIP: a CUDA driver is present; the gpu-labelled tests cover --device cuda"
	exit 77
fi
grep -q "no CUDA driver" err.txt || {
	grep -q "dlopen libcuda.so.1" err.txt || fail "--device cuda without a driver: $(cat err.txt)"
}
echo "ok: $(cat err.txt)"
"$train" --steps 2 --device auto --no-resume --ckpt-dir c --metrics m.jsonl >out.txt 2>&1 || fail "--device auto: $(tail -3 out.txt)"
grep -q "device: cpu" out.txt || fail "--device auto did not pick the CPU: $(head -3 out.txt)"
echo PASS

#!/bin/sh
# tiny_step.sh MOEC COMPARE EMU_LIB WORK [fp32|bf16] - the tiny example's CUDA step on the
# device emulator against its CPU step (README.md here). The trainer is built with
# MOEC_TRAIN_CFLAGS=-DMOEC_EMU_LAUNCH, so the CUDA step's kernels run as their CPU twins on
# emulated device memory while everything else is the CUDA backend's own host code: the
# arenas, copies, statistics, AdamW's device tables, and every GEMM through device_cuda.c's
# row-major to cuBLASLt mapping into the emulated cuBLASLt. Checked: one step's dump (loss,
# logits, every gradient, every weight after AdamW) within golden_compare's TOL relative to
# the CPU step's; five steps' losses; a checkpoint saved on the emulated GPU resumed on the
# CPU, and one saved on the CPU resumed on the emulated GPU, along the CPU's own trajectory.
. "$(dirname "$0")/../train/lib.sh"
moec=$1 compare=$2 emu=$3 work=$4 precision=${5:-fp32}
case $precision in
fp32) tol=1e-6 ;;
bf16) tol=1e-4 ;; # the same GEMMs and twins, so it agrees as closely; a little room for rounding
*) fail "precision $precision: fp32 or bf16" ;;
esac
rm -rf "$work" && mkdir -p "$work" || exit 1
MOEC_TRAIN_CFLAGS=-DMOEC_EMU_LAUNCH "$moec" build examples/tiny_qwen3_moe.yaml --set train.precision="$precision" \
	-o "$work/build" >"$work/build.log" 2>&1 || fail "moec build: $(tail -5 "$work/build.log")"
train=$work/build/train
cd "$work" || exit 1

# on_cpu / on_emu ARGS...: the trainer on each backend; the emulator's libraries come first
on_cpu() { "$train" --device cpu "$@"; }
on_emu() { LD_LIBRARY_PATH="$emu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$train" --device cuda "$@"; }

# within A B: |A - B| <= tol |B|
within() { awk -v a="$1" -v b="$2" -v t="$tol" 'BEGIN {d = a - b; if (d < 0) d = -d; if (b < 0) b = -b; exit !(d <= t * b)}'; }

# one step from the same weights and batch
on_cpu --quiet --steps 1 --no-resume --ckpt-dir cpu --metrics cpu.jsonl --dump cpu.safetensors || fail "CPU step"
MOERT_EMU_TRACE=1 on_emu --steps 1 --no-resume --ckpt-dir emu --metrics emu.jsonl --dump emu.safetensors \
	>emu.out 2>emu.err || fail "emulated GPU step: $(cat emu.err)"
grep -q "device: moec device emulator (host memory)" emu.out || fail "not on the emulator: $(head -3 emu.out)"
# the GEMMs went through the emulated cuBLASLt and no launch reached the driver
grep -q "libcublasLt.so.13: [1-9][0-9]* matmuls" emu.err || fail "no GEMM reached the emulated cuBLASLt: $(cat emu.err)"
grep -q " 0 launches refused" emu.err || fail "a kernel launch reached the emulated driver: $(cat emu.err)"
sed 's/^/  /' emu.err
"$compare" emu.safetensors cpu.safetensors "$(metric cpu.jsonl 1 lr)" --tol "$tol" ||
	fail "the emulated GPU step differs from the CPU step"

# five steps
on_cpu --quiet --steps 5 --no-resume --no-save --metrics cpu5.jsonl || fail "CPU run"
on_emu --quiet --steps 5 --no-resume --no-save --metrics emu5.jsonl 2>err.txt || fail "emulated GPU run: $(cat err.txt)"
for s in 1 2 3 4 5; do
	a=$(metric emu5.jsonl $s loss) b=$(metric cpu5.jsonl $s loss)
	echo "step $s: loss emulated GPU $a, CPU $b"
	[ -n "$a" ] && within "$a" "$b" || fail "step $s: loss $a on the emulated GPU, $b on the CPU"
done

# checkpoints move between the backends: saved at step 3 on one, resumed to step 5 on the other
for from in emu cpu; do
	to=$([ $from = emu ] && echo cpu || echo emu)
	on_$from --quiet --steps 5 --stop-after 3 --save-every 3 --no-resume --ckpt-dir $from-$to \
		--metrics $from-$to.jsonl 2>err.txt || fail "first half on $from: $(cat err.txt)"
	on_$to --steps 5 --save-every 0 --ckpt-dir $from-$to --metrics $from-$to.jsonl >resume.out 2>err.txt ||
		fail "second half on $to: $(cat err.txt)"
	grep -q "resumed from $from-$to/step_00000003 at step 3" resume.out ||
		fail "$to did not resume $from's checkpoint: $(head -3 resume.out)"
	for s in 4 5; do
		a=$(metric $from-$to.jsonl $s loss) b=$(metric cpu5.jsonl $s loss)
		[ -n "$a" ] && within "$a" "$b" || fail "step $s after $from -> $to: loss $a, $b without a restart"
	done
	echo "saved on $from, resumed on $to: steps 4-5 along the CPU's losses"
done
echo PASS

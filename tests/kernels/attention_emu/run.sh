#!/bin/sh
# run.sh - checks the attention templates (attention_fwd, attention_bwd_pre, attention_bwd)
# without a GPU: transform.py strips the inline-PTX helpers of each template (emu.h supplies
# CPU versions: ldmatrix, mma.m16n8k16 bf16, cp.async deferred to its wait, shuffles), every
# thread runs as a fiber (emu_rt.cpp), and driver.c compares each instance with its CPU twin
# on nine token / document layouts. Not part of ctest (C++, fibers; a few minutes); run by
# hand after touching one of those templates:
#   tests/kernels/attention_emu/run.sh [quick]     (quick: five layouts per configuration)
set -e
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
E="$ROOT/tests/kernels/attention_emu"
B=${TMPDIR:-/tmp}/attention_emu
mkdir -p "$B"
for t in attention_fwd attention_bwd attention_bwd_pre; do
	python3 "$E/transform.py" "$ROOT/kernels/$t.cu" "$B/${t}_emu.h"
done
OPENBLAS_CFLAGS=$(pkg-config --cflags openblas 2>/dev/null || true)

# config NAME ACT_BF16 NH NKV HD FWD_BLOCK_M FWD_BLOCK_N BWD_BLOCK_M BWD_BLOCK_N
config() {
	n=$1 act=$2 nh=$3 nkv=$4 hd=$5 fbm=$6 fbn=$7 bbm=$8 bbn=$9
	d="$B/$n"
	mkdir -p "$d"
	C="-O2 -g -DACT_BF16=$act -DNH=$nh -DNKV=$nkv -DHD=$hd"
	X="g++ -std=c++17 $C -fno-strict-aliasing -I$B -I$E"
	$X -c "$E/emu_rt.cpp" -o "$d/rt.o"
	$X -DTEMPLATE_H='"attention_fwd_emu.h"' -DKNAME=k_fwd -DLAUNCHER=launch_fwd -DKIND=0 -DBLOCK_M=$fbm -DBLOCK_N=$fbn \
		-c "$E/kern_emu.cpp" -o "$d/fwd.o"
	$X -DTEMPLATE_H='"attention_bwd_pre_emu.h"' -DKNAME=k_pre -DLAUNCHER=launch_pre -DKIND=1 -c "$E/kern_emu.cpp" -o "$d/pre.o"
	$X -DTEMPLATE_H='"attention_bwd_emu.h"' -DKNAME=k_bwd -DLAUNCHER=launch_bwd -DKIND=2 -DBLOCK_M=$bbm -DBLOCK_N=$bbn \
		-c "$E/kern_emu.cpp" -o "$d/bwd.o"
	K="$ROOT/kernels"
	cc -std=gnu11 $C -I"$K/cpu" $OPENBLAS_CFLAGS -DMOEC_KERNEL_CPU=twin_fwd -c "$K/cpu/attention_fwd.c" -o "$d/tf.o"
	cc -std=gnu11 $C -I"$K/cpu" -DMOEC_KERNEL_CPU=twin_pre -c "$K/cpu/attention_bwd_pre.c" -o "$d/tp.o"
	cc -std=gnu11 $C -I"$K/cpu" $OPENBLAS_CFLAGS -DMOEC_KERNEL_CPU=twin_bwd -c "$K/cpu/attention_bwd.c" -o "$d/tb.o"
	cc -std=gnu11 $C -DFBM=$fbm -DFBN=$fbn -DBBM=$bbm -DBBN=$bbn -I"$K/cpu" -c "$E/driver.c" -o "$d/driver.o"
	g++ "$d"/*.o -lopenblas -lm -o "$d/run"
	if OPENBLAS_NUM_THREADS=1 "$d/run" $QUICK > "$d/log.txt" 2>&1; then
		echo "$n: $(tail -n 1 "$d/log.txt")"
	else
		grep -E "FAIL|^case|emu:" "$d/log.txt"
		echo "$n: FAILED (full log: $d/log.txt)"
		exit 1
	fi
}

QUICK=${1:-}
config tiny_f32    0 4 2 32   64  32 32 32 # the tiny example's instances
config tiny_bf16   1 4 2 32   64  64 64 64
config hd128_bf16  1 8 2 128  128 64 64 32 # the Qwen3-MoE head shape, suggested tiles
config hd128_f32   0 4 2 128  16  32 32 32
config hd64_bf16   1 8 2 64   64  64 64 64
config hd16_bf16   1 4 1 16   64  64 64 64 # GQA 4
config hd16_f32    0 4 1 16   64  32 32 64 # two keys per lane in the backward
config hd64_f32    0 8 2 64   64  32 32 32
config odd_bf16    1 4 2 32   128 32 32 64 # BLOCK_M > 2 BLOCK_N forward, BLOCK_N > BLOCK_M backward
config odd2_bf16   1 2 2 16   16  64 128 16
echo "attention_emu: all configurations passed"

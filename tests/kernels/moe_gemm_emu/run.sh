#!/bin/sh
# run.sh - checks the expert-GEMM templates (kernels/moe_*.cu) without a GPU: each is built
# as C++ against the emulator in this folder and compared with its CPU twin, for several
# tile configurations chosen so that every code path runs (ragged and empty experts, M/N/K
# tails, 1..8 warps, 2..4 stages, all three engines: mma.sync, wgmma with MOE_WGMMA=1, SIMT;
# the persistent schedule, PERSIST, on both bf16 engines). ctest runs the two default bf16
# configurations and wgmma_persist (kernels/moe_gemm_emu_*, 1-2 min each on 2 busy cores); run
# all of them by hand after touching moe_gemm.cuh, moe_wgmma.cuh or a moe_* template:
#   tests/kernels/moe_gemm_emu/run.sh        (ONLY=<configuration name> runs one)
set -e
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
B=${TMPDIR:-/tmp}/moe_gemm_emu
mkdir -p "$B"
cd "$ROOT"
T="moe_gate_up_fwd moe_down_fwd moe_down_bwd_data moe_gate_up_bwd_data moe_down_bwd_weight moe_gate_up_bwd_weight"

cfg() {
	name=$1
	shift
	if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then
		return
	fi
	echo "== $name: $*"
	objs=""
	for t in $T; do
		sed 's/extern __shared__ __align__(1024) unsigned char smem\[\];/unsigned char *smem = emu::smem;/' \
			kernels/$t.cu >"$B/$t.$name.cpp"
		g++ -std=c++17 -O1 -g -DMOEC_EMU -DMOEC_KERNEL=emu_$t "$@" -Itests/kernels/moe_gemm_emu -Ikernels \
			-c "$B/$t.$name.cpp" -o "$B/$t.$name.k.o"
		cc -std=gnu11 -O2 -DMOEC_KERNEL_CPU=twin_$t "$@" -Ikernels/cpu -c kernels/cpu/$t.c -o "$B/$t.$name.t.o"
		objs="$objs $B/$t.$name.k.o $B/$t.$name.t.o"
	done
	g++ -std=c++17 -O1 -g "$@" -Itests/kernels/moe_gemm_emu -c tests/kernels/moe_gemm_emu/driver.cpp \
		-o "$B/driver.$name.o"
	g++ -o "$B/emu.$name" $objs "$B/driver.$name.o" -lopenblas
	OPENBLAS_NUM_THREADS=1 "$B/emu.$name"
}

# bf16, the default tiles (128x256x64, 3 stages, 8 warps); N tails in H and I, K tail in I.
cfg bf16_default -DACT_BF16=1 -DE_LOCAL=4 -DH=320 -DI=200 -DTILE_M=128 -DTILE_N=256 -DTILE_K=64 -DSTAGES=3 \
	'-DCOUNTS={130,0,1,300}' -DEXTRA=5
# bf16, 128x128 (4 warps, 2x2), 2 stages.
cfg bf16_128x128 -DACT_BF16=1 -DE_LOCAL=3 -DH=136 -DI=72 -DTILE_M=128 -DTILE_N=128 -DTILE_K=64 -DSTAGES=2 \
	'-DCOUNTS={0,77,200}' -DEXTRA=0
# bf16, 256x128 (8 warps, 4x2), 4 stages, long K.
cfg bf16_256x128 -DACT_BF16=1 -DE_LOCAL=2 -DH=64 -DI=256 -DTILE_M=256 -DTILE_N=128 -DTILE_K=64 -DSTAGES=4 \
	'-DCOUNTS={513,3}' -DEXTRA=1
# bf16, 40 experts (the in-kernel tile table scans in two warp passes), most of them empty.
cfg bf16_e40 -DACT_BF16=1 -DE_LOCAL=40 -DH=64 -DI=64 -DTILE_M=128 -DTILE_N=128 -DTILE_K=64 -DSTAGES=3 \
	'-DCOUNTS={3,0,0,130,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,7,0,0,0,0,129}' -DEXTRA=2
# wgmma engine (sm_90a; moe_wgmma.cuh), the default tiles: 2 warpgroups, 128-byte-swizzled
# K-major and MN-major stages, the same ragged shapes as bf16_default.
cfg wgmma_default -DMOE_WGMMA=1 -DACT_BF16=1 -DE_LOCAL=4 -DH=320 -DI=200 -DTILE_M=128 -DTILE_N=256 -DTILE_K=64 \
	-DSTAGES=3 '-DCOUNTS={130,0,1,300}' -DEXTRA=5
# wgmma engine, 256x256 (4 warpgroups; an MN-major A of 4 blocks of 64 columns, 2 per half),
# 2 stages, 5 K tiles. (64x256 and 192x256 do not split the MN-major B loads over the CTA.)
cfg wgmma_256x256 -DMOE_WGMMA=1 -DACT_BF16=1 -DE_LOCAL=3 -DH=264 -DI=136 -DTILE_M=256 -DTILE_N=256 -DTILE_K=64 \
	-DSTAGES=2 '-DCOUNTS={0,77,300}' -DEXTRA=0
# wgmma engine, 128x256 with 4 stages (192 KB): the one-barrier schedule (moe_wgmma.cuh,
# NSTAGE >= 4: refill tile kt-2's stage, prefetch distance 2), long K (up to 10 tiles).
cfg wgmma_4stage -DMOE_WGMMA=1 -DACT_BF16=1 -DE_LOCAL=2 -DH=640 -DI=136 -DTILE_M=128 -DTILE_N=256 -DTILE_K=64 \
	-DSTAGES=4 '-DCOUNTS={200,330}' -DEXTRA=3
# wgmma engine, persistent (PERSIST=3, moe_gemm.cuh): at most 3 CTAs, each walking 2-10
# tiles and issuing its next tile's prologue before the epilogue (moe_gemm_tile): ragged
# experts, an empty one (the weight gradients skip its tiles with the next prologue in
# flight, and write zeros there when overwriting), M/N/K tails; 5 experts so that the tile
# counts are not multiples of 3.
cfg wgmma_persist -DMOE_WGMMA=1 -DACT_BF16=1 -DE_LOCAL=5 -DH=320 -DI=200 -DTILE_M=128 -DTILE_N=256 -DTILE_K=64 \
	-DSTAGES=3 -DPERSIST=3 '-DCOUNTS={130,0,1,300,70}' -DEXTRA=5
# mma.sync engine, persistent, 4 stages (PERSIST=5).
cfg bf16_persist -DACT_BF16=1 -DE_LOCAL=4 -DH=200 -DI=136 -DTILE_M=128 -DTILE_N=128 -DTILE_K=64 -DSTAGES=4 \
	-DPERSIST=5 '-DCOUNTS={0,140,3,257}' -DEXTRA=2
# fp32 SIMT, the default 64x64x16.
cfg f32_default -DACT_BF16=0 -DE_LOCAL=3 -DH=72 -DI=40 -DTILE_M=64 -DTILE_N=64 -DTILE_K=16 -DSTAGES=3 \
	'-DCOUNTS={65,0,130}' -DEXTRA=2
# fp32 SIMT, 32x64x8 (128 threads).
cfg f32_32x64 -DACT_BF16=0 -DE_LOCAL=5 -DH=24 -DI=36 -DTILE_M=32 -DTILE_N=64 -DTILE_K=8 -DSTAGES=3 \
	'-DCOUNTS={1,0,33,64,2}' -DEXTRA=3
echo "all emulator configurations passed"

#!/bin/sh
# run.sh - checks the core kernel templates (embedding, rmsnorm, rope, add, swiglu_fwd, casts,
# adamw, grad_sumsq, scale, ce_*) without a GPU: each instance below is built as C++ against the
# emulator in this folder (cuda_bf16.h) and compared with its CPU twin by driver.cpp. Not
# part of ctest (C++, fibers; ~1 minute); run by hand after touching one of those templates:
#   tests/kernels/core_emu/run.sh [name]    (name: run only the tests whose name contains it)
set -e
filter=$1
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
B=${TMPDIR:-/tmp}/core_emu
mkdir -p "$B"
cd "$ROOT"
objs=""

# inst NAME TEMPLATE [-DCONST=VALUE ...]
inst() {
	name=$1
	t=$2
	shift 2
	# __shared__ variables become statics registered for NaN poisoning before every block
	python3 - "kernels/$t.cu" "$B/$name.cpp" <<'PY'
import re, sys
out = []
for line in open(sys.argv[1]):
    out.append(line)
    m = re.match(r'^(\s*)__shared__\s+(.*?);\s*(//.*)?$', line)
    if not m:
        continue
    decl = re.sub(r'__align__\(\d+\)', '', m.group(2))
    for part in decl.split(','):
        name = re.search(r'([A-Za-z_]\w*)\s*(\[[^\]]*\])*\s*$', part).group(1)
        out.append('%sstatic emu::shared_reg emu_reg_%s(&%s, sizeof %s);\n' % (m.group(1), name, name, name))
open(sys.argv[2], 'w').write(''.join(out))
PY
	g++ -std=c++17 -O1 -g -ffp-contract=off -fsanitize=alignment -fno-sanitize-recover=alignment \
		-DMOEC_KERNEL=emu_$name "$@" -Itests/kernels/core_emu -Ikernels -c "$B/$name.cpp" -o "$B/$name.k.o"
	cc -std=gnu11 -O2 -ffp-contract=off -DMOEC_KERNEL_CPU=${name}_cpu "$@" -Ikernels/cpu -c kernels/cpu/$t.c -o "$B/$name.t.o"
	objs="$objs $B/$name.k.o $B/$name.t.o"
}

inst embedding_fwd_f32_h128 embedding_fwd -DH=128 -DACT_BF16=0
inst embedding_bwd_f32_h128 embedding_bwd -DH=128 -DACT_BF16=0
inst embedding_fwd_f32_h37 embedding_fwd -DH=37 -DACT_BF16=0
inst embedding_bwd_f32_h37 embedding_bwd -DH=37 -DACT_BF16=0
inst embedding_fwd_bf16_h64 embedding_fwd -DH=64 -DACT_BF16=1
inst embedding_bwd_bf16_h64 embedding_bwd -DH=64 -DACT_BF16=1
inst embedding_fwd_bf16_h100 embedding_fwd -DH=100 -DACT_BF16=1
inst embedding_bwd_bf16_h100 embedding_bwd -DH=100 -DACT_BF16=1
inst embedding_bwd_bf16_h2048 embedding_bwd -DH=2048 -DACT_BF16=1
for dim in 128 32 100 2048 4096; do
	inst rmsnorm_fwd_f32_dim$dim rmsnorm_fwd -DDIM=$dim -DEPS=1e-06f -DACT_BF16=0
	inst rmsnorm_bwd_f32_dim$dim rmsnorm_bwd -DDIM=$dim -DACT_BF16=0
done
for dim in 128 2048 100 4096; do
	inst rmsnorm_fwd_bf16_dim$dim rmsnorm_fwd -DDIM=$dim -DEPS=1e-06f -DACT_BF16=1
	inst rmsnorm_bwd_bf16_dim$dim rmsnorm_bwd -DDIM=$dim -DACT_BF16=1
done
inst rope_fwd_f32_hd32 rope_fwd -DHD=32 -DROPE_THETA=10000.0f -DACT_BF16=0
inst rope_bwd_f32_hd32 rope_bwd -DHD=32 -DROPE_THETA=10000.0f -DACT_BF16=0
inst rope_fwd_f32_hd6 rope_fwd -DHD=6 -DROPE_THETA=10000.0f -DACT_BF16=0
inst rope_bwd_f32_hd6 rope_bwd -DHD=6 -DROPE_THETA=10000.0f -DACT_BF16=0
inst rope_fwd_bf16_hd128 rope_fwd -DHD=128 -DROPE_THETA=1000000.0f -DACT_BF16=1
inst rope_bwd_bf16_hd128 rope_bwd -DHD=128 -DROPE_THETA=1000000.0f -DACT_BF16=1
inst add_f32 add -DACT_BF16=0
inst add_bf16 add -DACT_BF16=1
inst swiglu_fwd_f32_e4_i24 swiglu_fwd -DE_LOCAL=4 -DI=24 -DACT_BF16=0
inst swiglu_fwd_bf16_e1_i40 swiglu_fwd -DE_LOCAL=1 -DI=40 -DACT_BF16=1
inst cast_f32_bf16 cast_f32_bf16
inst cast_bf16_f32 cast_bf16_f32
inst adamw adamw
inst grad_sumsq grad_sumsq
inst scale scale
inst ce_chunk_fwd_v500 ce_chunk_fwd -DV=500
inst ce_finish_v500 ce_finish -DV=500
inst ce_chunk_bwd_f32_v500 ce_chunk_bwd -DV=500 -DACT_BF16=0
inst ce_chunk_bwd_bf16_v500 ce_chunk_bwd -DV=500 -DACT_BF16=1

g++ -std=c++17 -O1 -g -ffp-contract=off -fsanitize=alignment -Itests/kernels/core_emu tests/kernels/core_emu/driver.cpp $objs -lm \
	-o "$B/driver"
"$B/driver" $filter

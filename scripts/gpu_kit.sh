#!/usr/bin/env bash
# gpu_kit.sh - build, on a machine without a GPU, everything a GPU session runs, into one
# directory small enough to travel with the working tree (under 60 MiB):
#
#   scripts/gpu_kit.sh              # -> build/gpu_kit (then: bash bench/gpu_session.sh build/gpu_kit tests)
#
# The GPU machine has the driver, CUDA 13, NCCL and python3 with torch + transformers, but
# not moec's build dependencies (libyaml, libclang, OpenBLAS, Open MPI), so nothing is
# compiled there: the kit holds linked programs and the shared libraries they need.
#
#   tiny/train            examples/tiny_qwen3_moe.yaml, fp32   train/gpu_vs_cpu, resume on the GPU
#   tiny_bf16/train       the same, train.precision=bf16       train/gpu_bf16
#   golden_a/train        tests/golden/a/spec.yaml             golden/a_gpu
#   golden_b/train        tests/golden/b/spec.yaml             golden/b_gpu
#   kvt/NAME/             kernel_vs_twin with the twins linked in, and the build it checks
#                         (manifest.json, gen/launch.h, cubin/): gpu/kernels_NAME for
#                         NAME = f32, bf16, capacity, capacity_late, ep (bf16 over 2 expert-parallel
#                         GPUs: ep_regroup; tests/gpu/run.sh build), and
#                         qwen30b: bench/specs/qwen3_30b_a3b_4layers.yaml (bf16, the real shapes;
#                         gpu_session.sh runs it with --max-rows); with ARCH sm_90a also
#                         bf16_sm90 and qwen30b_sm90, the same builds for plain sm_90: the expert
#                         GEMMs on the mma.sync engine instead of wgmma (kernels/moe_gemm.cuh),
#                         so one session checks both engines; and for tuning (gpu_session.sh
#                         part tune: kernel_vs_twin --time on each), qwen30b built with other
#                         tile constants (moec build --kernel-const): qwen30b_st4 (wgmma,
#                         'moe_*:STAGES=4': 192 KiB of stages, one barrier per K tile),
#                         qwen30b_persist and qwen30b_persist_st4 (wgmma, 'moe_*:PERSIST=132':
#                         132 persistent CTAs, each tile's first stages loaded during the
#                         previous tile's epilogue; kernels/moe_gemm.cuh), and
#                         qwen30b_sm90_tn128 (mma.sync, 'moe_*:TILE_N=128': half-width tiles,
#                         128 threads and 96 KiB, so two CTAs fit an SM; moe_down_bwd_data's
#                         N = I = 768 gets 6 n-tiles instead of 3). wgmma's TILE_N is fixed at
#                         256 (m64n256k16) and its TILE_M at 128 (256 spills at 512 threads, 64
#                         breaks the loader's swizzle phase): STAGES is its only knob
#   bench/bT/train        bench/specs/qwen3_30b_a3b_4layers.yaml at T = 4096..32768 tokens
#                         per step (bench/moe_gpu.sh build); with ARCH sm_90a also
#                         bench/mma_bT/train, --arch sm_90 (the mma.sync expert GEMMs) at
#                         T = MOE_GPU_MMA_TOKENS (default 32768): the layer benchmark's comparison
#   bin/                  device_smoke, nccl_check, golden_compare
#   lib/                  the shared libraries of all of the above that a stock CUDA machine
#                         lacks (OpenBLAS, Open MPI and theirs; not libc, the driver,
#                         cuBLASLt, NCCL or NVRTC, which the GPU machine has); those over
#                         4 MiB as NAME.xz (OpenBLAS: 36 MiB, 4 compressed), which
#                         gpu_session.sh unpacks
#   kit.env               commit, date, --arch, the machine it was built on
#   run.sh                bash bench/gpu_session.sh <this kit> "$@"
#
# Environment: BUILD (the CMake build whose moec and test programs are used, default
# build/release; configured and built when needed; must not be a sanitized build), KIT
# (default build/gpu_kit), ARCH (moec build --arch, default sm_90a: the H100 and H200),
# KIT_MAX_MIB (default 60; with the working tree, which travels too, it must stay under 63).
# Work files (the full moec builds, kept for faster rebuilds) go to KIT.work. The trainers
# are compiled with -march=x86-64-v3 (MOEC_TRAIN_CFLAGS) rather than their Makefile's
# -march=native: the GPU machine's CPU need not have this one's AVX-512.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD:-build/release}
kit=${KIT:-build/gpu_kit}
arch=${ARCH:-sm_90a}
max_mib=${KIT_MAX_MIB:-60}
work=$kit.work
jobs=$(nproc 2>/dev/null || echo 2)
t0=$(date +%s)

say() { printf '== %s\n' "$*"; }
die() {
	printf 'gpu_kit.sh: %s\n' "$*" >&2
	exit 1
}

# ---- moec and the test programs ----
if [ ! -f "$build/CMakeCache.txt" ]; then
	say "configuring $build"
	cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if grep -q '^MOEC_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
	die "$build is a sanitized build: its programs need the sanitizer runtimes; use BUILD=build/release"
fi
say "building moec and the test programs in $build"
mkdir -p "$work"
if ! cmake --build "$build" --target moec moert golden_compare device_smoke nccl_check kvt \
	>"$work/cmake.log" 2>&1; then
	tail -40 "$work/cmake.log" >&2
	die "cmake --build $build failed"
fi
moec=$root/$build/moec
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
kvt_obj=$root/$build/tests/gpu/libkvt.a # kernel_vs_twin without the twins
[ -f "$kvt_obj" ] || die "no $kvt_obj"
libmoert=$root/$build/libmoert.a

export MOEC_CACHE_DIR=${MOEC_CACHE_DIR:-$root/$build/moec-cache}
export MOEC_TRAIN_CFLAGS="${MOEC_TRAIN_CFLAGS:-} -march=x86-64-v3"
export MOEC_KERNELS_DIR= # the templates of this checkout, as ctest runs them

rm -rf "$kit"
mkdir -p "$kit"/bin "$kit"/lib "$work"

# put DIR's trainer (debug info stripped: the cubins are in .rodata) and what says what it
# is into KIT/NAME
take_trainer() { # take_trainer BUILD_DIR NAME
	mkdir -p "$kit/$2"
	strip --strip-debug -o "$kit/$2/train" "$1/train"
	cp "$1/manifest.json" "$1/plan.txt" "$kit/$2/"
}

# ---- trainers ----
build_trainer() { # build_trainer NAME SPEC [moec build args...]
	local name=$1 spec=$2
	shift 2
	if ! "$moec" build "$spec" -o "$work/$name" --arch "$arch" -j "$jobs" "$@" >"$work/$name.log" 2>&1; then
		cat "$work/$name.log" >&2
		die "moec build $spec $* failed"
	fi
	take_trainer "$work/$name" "$name"
	echo "$name: $(tail -1 "$work/$name.log")"
}
say "trainers (--arch $arch)"
build_trainer tiny examples/tiny_qwen3_moe.yaml
build_trainer tiny_bf16 examples/tiny_qwen3_moe.yaml --set train.precision=bf16
build_trainer golden_a tests/golden/a/spec.yaml
build_trainer golden_b tests/golden/b/spec.yaml

say "benchmark trainers (bench/moe_gpu.sh build)"
MOEC=$moec MOE_GPU_ARCH=$arch bench/moe_gpu.sh build "$work/bench"
for d in "$work"/bench/b*/ "$work"/bench/mma_b*/; do
	[ -d "$d" ] || continue
	take_trainer "$d" "bench/$(basename "$d")"
done

# ---- kernel_vs_twin: moec build --kernels-only, the twins compiled and linked (run.sh build) ----
say "kernel_vs_twin builds (tests/gpu/run.sh build; the ctest gpu/kernels_* variants, and qwen30b)"
kvt() { # [kvt_arch=ARCH] kvt NAME SPEC [moec build args...]
	local name=$1 spec=$2
	shift 2
	KVT_ARCH=${kvt_arch:-$arch} sh tests/gpu/run.sh build "$moec" "$cc" "" "$kvt_obj" "$libmoert" "$work/kvt_$name" \
		"$spec" "$@" >"$work/kvt_$name.log" 2>&1 || {
		cat "$work/kvt_$name.log" >&2
		die "tests/gpu/run.sh build $name failed"
	}
	local src=$work/kvt_$name dst=$kit/kvt/$name
	mkdir -p "$dst/build/gen"
	strip --strip-debug -o "$dst/kernel_vs_twin" "$src/kernel_vs_twin"
	cp "$src/build/manifest.json" "$dst/build/"
	cp "$src/build/gen/launch.h" "$dst/build/gen/"
	cp -r "$src/build/cubin" "$dst/build/"
	echo "kvt/$name: $(grep -c '"cubin"' "$dst/build/manifest.json") kernels"
}
tiny=examples/tiny_qwen3_moe.yaml
kvt f32 "$tiny"
kvt bf16 "$tiny" --set train.precision=bf16
kvt capacity "$tiny" --set moe.capacity_factor=1.0 --set moe.drop_policy=low_prob
kvt capacity_late "$tiny" --set moe.capacity_factor=1.0 --set moe.drop_policy=late_tokens
kvt ep "$tiny" --set train.precision=bf16 --set parallel.gpus_per_node=2 --set parallel.ep=2 --set train.recompute=selective
kvt qwen30b bench/specs/qwen3_30b_a3b_4layers.yaml
if [ "$arch" = sm_90a ]; then # the mma.sync expert GEMMs too (plain sm_90 has no wgmma)
	kvt_arch=sm_90 kvt bf16_sm90 "$tiny" --set train.precision=bf16
	kvt_arch=sm_90 kvt qwen30b_sm90 bench/specs/qwen3_30b_a3b_4layers.yaml
	# tile variants (part tune): the same spec, other constants in the expert GEMMs
	kvt qwen30b_st4 bench/specs/qwen3_30b_a3b_4layers.yaml --kernel-const 'moe_*:STAGES=4'
	# the persistent schedule (moe_gemm.cuh PERSIST: 132 CTAs = the H100's SMs, each tile's
	# prologue issued during the previous tile's epilogue), at 3 and 4 stages
	kvt qwen30b_persist bench/specs/qwen3_30b_a3b_4layers.yaml --kernel-const 'moe_*:PERSIST=132'
	kvt qwen30b_persist_st4 bench/specs/qwen3_30b_a3b_4layers.yaml --kernel-const 'moe_*:PERSIST=132' \
		--kernel-const 'moe_*:STAGES=4'
	kvt_arch=sm_90 kvt qwen30b_sm90_tn128 bench/specs/qwen3_30b_a3b_4layers.yaml --kernel-const 'moe_*:TILE_N=128'
fi

# ---- test programs ----
strip --strip-debug -o "$kit/bin/device_smoke" "$build/tests/device/device_smoke"
strip --strip-debug -o "$kit/bin/nccl_check" "$build/tests/bootstrap/nccl_check"
strip --strip-debug -o "$kit/bin/golden_compare" "$build/tests/golden/golden_compare"

# ---- shared libraries: what ldd resolves, less what every CUDA machine has ----
say "shared libraries"
# the C library and the loader, and what the GPU machine brings: the driver, cuBLAS(Lt),
# NCCL and NVRTC (device_smoke links NVRTC; it is the GPU machine's CUDA 13)
stock='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libutil|libgcc_s|libstdc\+\+|libcuda|libcublas|libcublasLt|libnccl|libnvrtc|libnvrtc-builtins)\.so'
elfs=$(find "$kit" -type f -perm -u+x | while read -r f; do file -b "$f" | grep -q '^ELF' && echo "$f"; done)
missing=$(for f in $elfs; do ldd "$f" | grep 'not found' || true; done)
[ -z "$missing" ] || die "unresolved libraries: $missing"
for f in $elfs; do
	ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
	if [[ $name =~ $stock ]]; then
		continue
	fi
	[ -f "$kit/lib/$name" ] || cp -L "$path" "$kit/lib/$name"
done
# the big ones (OpenBLAS: 36 MiB, 4 as .xz) travel compressed; gpu_session.sh unpacks them
# (xz, or python3's lzma); the compressed copy is kept in KIT.work for the next kit
if command -v xz >/dev/null 2>&1; then
	mkdir -p "$work/xz"
	for f in "$kit"/lib/*; do
		[ "$(stat -c %s "$f")" -gt $((4 * 1048576)) ] || continue
		key=$work/xz/$(basename "$f").$(sha256sum "$f" | cut -c1-16).xz
		[ -f "$key" ] || xz -T0 -6 -c "$f" >"$key"
		cp "$key" "$f.xz"
		rm "$f"
	done
fi
ls "$kit/lib"

# ---- what the kit is ----
commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain --untracked-files=no -- compiler runtime kernels templates tests scripts bench | wc -l)
{
	echo "KIT_COMMIT='$commit$([ "$dirty" -gt 0 ] && echo " (+ $dirty uncommitted changes)")'"
	echo "KIT_DATE='$(date -u +%Y-%m-%dT%H:%MZ)'"
	echo "KIT_ARCH='$arch'"
	echo "KIT_BUILT_ON='$(uname -m), $(nproc) cores, $("$moec" --version 2>/dev/null | head -1)'"
	echo "KIT_TOKENS='$(find "$kit/bench" -mindepth 1 -maxdepth 1 -name 'b*' -printf '%f\n' | sed -n 's/^b\([0-9]*\)$/\1/p' | sort -n |
		tr '\n' ' ' | sed 's/ $//')'"
} >"$kit/kit.env"
cat >"$kit/run.sh" <<'EOF'
#!/usr/bin/env bash
# run.sh [tests|model|layer|bench|all|profile|tune]... - this kit's GPU session, from the repository root:
#   bash build/gpu_kit/run.sh tests     (same as: bash bench/gpu_session.sh build/gpu_kit tests)
kit=$(cd "$(dirname "$0")" && pwd)
exec bash bench/gpu_session.sh "$kit" "$@"
EOF
chmod +x "$kit/run.sh"

size=$(du -sb "$kit" | cut -f1)
mib() { awk -v s="$1" 'BEGIN {printf "%.1f", s / 1048576}'; }
# what travels besides: the tracked and untracked-not-ignored files (run's limit is 64 MiB in all)
tree=$(git ls-files -z -c -o --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
say "the kit"
cat "$kit/kit.env"
du -sh "$kit"/* | sort -h
echo "$kit: $(mib "$size") MiB (limit $max_mib MiB) in $(($(date +%s) - t0)) s; with the working tree" \
	"($(mib "$tree") MiB) $(mib $((size + tree))) MiB of run's 64"
if [ "$size" -gt $((max_mib * 1048576)) ]; then
	die "the kit is $(mib "$size") MiB, over $max_mib MiB: it would not travel"
fi
if [ $((size + tree)) -gt $((63 * 1048576)) ]; then
	die "the kit and the working tree are $(mib $((size + tree))) MiB together: over run's 64 MiB"
fi
echo "GPU session: carry $kit; run: bash bench/gpu_session.sh $kit tests model   (then: ... layer; tuning: ... tune profile)"

#!/bin/sh
# run.sh MODE MOEC CC FLAGS OBJ LIBMOERT OUT SPEC [moec build args...] - every CUDA kernel of
# one `moec build` against its CPU twin (kvt_core.c says how).
#
#   MODE      gpu: the cubins on GPU 0 against the twins; self-check: the twin on both sides
#             (no GPU; exercises the drivers, sizes and comparisons under the build's sanitizers,
#             and that every case catches a corrupted "device" output); build: no GPU needed,
#             only build and link OUT/kernel_vs_twin for --arch KVT_ARCH (default sm_90a) and stop
#             (scripts/gpu_kit.sh: the run happens later, on a GPU machine without moec)
#   MOEC      the moec binary
#   CC FLAGS  the compiler and the sanitizer flags of the build that compiled OBJ ("" for none):
#             the twins are compiled with them too, so ASan sees the twins' accesses
#   OBJ       libkvt.a (kernel_vs_twin without the twins: tests/gpu/kvt_*.c)
#   LIBMOERT  libmoert.a (the CUDA backend, runtime/device_cuda.c, when it has one)
#   OUT       a scratch directory (OUT/build: the moec build, OUT/obj: the twins)
#   SPEC ...  the spec and extra `moec build` arguments (--set ...)
#
# gpu: links kernel_vs_twin without twins first and asks it (--probe) whether GPU 0 opens and
# which --arch it wants: exit 77 (ctest: skipped) before the build when there is none.
# Environment: KVT_ARCH overrides the probed --arch; KVT_ARGS adds kernel_vs_twin arguments
# (e.g. "--only moe_ -v").
set -e
if [ $# -lt 8 ]; then
	echo "usage: run.sh gpu|self-check|build MOEC CC FLAGS OBJ LIBMOERT OUT SPEC [moec build args...]" >&2
	exit 2
fi
mode=$1 moec=$2 cc=$3 flags=$4 obj=$5 libmoert=$6 out=$7 spec=$8
shift 8
case $mode in
gpu | self-check | build) ;;
*)
	echo "run.sh: MODE is gpu, self-check or build, not $mode" >&2
	exit 2
	;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
blas_cflags=$(pkg-config --cflags openblas)
blas_libs=$(pkg-config --libs openblas)
jobs=$(nproc 2>/dev/null || echo 2)

# The CUDA backend is an archive member nothing else references: pull it in when it is there
# (kernel_vs_twin refers to it weakly, and reports SKIP without it).
undef=
if nm "$libmoert" 2>/dev/null | grep -q ' T moert_cuda_open$'; then
	undef=-Wl,-u,moert_cuda_open
fi
link() { # link OUTPUT OBJECTS...
	o=$1
	shift
	# shellcheck disable=SC2086 # FLAGS and the library lists are word lists
	$cc $flags -rdynamic -o "$o" "$@" $undef "$libmoert" $blas_libs -ldl -lm -lpthread
}

rm -rf "$out"
mkdir -p "$out/obj"
arch_arg=
if [ "$mode" = gpu ]; then
	# CUDA under AddressSanitizer needs the shadow gap mappable; the driver's own
	# allocations are not ours to leak-check
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}protect_shadow_gap=0:detect_leaks=0
	export ASAN_OPTIONS
	link "$out/probe" "$obj"
	set +e
	arch=$("$out/probe" --probe)
	rc=$?
	set -e
	if [ $rc -ne 0 ]; then
		echo "$arch"
		exit $rc # 77: no GPU, no driver or no CUDA backend: ctest reports the test skipped
	fi
	arch_arg="--arch ${KVT_ARCH:-$arch}"
elif [ "$mode" = build ]; then
	arch_arg="--arch ${KVT_ARCH:-sm_90a}"
fi

# the kernels (NVRTC; the build tree's kernel cache) and their twins' sources
# shellcheck disable=SC2086
if ! "$moec" build "$spec" -o "$out/build" --kernels-only $arch_arg "$@" >"$out/moec.log" 2>&1; then
	cat "$out/moec.log"
	echo "run.sh: moec build failed" >&2
	exit 1
fi
grep -v 'warning:\|^ *|\|^ *[0-9]* |' "$out/moec.log" || true

# the twins, with the trainer's flags (DIR/Makefile) plus the sanitizers: -ffp-contract=off
# keeps them to the multiply-adds they write
pids='' n=0 bad=0
for src in "$out"/build/gen/cpu/*.c; do
	o="$out/obj/$(basename "$src" .c).o"
	# shellcheck disable=SC2086
	$cc $flags -std=gnu11 -O2 -g -ffp-contract=off -fno-strict-aliasing -w -I"$out/build/gen" -I"$root/kernels/cpu" \
		-I"$root/runtime" $blas_cflags -c "$src" -o "$o" &
	pids="$pids $!"
	n=$((n + 1))
	if [ $n -ge "$jobs" ]; then
		for p in $pids; do wait "$p" || bad=1; done
		pids='' n=0
	fi
done
for p in $pids; do wait "$p" || bad=1; done
if [ $bad -ne 0 ]; then
	echo "run.sh: compiling the twins failed" >&2
	exit 1
fi
link "$out/kernel_vs_twin" "$obj" "$out"/obj/*.o
if [ "$mode" = build ]; then
	echo "run.sh: built $out/kernel_vs_twin (run: $out/kernel_vs_twin $out/build)"
	exit 0
fi

# one BLAS thread: ctest runs tests side by side
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS
self=
[ "$mode" = self-check ] && self=--self-check
# shellcheck disable=SC2086
exec "$out/kernel_vs_twin" $self ${KVT_ARGS:-} "$out/build"

#!/bin/sh
# compile_spec.sh MOEC SPEC ARCH OUT [OPTION...] - `moec build` of one spec for one arch over
# the real templates: every instance must lint, compile with NVRTC, and not spill (moec
# fails the build on a spill). OPTIONs go to moec build (--set ...). The kernel cache is
# $MOEC_CACHE_DIR (the build tree's, cold on a fresh clone). Prints the build's summary line.
moec=$1 spec=$2 arch=$3 out=$4
shift 4
rm -rf "$out"
"$moec" build "$spec" -o "$out" --arch "$arch" --kernels-only "$@" || { echo "FAIL: moec build $spec --arch $arch"; exit 1; }
n=$(grep -c '"name":' "$out/manifest.json")
cubins=$(ls "$out/cubin" | grep -c "\.$arch\.cubin$")
[ "$n" -gt 0 ] && [ "$n" -eq "$cubins" ] || { echo "FAIL: $n kernels in manifest.json, $cubins cubins for $arch"; exit 1; }
if grep -q '"spill_stores": [1-9]' "$out/manifest.json" || grep -q '"spill_loads": [1-9]' "$out/manifest.json"; then
	echo "FAIL: a kernel spills"; exit 1
fi
echo "PASS: $spec $arch: $n kernels"

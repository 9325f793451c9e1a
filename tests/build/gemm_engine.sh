#!/bin/sh
# gemm_engine.sh MOEC OUT - which tensor-core engine the six expert GEMMs get (moe_gemm.cuh's
# MOE_GEMM): a bf16 build for sm_90a must use wgmma (moe_wgmma.cuh), one for plain sm_90 the
# mma.sync engine (the fallback, and the benchmark's comparison). Checked in each kernel's PTX
# (wgmma.mma_async vs mma.sync, always there) and, where a disassembler is found (cuobjdump or
# nvdisasm on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin, or $MOEC_NVDISASM), in its SASS:
# HGMMA vs HMMA. Fails if the selection regresses either way; no timing. For sm_90a also
# checks that the wgmma pipeline keeps one group in flight (wgmma.wait_group 1 in the PTX, no
# ptxas "serialized" warning, WARPGROUP.DEPBAR.LE gsb0, 0x1 in the SASS).
moec=$1 out=$2
spec=examples/tiny_qwen3_moe.yaml
gemms="moe_gate_up_fwd moe_down_fwd moe_down_bwd_data moe_gate_up_bwd_data moe_down_bwd_weight moe_gate_up_bwd_weight"
rm -rf "$out"
mkdir -p "$out"

# a SASS dumper: "cuobjdump -sass" or "nvdisasm -c", or nothing
sass=
for d in $(echo "$PATH" | tr ':' ' ') ${CUDA_HOME:+$CUDA_HOME/bin} /usr/local/cuda/bin; do
	if [ -x "$d/cuobjdump" ]; then
		sass="$d/cuobjdump -sass"
		break
	fi
done
if [ -z "$sass" ]; then
	for t in ${MOEC_NVDISASM:-} $(command -v nvdisasm 2>/dev/null) ${CUDA_HOME:+$CUDA_HOME/bin/nvdisasm} /usr/local/cuda/bin/nvdisasm; do
		if [ -x "$t" ]; then
			sass="$t -c"
			break
		fi
	done
fi

fail=0
# check ARCH PTX_WANT PTX_NOT SASS_WANT SASS_NOT
check() {
	arch=$1 want=$2 not=$3 swant=$4 snot=$5
	dir=$out/$arch
	if ! "$moec" build "$spec" --set train.precision=bf16 -o "$dir" --arch "$arch" --kernels-only >"$out/$arch.log" 2>&1; then
		cat "$out/$arch.log"
		echo "FAIL: moec build $spec (bf16) --arch $arch"
		fail=1
		return
	fi
	for g in $gemms; do
		ptx=$(ls "$dir"/ptx/"$g"_bf16_*."$arch".ptx 2>/dev/null | head -1)
		if [ -z "$ptx" ]; then
			echo "FAIL: $arch: no PTX of $g"
			fail=1
			continue
		fi
		name=$(basename "$ptx" ".$arch.ptx")
		what="PTX $(grep -cF "$want" "$ptx") x $want"
		if ! grep -qF "$want" "$ptx" || grep -qF "$not" "$ptx"; then
			echo "FAIL: $arch $name: the PTX should have $want and no $not"
			fail=1
			continue
		fi
		# wgmma: one group kept in flight across K tiles (moe_wgmma.cuh's pipeline): the loop
		# waits with wait_group 1, and ptxas must not have serialized the wgmmas (it warns)
		if [ "$want" = wgmma.mma_async ]; then
			if ! grep -qF 'wgmma.wait_group.sync.aligned 1;' "$ptx" ||
				grep -qi 'serialized' "$dir/log/$name.$arch.log" 2>/dev/null; then
				echo "FAIL: $arch $name: no wgmma.wait_group 1 in the PTX, or ptxas serialized the wgmmas"
				fail=1
				continue
			fi
		fi
		if [ -n "$sass" ]; then
			# shellcheck disable=SC2086 # sass is a command with its option
			$sass "$dir/cubin/$name.$arch.cubin" >"$out/$name.$arch.sass" 2>&1
			n=$(grep -cF "$swant" "$out/$name.$arch.sass")
			if [ "$n" -eq 0 ] || grep -qF "$snot" "$out/$name.$arch.sass"; then
				echo "FAIL: $arch $name: the SASS should have $swant and no $snot ($sass)"
				fail=1
				continue
			fi
			what="$what, SASS $n x $swant"
			if [ "$swant" = HGMMA ]; then # the wait that leaves tile kt in flight
				if ! grep -q 'WARPGROUP.DEPBAR.LE gsb0, 0x1' "$out/$name.$arch.sass"; then
					echo "FAIL: $arch $name: no WARPGROUP.DEPBAR.LE gsb0, 0x1 (one wgmma group in flight) in the SASS"
					fail=1
					continue
				fi
				what="$what, DEPBAR gsb0 0x1"
			fi
		fi
		echo "ok   $arch $name: $what"
	done
}
check sm_90a 'wgmma.mma_async' 'mma.sync' 'HGMMA' 'HMMA'
check sm_90 'mma.sync' 'wgmma.mma_async' 'HMMA' 'HGMMA'
[ -n "$sass" ] || echo "note: no cuobjdump or nvdisasm found: checked the PTX only"
if [ $fail -ne 0 ]; then
	echo "FAIL: the expert GEMMs' engine selection (kernels/moe_gemm.cuh, MOE_GEMM)"
	exit 1
fi
echo "PASS: sm_90a expert GEMMs on wgmma, sm_90 on mma.sync"

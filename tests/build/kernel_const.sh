#!/bin/sh
# kernel_const.sh MOEC OUT - `moec build --kernel-const TEMPLATE:NAME=VALUE` (tuning tile
# constants): 'moe_*:STAGES=4' on the tiny bf16 spec for sm_90a reaches the six expert GEMMs
# (instance names, manifest constants, cache keys and the launch's smem say so) and leaves the
# other moe_* templates, which have no STAGES, alone; wrong uses fail with a message naming
# what is wrong: a glob that matches no template, a constant no matching template has (the
# message lists the templates' constants), a spec-wide constant, a malformed argument.
# 'moe_*:PERSIST=3' names the instances _persist3 and caps their launch grids at 3 CTAs.
moec=$1 out=$2
spec=examples/tiny_qwen3_moe.yaml
gemms="moe_gate_up_fwd moe_down_fwd moe_down_bwd_data moe_gate_up_bwd_data moe_down_bwd_weight moe_gate_up_bwd_weight"
rm -rf "$out"
mkdir -p "$out"
fail=0
bad() {
	echo "FAIL: $*"
	fail=1
}

build() { # build DIR [ARGS...]
	d=$1
	shift
	"$moec" build "$spec" --set train.precision=bf16 --arch sm_90a --kernels-only -o "$d" "$@" >"$d.log" 2>&1
}

build "$out/default" || { cat "$out/default.log"; bad "the default build"; }
build "$out/st4" --kernel-const 'moe_*:STAGES=4' || { cat "$out/st4.log"; bad "the build with 'moe_*:STAGES=4'"; }
m=$out/st4/manifest.json
# one kernel's manifest entry as one line (an entry spans lines up to the next {"name": ...)
entry() { # entry MANIFEST NAME_PREFIX
	awk -v p="\"name\": \"$2" 'index($0, p) {on = 1; printf "%s", $0; next} on && /^ *\{"name"/ {exit}
		on {printf "%s", $0}' "$1"
}
for g in $gemms; do
	e=$(entry "$m" "${g}_bf16_")
	case $e in
	*"\"name\": \"${g}_bf16_e8_h128_i128_st4\""*) ;;
	*) bad "$g: no instance ${g}_bf16_e8_h128_i128_st4 in $m" ;;
	esac
	case $e in *'"STAGES": "4"'*) ;; *) bad "$g: the manifest's constants lack STAGES 4: $e" ;; esac
	k4=$(echo "$e" | sed -n 's/.*"cache_key": *"\([0-9a-f]*\)".*/\1/p')
	k3=$(entry "$out/default/manifest.json" "${g}_bf16_" | sed -n 's/.*"cache_key": *"\([0-9a-f]*\)".*/\1/p')
	[ -n "$k4" ] && [ "$k4" != "$k3" ] || bad "$g: the cache key did not change ($k3 / $k4)"
	[ -f "$out/st4/cubin/${g}_bf16_e8_h128_i128_st4.sm_90a.cubin" ] || bad "$g: no cubin for the st4 instance"
done
grep -q '"name": "moe_permute_bf16_k2_h128"' "$m" || bad "moe_permute (no STAGES) should keep its name"
n=$(grep -c '_st4"' "$m")
[ "$n" -ge 6 ] || bad "only $n st4 names in $m"
# the trainer's launch of it: the dynamic smem of 4 stages
grep -q 'MOEC_SMEM_moe_down_fwd_bf16_e8_h128_i128_st4 ((unsigned)((1) ? (4)\*' "$out/st4/gen/launch.h" ||
	bad "gen/launch.h: moe_down_fwd_bf16_e8_h128_i128_st4's smem is not computed with STAGES 4"
# PERSIST (moe_gemm.cuh's persistent schedule): the instance says so and the trainer's grid
# is capped at PERSIST CTAs, where the default build's is the one-tile-per-CTA bound
build "$out/persist" --kernel-const 'moe_*:PERSIST=3' || { cat "$out/persist.log"; bad "the build with 'moe_*:PERSIST=3'"; }
for g in $gemms; do
	[ -f "$out/persist/cubin/${g}_bf16_e8_h128_i128_persist3.sm_90a.cubin" ] || bad "$g: no cubin for the persist3 instance"
done
n=$(grep -c 'MOEC_MIN(.*(3) ? (3) : 2147483647)' "$out/persist/gen/launch.h")
[ "$n" -eq 6 ] || bad "gen/launch.h: $n of the 6 expert GEMMs' grids capped at PERSIST 3"
n=$(grep -c 'MOEC_MIN(.*(0) ? (0) : 2147483647)' "$out/default/gen/launch.h")
[ "$n" -eq 6 ] || bad "gen/launch.h (default): $n of the 6 expert GEMMs' grids with PERSIST 0"

# expect_error LABEL EXIT PATTERN ARGS...: the build fails with EXIT and says PATTERN
expect_error() {
	label=$1 want=$2 pat=$3
	shift 3
	build "$out/err" "$@"
	rc=$?
	if [ "$rc" -ne "$want" ] || ! grep -q -- "$pat" "$out/err.log"; then
		cat "$out/err.log"
		bad "$label: want exit $want and '$pat', got exit $rc"
	else
		echo "ok: $label: $(grep -m1 -- "$pat" "$out/err.log" | cut -c1-160)"
	fi
}
expect_error "unknown template" 1 "no template of this build matches 'nope_\*'" --kernel-const 'nope_*:STAGES=4'
expect_error "a constant the template lacks" 1 "moe_permute (K H ACT_BF16)" --kernel-const 'moe_permute:STAGES=4'
expect_error "an unknown constant" 1 "no template matching 'moe_down_\*' has a constant STAGE: moe_down_fwd (E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES PERSIST)" \
	--kernel-const 'moe_down_*:STAGE=4'
expect_error "a spec-wide constant" 1 "H is a spec-wide constant" --kernel-const 'moe_*:H=256'
expect_error "no value" 2 "wants TEMPLATE:NAME=VALUE" --kernel-const 'moe_*:STAGES'
expect_error "not an integer" 2 "must be a positive integer" --kernel-const 'moe_*:STAGES=4.5'
# a tile the engine cannot take fails the build as any template error does (wgmma: TILE_N 256)
expect_error "a tile wgmma cannot take" 1 "TILE_N must be 256" --kernel-const 'moe_down_fwd:TILE_N=128'
[ $fail -eq 0 ] && echo "PASS: --kernel-const"
exit $fail

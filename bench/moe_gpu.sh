#!/usr/bin/env bash
# moe_gpu.sh - issue 5's benchmarks on one GPU, each with its baseline measured in the same
# run (python3 with torch + transformers for the baselines, bench/moe_layer_torch.py):
#  (a) layer: the MoE layer forward + backward at Qwen3-30B-A3B shapes for T = 4k..32k
#      tokens: moec's router_* and moe_* kernels timed one by one (train --profile) against
#      torch._grouped_mm and transformers' sparse block;
#  (b) model: the 4-layer model (bench/specs/qwen3_30b_a3b_4layers.yaml, seq 4096, bf16):
#      training tokens/s and MFU against transformers on the same config, with one
#      micro-batch per optimizer step and (DIR/bTa8, where built) with 8 (grad_accum 8).
#  Engines: built for sm_90a (moec's default) the expert GEMMs run on wgmma; the layer
#  benchmark then also times DIR/mma_bT/train, the same spec built for plain sm_90 (the
#  mma.sync engine, kernels/moe_gemm.cuh) at T = MOE_GPU_MMA_TOKENS (default 32768; "" for
#  none), and prints wgmma / mma.sync beside the main numbers.
#
#   bench/moe_gpu.sh                      one machine with moec and a GPU: build, then run
#   bench/moe_gpu.sh build DIR            only the trainers, DIR/bT/ (moec; no GPU needed)
#   bench/moe_gpu.sh run DIR [layer|model|all]
#                                         only the runs, of DIR/bT/train (a GPU; no moec):
#                                         what bench/gpu_session.sh does with a kit
#
# Prints the report (a bench/results file: header, each measurement with its baseline and
# the ratio). Environment: MOEC (default build/release/moec), MOE_GPU_ARCH (moec build
# --arch, default moec's), MOE_GPU_TOKENS (default "4096 8192 16384 32768"; the model benchmark
# takes the first), MOE_GPU_ROUTES (the layer's routings, default "balanced skewed"),
# MOE_GPU_MMA_ROUTES (the mma.sync comparison's, default balanced; "" for none), RESULTS=1
# (also write bench/results/<date>_moe_gpu.txt), REPORT=FILE (also write the report there);
# for run: MOE_GPU_LIBS (the trainers' LD_LIBRARY_PATH, e.g. a kit's lib/; python keeps the
# environment's), MOE_GPU_COMMIT (the commit the trainers were built from, default HEAD),
# MOE_GPU_BUILT (how they were built), MOE_GPU_COMMAND (the command to record) and
# MOE_GPU_DEADLINE (epoch seconds: a step that would start after it is skipped, and each
# timeout ends by then; gpu_session.sh keeps a call inside the run tool's 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
spec=bench/specs/qwen3_30b_a3b_4layers.yaml
tokens=${MOE_GPU_TOKENS:-4096 8192 16384 32768}
routes=${MOE_GPU_ROUTES:-balanced skewed}
data=$root/data/tiny_shakespeare_train.bin
trainer_env=(env "LD_LIBRARY_PATH=${MOE_GPU_LIBS:-${LD_LIBRARY_PATH:-}}")

build() { # build DIR: DIR/bT for each T (micro_batch T / 4096 of seq 4096), DIR/mma_bT (sm_90)
	local dir=$1 moec=${MOEC:-build/release/moec} T
	local arch=()
	[ -n "${MOE_GPU_ARCH:-}" ] && arch=(--arch "$MOE_GPU_ARCH")
	mkdir -p "$dir"
	build_one() { # build_one NAME T [moec build args...]
		local name=$1 t=$2
		shift 2
		if ! "$moec" build "$spec" -o "$dir/$name" "$@" --set train.micro_batch=$((t / 4096)) \
			>"$dir/$name.log" 2>&1; then
			cat "$dir/$name.log" >&2
			echo "moe_gpu.sh: moec build $spec (T $t) $* failed" >&2
			return 1
		fi
		echo "$name: $(tail -1 "$dir/$name.log")"
	}
	for T in $tokens; do
		build_one "b$T" "$T" "${arch[@]}" || return 1
	done
	# the model benchmark's accumulated variant: 8 micro-batches of the first T per step
	T=${tokens%% *}
	build_one "b${T}a8" "$T" "${arch[@]}" --set train.grad_accum=8 || return 1
	# the comparison engine: only where the main build is sm_90a (its wgmma GEMMs)
	if [ "${MOE_GPU_ARCH:-sm_90a}" = sm_90a ]; then
		for T in ${MOE_GPU_MMA_TOKENS-32768}; do
			build_one "mma_b$T" "$T" --arch sm_90 || return 1
		done
	fi
}

# seconds left before MOE_GPU_DEADLINE (a large number without one)
left() {
	if [ -n "${MOE_GPU_DEADLINE:-}" ]; then
		echo $((MOE_GPU_DEADLINE - $(date +%s)))
	else
		echo 100000
	fi
}
# has NAME: whether 30 s or more are left; else print "NAME: SKIP: ..."
has() {
	[ "$(left)" -ge 30 ] && return 0
	echo "$1: SKIP: the time budget (MOE_GPU_DEADLINE) is spent"
	return 1
}
# limit N CMD...: CMD with a timeout of N seconds or what is left, whichever is less
limit() {
	local n=$1 l
	shift
	l=$(($(left) - 5))
	[ "$l" -lt "$n" ] && n=$l
	[ "$n" -lt 1 ] && n=1
	timeout -k 10 "$n" "$@"
}

# peak dense bf16 TFLOP/s of the GPU, for MFU (empty where unknown)
peak_tflops() {
	case "$1" in
	*H100*PCIe*) echo 756 ;;
	*H100*NVL*) echo 835 ;;
	*H100* | *H200*) echo 989 ;;
	*B200*) echo 2250 ;;
	*A100*) echo 312 ;;
	esac
}

run() { # run DIR [layer|model|all]
	local dir=$1 what=${2:-all} gpu peak T
	gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)
	peak=$(peak_tflops "$gpu")
	local tv
	tv=$(python3 -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")' \
		2>/dev/null || echo "torch/transformers not importable")
	echo "# moec on the GPU vs PyTorch: MoE layer and 4-layer Qwen3-30B-A3B model (bf16)"
	echo "date:     $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "commit:   ${MOE_GPU_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
	echo "device:   ${gpu:-no GPU (nvidia-smi found none)}, $(nproc) CPU cores"
	echo "how:      ${MOE_GPU_BUILT:-trainers built here by moec build}"
	echo "command:  ${MOE_GPU_COMMAND:-bench/moe_gpu.sh run $dir $what}"
	echo "baseline: $tv, on the same GPU (bench/moe_layer_torch.py)"
	if [ "$what" = layer ] || [ "$what" = all ]; then
		echo
		echo "## (a) MoE layer fwd+bwd, H 2048, E 128, I 768, k 8, bf16 (TFLOP/s = 6 k H I 3 per token)"
		echo "moec: router_* and moe_* kernels of train --profile over steps 2-3 of the 4-layer model:"
		echo "\"balanced\" is the routing of a random init (max/mean load printed), \"skewed\" adds +4 to"
		echo "experts 0..7's router logits (MOERT_ROUTER_BIAS=0-7:4), as the baselines' skew does"
		# moec first (its numbers matter most where the time budget runs short)
		local moe ours base route load bias tps trainer torch_routes=both
		case $routes in balanced | skewed) torch_routes=$routes ;; esac
		for T in $tokens; do
			for route in $routes; do
				: >"$tmp/moec$T$route.txt"
				has "moec T=$T $route" || continue
				bias=
				[ "$route" = skewed ] && bias=0-7:4
				limit 150 env MOERT_ROUTER_BIAS="$bias" "${trainer_env[@]}" "$dir/b$T/train" --device cuda --steps 3 --no-resume --no-save \
					--profile --ckpt-dir "$tmp/c" --metrics "$tmp/p$T$route.jsonl" --data "$data" \
					>"$tmp/out$T.txt" 2>"$tmp/err$T.txt" || true
				moe=$(grep "MoE layer" "$tmp/out$T.txt" || true)
				load=$(grep '^{"step"' "$tmp/p$T$route.jsonl" 2>/dev/null | tail -1 |
					sed -n 's/.*"load_imbalance":\([0-9.]*\).*/, max\/mean load \1/p' || true) # no metrics: the run failed
				# tokens/s of the layer alone; the whole trainer's device memory (4 layers, LM head,
				# AdamW state: the baselines' peak is one layer's)
				tps=$(echo "$moe" | sed -n 's/.*: \([0-9.]*\) ms per layer.*/\1/p' | awk -v t="$T" '$1 > 0 {printf ", %.0f tokens/s", t / ($1 * 1e-3)}')
				trainer=$(sed -n 's/^device: .*, \([0-9.]*\) GiB allocated.*/, trainer arenas \1 GiB/p' "$tmp/out$T.txt" | head -1)
				trainer=$trainer$(sed -n 's/^ready in \([0-9.]*\) s: \(.*\)/, trainer start \1 s (\2)/p' "$tmp/out$T.txt" | head -1)
				if [ -n "$moe" ]; then
					echo "moec T=$T $route: ${moe#"${moe%%[! ]*}"}$tps$load$trainer" | tee "$tmp/moec$T$route.txt"
				else
					echo "moec T=$T $route: failed: $(tail -3 "$tmp/err$T.txt" 2>/dev/null | tr '\n' ' ')"
				fi
			done
		done
		# the baselines, every T in one python process (torch is imported once)
		: >"$tmp/torch.txt"
		if has "baselines"; then
			# shellcheck disable=SC2086 # tokens is a list
			limit 240 python3 bench/moe_layer_torch.py $tokens "$torch_routes" 2>"$tmp/torch.err" | tee "$tmp/torch.txt" ||
				echo "baselines: python3 bench/moe_layer_torch.py exit $?: $(tail -2 "$tmp/torch.err" | tr '\n' ' ')"
		fi
		for T in $tokens; do
			for route in $routes; do
				ours=$(sed -n 's/.* \([0-9.]*\) TFLOP\/s.*/\1/p' "$tmp/moec$T$route.txt" | head -1)
				base=$(sed -n "s/^grouped_mm T=$T $route:.* \([0-9.]*\) TFLOP\/s.*/\1/p" "$tmp/torch.txt")
				if [ -n "$ours" ] && [ -n "$base" ]; then
					awk -v a="$ours" -v b="$base" -v t="$T" -v r="$route" \
						'BEGIN {printf "ratio T=%d %s: moec / grouped_mm = %.2f\n", t, r, a / b}'
				fi
			done
		done
		layer_engines "$dir"
	fi
	if [ "$what" = model ] || [ "$what" = all ]; then
		local T0=${tokens%% *}
		echo
		echo "## (b) 4 layers, seq 4096, batch 1, bf16, AdamW (12 steps, the last 8 timed; baseline 3 + 8)"
		model_pair "$dir/b$T0/train" 12 8 "model 8 3"
		# AdamW's traffic over 3.11 B parameters is fixed per optimizer step: with 8 micro-batches
		# per step it is spread over 8x the tokens, as in real training runs
		if [ -x "$dir/b${T0}a8/train" ]; then
			echo
			echo "## (b') the same with 8 micro-batches of seq 4096 per optimizer step (grad_accum 8; 5 steps, the last 3 timed; baseline 1 + 3)"
			model_pair "$dir/b${T0}a8/train" 5 3 "model 3 1 8"
		fi
	fi
}

# model_pair TRAINER STEPS TIMED "HF ARGS": moec's training tokens/s and MFU over the last
# TIMED of STEPS steps, transformers' (bench/moe_layer_torch.py HF ARGS), and their ratio
model_pair() {
	local train=$1 steps=$2 timed=$3 hf_args=$4 m ours fpt base
	m=$tmp/m.jsonl
	rm -f "$m"
	if ! has "moec"; then
		ours=
	elif limit 200 "${trainer_env[@]}" "$train" --device cuda --steps "$steps" --no-resume --no-save --quiet --ckpt-dir "$tmp/c" \
		--metrics "$m" --data "$data" 2>"$tmp/err.txt" && [ -s "$m" ]; then
		# tokens/s over the last TIMED steps; FLOP per token from the trainer (model_tflops / tokens_per_s)
		ours=$(grep '^{"step"' "$m" | tail -"$timed" | sed 's/.*"step_s":\([^,]*\).*"tokens":\([0-9]*\).*/\1 \2/' |
			awk '{s += $1; n += $2} END {printf "%.0f", n / s}')
		fpt=$(grep '^{"step"' "$m" | tail -1 |
			sed 's/.*"tokens_per_s":\([^,]*\),"model_tflops":\([^,]*\).*/\1 \2/' |
			awk '{printf "%.6g", $2 * 1e12 / $1}')
		echo "moec:     $ours tokens/s, $(mfu "$ours" "$fpt" "$peak")"
	else
		echo "moec:     failed: $(tail -3 "$tmp/err.txt" 2>/dev/null | tr '\n' ' ')"
		ours=
	fi
	: >"$tmp/hf.txt"
	if has "baseline"; then
		# shellcheck disable=SC2086 # hf_args is a list
		limit 300 python3 bench/moe_layer_torch.py $hf_args >"$tmp/hf.txt" 2>"$tmp/hf.err" ||
			echo "baseline: python3 bench/moe_layer_torch.py $hf_args exit $?: $(tail -2 "$tmp/hf.err" | tr '\n' ' ')"
	fi
	base=$(sed -n 's/^baseline.*: \([0-9]*\) tokens\/s$/\1/p' "$tmp/hf.txt")
	if [ -n "$base" ]; then
		echo "baseline: $base tokens/s, $(mfu "$base" "${fpt:-}" "$peak")"
		sed 's/^baseline, /          (/; s/: [0-9]* tokens\/s$/)/' "$tmp/hf.txt"
	fi
	if [ -n "$ours" ] && [ -n "$base" ]; then
		awk -v a="$ours" -v b="$base" 'BEGIN {printf "ratio:    %.2f (moec / transformers)\n", a / b}'
	fi
}

# the same layer on the other engine: DIR/mma_bT/train (built for sm_90: mma.sync expert
# GEMMs) at each T built, routes MOE_GPU_MMA_ROUTES (default balanced; each run costs about a
# minute, most of it the host initializing the weights), after the baselines so that a short
# time budget drops this first; then wgmma / mma.sync per (T, route) from the runs above
layer_engines() { # DIR
	local d T route bias moe ours mma
	for d in "$1"/mma_b*/; do
		[ -x "$d/train" ] || continue
		T=$(basename "$d")
		T=${T#mma_b}
		for route in ${MOE_GPU_MMA_ROUTES-balanced}; do
			has "moec mma.sync T=$T $route" || continue
			bias=
			[ "$route" = skewed ] && bias=0-7:4
			moe=$(limit 150 env MOERT_ROUTER_BIAS="$bias" "${trainer_env[@]}" "$d/train" --device cuda --steps 3 --no-resume \
				--no-save --profile --quiet --ckpt-dir "$tmp/c" --metrics "$tmp/mma$T$route.jsonl" --data "$data" \
				2>"$tmp/mmaerr$T.txt" | grep "MoE layer" || true)
			if [ -z "$moe" ]; then
				echo "moec mma.sync T=$T $route: failed: $(tail -3 "$tmp/mmaerr$T.txt" 2>/dev/null | tr '\n' ' ')"
				continue
			fi
			echo "moec mma.sync T=$T $route (--arch sm_90, the comparison engine): ${moe#"${moe%%[! ]*}"}"
			ours=$(sed -n 's/.* \([0-9.]*\) TFLOP\/s.*/\1/p' "$tmp/moec$T$route.txt" 2>/dev/null | head -1)
			mma=$(echo "$moe" | sed -n 's/.* \([0-9.]*\) TFLOP\/s.*/\1/p' | head -1)
			if [ -n "$ours" ] && [ -n "$mma" ]; then
				awk -v a="$ours" -v b="$mma" -v t="$T" -v r="$route" \
					'BEGIN {printf "engines T=%d %s: wgmma %.1f vs mma.sync %.1f TFLOP/s, wgmma / mma.sync = %.2f\n", t, r, a, b, a / b}'
			fi
		done
	done
}

# mfu TOKENS_PER_S FLOP_PER_TOKEN PEAK: "X model TFLOP/s, MFU Y% of PEAK"
mfu() {
	if [ -z "$2" ]; then
		echo "(no FLOP count: the moec run failed)"
	elif [ -z "$3" ]; then
		awk -v t="$1" -v f="$2" 'BEGIN {printf "%.1f model TFLOP/s (MFU: peak of this GPU unknown)", t * f / 1e12}'
	else
		awk -v t="$1" -v f="$2" -v p="$3" \
			'BEGIN {printf "%.1f model TFLOP/s, MFU %.1f%% of %d (dense bf16 peak)", t * f / 1e12, 100 * t * f / 1e12 / p, p}'
	fi
}

# report CMD...: CMD's output to the terminal, REPORT and (RESULTS=1) bench/results
report() {
	local log
	log=$(mktemp)
	"$@" 2>&1 | tee "$log"
	if [ -n "${REPORT:-}" ]; then
		cat "$log" >"$REPORT"
	fi
	if [ "${RESULTS:-0}" = 1 ]; then
		cp "$log" "bench/results/$(date -u +%Y-%m-%d)_moe_gpu.txt"
	fi
	rm -f "$log"
}

tmp=$(mktemp -d)
dir=
trap 'rm -rf "$tmp" ${dir:+"$dir"}' EXIT
case "${1:-}" in
build)
	[ $# -eq 2 ] || { echo "usage: bench/moe_gpu.sh build DIR" >&2; exit 2; }
	build "$2"
	;;
run)
	if [ $# -lt 2 ] || [ $# -gt 3 ]; then
		echo "usage: bench/moe_gpu.sh run DIR [layer|model|all]" >&2
		exit 2
	fi
	case "${3:-all}" in layer | model | all) ;; *) echo "moe_gpu.sh: run what? layer, model or all" >&2; exit 2 ;; esac
	report run "$2" "${3:-all}"
	;;
"")
	dir=$(mktemp -d)
	build "$dir" >/dev/null
	MOE_GPU_COMMAND=${MOE_GPU_COMMAND:-bench/moe_gpu.sh} report run "$dir" all
	;;
*)
	echo "usage: bench/moe_gpu.sh [build DIR | run DIR [layer|model|all]]" >&2
	exit 2
	;;
esac

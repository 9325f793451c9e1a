#!/usr/bin/env bash
# train_cpu.sh [THREADS] - tokens/s of the tiny example's trainer on the CPU backend, and
# the baseline measured in the same run: Hugging Face transformers training the same model
# (bench/hf_train_cpu.py; needs python3 with torch and transformers). Prints both and the
# ratio; with RESULTS=1 also writes bench/results/<date>_train_cpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
load=$(cut -d' ' -f1-3 /proc/loadavg) # other work on the machine skews both numbers
steps=40 warmup=5
moec=build/release/moec
[ -x "$moec" ] || { echo "build moec first: scripts/setup.sh"; exit 1; }
"$moec" build examples/tiny_qwen3_moe.yaml -o build/bench_tiny >/dev/null
run=$(mktemp -d)
OPENBLAS_NUM_THREADS=$threads build/bench_tiny/train --quiet --no-resume --steps $((warmup + steps)) \
	--ckpt-dir "$run/ck" --save-every 0 --metrics "$run/m.jsonl"
moec_tps=$(grep '^{"step"' "$run/m.jsonl" | tail -n "$steps" |
	sed 's/.*"step_s":\([^,]*\).*/\1/' | awk -v t=1024 '{s += $1} END {printf "%.1f", NR * t / s}')
rm -rf "$run"
hf=$(python3 bench/hf_train_cpu.py "$threads" "$steps" "$warmup")
hf_tps=$(echo "$hf" | awk '{print $2}')
report=$(cat <<REPORT
# moec CPU backend vs Hugging Face transformers, training examples/tiny_qwen3_moe.yaml
date:     $(date -u +%Y-%m-%dT%H:%MZ)
commit:   $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- compiler runtime kernels || echo " (+ uncommitted changes)")
machine:  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); threads used: $threads; load before: $load
command:  bench/train_cpu.sh $threads   ($steps timed steps after $warmup warm-up, 4 x 256 tokens per step, fp32)
moec:     $moec_tps tokens/s (build/bench_tiny/train, OpenBLAS)
baseline: $hf_tps tokens/s (transformers $(python3 -c 'import transformers; print(transformers.__version__)'), torch $(python3 -c 'import torch; print(torch.__version__)'), $(echo "$hf" | cut -d' ' -f3-))
ratio:    $(awk -v a="$moec_tps" -v b="$hf_tps" 'BEGIN {printf "%.2f", a / b}') (moec / baseline)
REPORT
)
echo "$report"
if [ "${RESULTS:-0}" = 1 ]; then
	mkdir -p bench/results
	echo "$report" >"bench/results/$(date -u +%Y-%m-%d)_train_cpu.txt"
fi

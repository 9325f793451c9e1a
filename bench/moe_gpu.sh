#!/usr/bin/env bash
# moe_gpu.sh - issue 5's benchmarks on one GPU, each with its baseline measured in the same
# run (needs moec built, a GPU, and python3 with torch + transformers for the baselines):
#  (a) the MoE layer forward + backward at Qwen3-30B-A3B shapes for T = 4k..32k tokens:
#      moec's router_* and moe_* kernels timed one by one (train --profile) against
#      torch._grouped_mm and transformers' sparse block (bench/moe_layer_torch.py);
#  (b) the 4-layer model (bench/specs/qwen3_30b_a3b_4layers.yaml, seq 4096, bf16): training
#      tokens/s and MFU against transformers on the same config.
# Prints everything; with RESULTS=1 also writes bench/results/<date>_moe_gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
moec=${MOEC:-build/release/moec}
out=$(mktemp -d)
log=$out/report.txt
{
echo "# moec on the GPU vs PyTorch: MoE layer and 4-layer Qwen3-30B-A3B model (bf16)"
echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
echo "commit:  $(git rev-parse --short HEAD)"
echo "device:  $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
echo "command: bench/moe_gpu.sh"
echo
echo "## (a) MoE layer fwd+bwd, H 2048, E 128, I 768, k 8 (TFLOP/s = 6 k H I 3 per token)"
for T in 4096 8192 16384 32768; do
	"$moec" build bench/specs/qwen3_30b_a3b_4layers.yaml -o "$out/b$T" --set train.micro_batch=$((T / 4096)) >/dev/null
	moe=$("$out/b$T/train" --device cuda --steps 3 --no-resume --no-save --profile --quiet --ckpt-dir "$out/c" \
		--metrics /dev/null | grep "MoE layer")
	echo "moec T=$T (the routing of a random init, which is skewed in deep layers): $moe"
	python3 bench/moe_layer_torch.py $T balanced | tee "$out/torch$T.txt" || true
	python3 bench/moe_layer_torch.py $T skewed || true
	ours=$(echo "$moe" | sed -n 's/.* \([0-9.]*\) TFLOP\/s.*/\1/p')
	base=$(sed -n 's/^grouped_mm.* \([0-9.]*\) TFLOP\/s.*/\1/p' "$out/torch$T.txt")
	[ -n "$ours" ] && [ -n "$base" ] &&
		awk -v a="$ours" -v b="$base" -v t=$T 'BEGIN {printf "ratio T=%d: moec / grouped_mm (balanced) = %.2f\n", t, a / b}'
done
echo
echo "## (b) 4 layers, seq 4096, batch 1, bf16, AdamW"
"$out/b4096/train" --device cuda --steps 12 --no-resume --no-save --quiet --ckpt-dir "$out/c" --metrics "$out/m.jsonl"
grep '^{"step"' "$out/m.jsonl" | tail -8 | sed 's/.*"step_s":\([^,]*\).*/\1/' |
	awk '{s += $1} END {printf "moec: %.0f tokens/s\n", NR * 4096 / s}' | tee "$out/ours.txt"
grep '^{"step"' "$out/m.jsonl" | tail -1 | sed 's/.*"model_tflops":\([^,]*\).*/moec model TFLOP\/s: \1 (MFU = this \/ 989 on an H100)/'
python3 - <<'PY' | tee "$out/hf.txt" || true
import sys, time, numpy as np, torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
cfg = Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                     num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128,
                     num_experts_per_tok=8, norm_topk_prob=True, tie_word_embeddings=False, output_router_logits=True)
model = Qwen3MoeForCausalLM(cfg).cuda().to(torch.bfloat16)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
data = np.fromfile("data/tiny_shakespeare_train.bin", dtype=np.uint16, offset=1024).astype(np.int64)
S = 4096
for step in range(11):
    if step == 3:
        torch.cuda.synchronize(); t0 = time.perf_counter()
    b = torch.from_numpy(data[step * S:step * S + S][None]).cuda()
    model(input_ids=b, labels=b).loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
torch.cuda.synchronize()
print(f"baseline, transformers bf16 (AdamW on bf16 params): {8 * S / (time.perf_counter() - t0):.0f} tokens/s")
PY
base=$(sed -n 's/^baseline.*: \([0-9]*\) tokens\/s/\1/p' "$out/hf.txt")
ours=$(sed -n 's/^moec: \([0-9]*\) tokens\/s/\1/p' "$out/ours.txt")
[ -n "$base" ] && [ -n "$ours" ] && awk -v a="$ours" -v b="$base" 'BEGIN {printf "ratio: moec / transformers = %.2f\n", a / b}'
} 2>&1 | tee "$log"
if [ "${RESULTS:-0}" = 1 ]; then
	cp "$log" "bench/results/$(date -u +%Y-%m-%d)_moe_gpu.txt"
fi
rm -rf "$out"

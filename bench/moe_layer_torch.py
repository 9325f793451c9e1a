#!/usr/bin/env python3
"""moe_layer_torch.py - the baselines of bench/moe_gpu.sh: one MoE layer at Qwen3-30B-A3B
shapes (H 2048, E 128 experts of width 768, top-8), forward + backward in bf16 on the GPU,
for T tokens:
  grouped_mm  router + softmax top-k + permute + torch._grouped_mm gate/up, SwiGLU, down +
              weighted combine (the fastest PyTorch formulation)
  hf          transformers' Qwen3MoeSparseMoeBlock
TFLOP/s counts 6 * k * H * I * 3 per token (the expert GEMMs, forward + backward), as the
moec side does. Routing: "balanced" (uniform random logits) or "skewed" (a bias that sends
most tokens to 8 experts).

  python3 bench/moe_layer_torch.py T [balanced|skewed]
"""
import sys
import time

import torch
import torch.nn.functional as F

H, E, I, K = 2048, 128, 768, 8


def timed(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def grouped_mm_layer(T, skew):
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(T, H, device=dev, dtype=dt, requires_grad=True)
    wr = (torch.randn(E, H, device=dev, dtype=dt) * 0.02).requires_grad_()
    wgu = (torch.randn(E, H, 2 * I, device=dev, dtype=dt) * 0.02).requires_grad_()
    wd = (torch.randn(E, I, H, device=dev, dtype=dt) * 0.02).requires_grad_()
    bias = torch.zeros(E, device=dev)
    if skew:
        bias[:8] = 4.0

    def step():
        logits = (x @ wr.t()).float() + bias
        p = logits.softmax(-1)
        w, ids = p.topk(K, -1)
        w = (w / w.sum(-1, keepdim=True)).to(dt)
        flat = ids.flatten()
        order = flat.argsort()
        counts = torch.bincount(flat, minlength=E)
        offs = counts.cumsum(0).to(torch.int32)
        xs = x.repeat_interleave(K, 0)[order]
        gu = torch._grouped_mm(xs, wgu, offs=offs)
        h = F.silu(gu[:, :I]) * gu[:, I:]
        y = torch._grouped_mm(h, wd, offs=offs)
        out = torch.zeros(T * K, H, device=dev, dtype=dt).index_copy(0, order, y)
        out = (out.view(T, K, H) * w.unsqueeze(-1)).sum(1)
        out.sum().backward()

    return timed(step)


def hf_layer(T, skew):
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
    cfg = Qwen3MoeConfig(hidden_size=H, moe_intermediate_size=I, num_experts=E, num_experts_per_tok=K,
                         norm_topk_prob=True)
    block = Qwen3MoeSparseMoeBlock(cfg).to("cuda", torch.bfloat16)
    x = torch.randn(1, T, H, device="cuda", dtype=torch.bfloat16, requires_grad=True)

    def step():
        out = block(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().sum().backward()

    return timed(step, reps=5, warmup=2)


def main():
    T = int(sys.argv[1])
    skew = len(sys.argv) > 2 and sys.argv[2] == "skewed"
    flop = 6.0 * K * H * I * 3 * T
    torch.manual_seed(0)
    for name, fn in (("grouped_mm", grouped_mm_layer), ("hf", hf_layer)):
        try:
            s = fn(T, skew)
            print(f"{name} T={T} {'skewed' if skew else 'balanced'}: {s * 1e3:.2f} ms, {flop / s / 1e12:.1f} TFLOP/s, "
                  f"{T / s:.0f} tokens/s, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        except Exception as e:  # a baseline that cannot run says so rather than hiding the other
            print(f"{name} T={T}: failed: {type(e).__name__}: {e}")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()

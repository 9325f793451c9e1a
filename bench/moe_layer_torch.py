#!/usr/bin/env python3
"""moe_layer_torch.py - the PyTorch baselines of bench/moe_gpu.sh, in bf16 on the GPU.

  python3 bench/moe_layer_torch.py T [T...] [balanced|skewed|both]
      One MoE layer at Qwen3-30B-A3B shapes (H 2048, E 128 experts of width 768, top-8),
      forward + backward, for T tokens:
        grouped_mm  router + softmax top-k + permute + torch._grouped_mm gate/up, SwiGLU, down
                    + weighted combine (the fastest plain-PyTorch formulation)
        hf          transformers' Qwen3MoeSparseMoeBlock with the experts backend a
                    Qwen3MoeForCausalLM picks by default (grouped_mm on torch >= 2.9)
        hf_eager    the same block with the "eager" backend (a loop over the experts)
      TFLOP/s counts 6 * k * H * I * 3 per token (the expert GEMMs, forward + backward), as
      moec's train --profile does. Routing: "balanced" (random router weights, about
      uniform) or "skewed" (a +4 logit on 8 experts, which then get most tokens); default
      balanced. One process for every T: torch and transformers are imported once.

  python3 bench/moe_layer_torch.py model [STEPS [WARMUP [ACCUM]]]
      transformers' Qwen3MoeForCausalLM with bench/specs/qwen3_30b_a3b_4layers.yaml's config
      (4 layers, vocab 151936), bf16 parameters, AdamW, seq 4096, batch 1, ACCUM (default 1)
      micro-batches (each loss / ACCUM, as moec's train.grad_accum) per optimizer step, on the
      bundled token shard: training tokens/s over STEPS (default 8) steps after WARMUP
      (default 3).

  --smoke (anywhere): tiny shapes on the CPU, to check the code paths without a GPU.

Each result is one line; a baseline that cannot run prints "NAME ...: failed: ..." rather
than hiding the others.
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

SMOKE = "--smoke" in sys.argv
ARGS = [a for a in sys.argv[1:] if a != "--smoke"]
DEV = "cpu" if SMOKE else "cuda"
DT = torch.bfloat16
if SMOKE:
    H, E, I, K = 64, 16, 32, 4
else:
    H, E, I, K = 2048, 128, 768, 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


def grouped_mm_layer(T, skew):
    x = torch.randn(T, H, device=DEV, dtype=DT, requires_grad=True)
    wr = (torch.randn(E, H, device=DEV, dtype=DT) * 0.02).requires_grad_()
    wgu = (torch.randn(E, H, 2 * I, device=DEV, dtype=DT) * 0.02).requires_grad_()
    wd = (torch.randn(E, I, H, device=DEV, dtype=DT) * 0.02).requires_grad_()
    bias = torch.zeros(E, device=DEV)
    if skew:
        bias[:8] = 4.0

    def step():
        logits = (x @ wr.t()).float() + bias
        p = logits.softmax(-1)
        w, ids = p.topk(K, -1)
        w = (w / w.sum(-1, keepdim=True)).to(DT)
        flat = ids.flatten()
        order = flat.argsort()
        counts = torch.bincount(flat, minlength=E)
        offs = counts.cumsum(0).to(torch.int32)
        xs = x.repeat_interleave(K, 0)[order]
        gu = torch._grouped_mm(xs, wgu, offs=offs)
        h = F.silu(gu[:, :I]) * gu[:, I:]
        y = torch._grouped_mm(h, wd, offs=offs)
        out = torch.zeros(T * K, H, device=DEV, dtype=DT).index_copy(0, order, y)
        out = (out.view(T, K, H) * w.unsqueeze(-1)).sum(1)
        out.sum().backward()

    return timed(step), "torch._grouped_mm"


def hf_block(T, skew, backend):
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
    cfg = Qwen3MoeConfig(hidden_size=H, moe_intermediate_size=I, num_experts=E, num_experts_per_tok=K,
                         norm_topk_prob=True)
    if backend == "default":  # what Qwen3MoeForCausalLM would choose
        try:
            from transformers import Qwen3MoeForCausalLM
            tiny = Qwen3MoeConfig(vocab_size=32, hidden_size=16, intermediate_size=16, moe_intermediate_size=16,
                                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                  num_experts=2, num_experts_per_tok=1)
            backend = getattr(Qwen3MoeForCausalLM(tiny).config, "_experts_implementation", None) or "eager"
        except Exception:  # an older transformers without experts backends
            backend = "eager"
    if hasattr(cfg, "_experts_implementation"):
        cfg._experts_implementation = backend
    block = Qwen3MoeSparseMoeBlock(cfg).to(DEV, DT)
    # the module's own parameters start as zeros/empty (the model's _init_weights fills them):
    # a zero router would send every token to the same experts
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0.0, 0.02)
    x = torch.randn(1, T, H, device=DEV, dtype=DT)
    if skew:  # logits + 4 on experts 0..7, as grouped_mm_layer's bias: feature 0 is 1, its weight 4
        x[..., 0] = 1.0
        with torch.no_grad():
            block.gate.weight[:8, 0] += 4.0
    x.requires_grad_()

    def step():
        out = block(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().sum().backward()

    return timed(step, reps=5, warmup=2), f"experts backend {backend}"


def layers(tokens, routings):
    flop_per_token = 6.0 * K * H * I * 3
    for T in tokens:
        for skew in routings:
            torch.manual_seed(0)
            for name, fn in (("grouped_mm", grouped_mm_layer),
                             ("hf", lambda t, s: hf_block(t, s, "default")),
                             ("hf_eager", lambda t, s: hf_block(t, s, "eager"))):
                label = f"{name} T={T} {'skewed' if skew else 'balanced'}"
                try:
                    s, how = fn(T, skew)
                    peak = torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else 0.0
                    print(f"{label}: {s * 1e3:.2f} ms, {flop_per_token * T / s / 1e12:.1f} TFLOP/s, "
                          f"{T / s:.0f} tokens/s, peak {peak:.1f} GiB ({how})", flush=True)
                except Exception as e:  # a baseline that cannot run says so rather than hiding the others
                    print(f"{label}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                if DEV == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()


def model(steps, warmup, accum=1):
    import numpy as np
    import transformers
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    if SMOKE:
        cfg = Qwen3MoeConfig(vocab_size=512, hidden_size=H, intermediate_size=128, moe_intermediate_size=I,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                             num_experts=E, num_experts_per_tok=K, norm_topk_prob=True, tie_word_embeddings=False,
                             output_router_logits=True)
        S = 64
    else:  # bench/specs/qwen3_30b_a3b_4layers.yaml
        cfg = Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                             num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                             num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, rms_norm_eps=1e-6,
                             rope_theta=1e6, tie_word_embeddings=False, output_router_logits=True,
                             router_aux_loss_coef=0.001)
        S = 4096
    torch.manual_seed(0)
    # made on the device in bf16 (3.1 B parameters: an fp32 init on the host takes a minute)
    torch.set_default_dtype(DT)
    with torch.device(DEV):
        m = Qwen3MoeForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    m = m.to(DEV, DT)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    data = np.fromfile(os.path.join(ROOT, "data/tiny_shakespeare_train.bin"), dtype=np.uint16,
                       offset=1024).astype(np.int64)
    t0 = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            sync()
            t0 = time.perf_counter()
        for a in range(accum):
            i = (step * accum + a) * S % (len(data) - S)  # the shard is ~300k tokens: wrap
            b = torch.from_numpy(data[i:i + S][None]).to(DEV)
            (m(input_ids=b, labels=b).loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)  # as moec's train.max_grad_norm default
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    tps = steps * accum * S / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else 0.0
    print(f"baseline, transformers {transformers.__version__} / torch {torch.__version__}, bf16 parameters, AdamW, clip 1.0, "
          f"experts {getattr(m.config, '_experts_implementation', None) or 'eager'}, "
          f"attention {getattr(m.config, '_attn_implementation', '?')}, peak {peak:.1f} GiB: {tps:.0f} tokens/s",
          flush=True)


def main():
    if not ARGS:
        sys.exit(__doc__)
    if DEV == "cuda" and not torch.cuda.is_available():
        sys.exit("moe_layer_torch.py: failed: torch sees no CUDA device")
    if ARGS[0] == "model":
        model(int(ARGS[1]) if len(ARGS) > 1 else 8, int(ARGS[2]) if len(ARGS) > 2 else 3,
              int(ARGS[3]) if len(ARGS) > 3 else 1)
        return
    tokens = [int(a) for a in ARGS if a.isdigit()]
    kinds = [a for a in ARGS if not a.isdigit()]
    mode = kinds[0] if kinds else "balanced"
    if not tokens or len(kinds) > 1 or mode not in ("balanced", "skewed", "both"):
        sys.exit(__doc__)
    layers(tokens, {"balanced": [False], "skewed": [True], "both": [False, True]}[mode])


if __name__ == "__main__":
    main()

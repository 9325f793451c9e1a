#!/usr/bin/env python3
"""hf_train_cpu.py - the baseline for bench/train_cpu.sh: Hugging Face transformers training
the same tiny Qwen3-MoE (tests/fixtures/hf/qwen3_moe_tiny/config.json, the model of
examples/tiny_qwen3_moe.yaml) on the CPU, fp32, AdamW, with the same batch shape, on the
same token shard. Prints one line: "hf_tokens_per_s <value> <attn>/<experts> threads=<n>".

  python3 bench/hf_train_cpu.py THREADS STEPS WARMUP
"""
import sys
import time

import numpy as np
import torch
from transformers import AutoConfig, Qwen3MoeForCausalLM

threads, steps, warmup = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(1234)
B, S = 4, 256  # examples/tiny_qwen3_moe.yaml: micro_batch 4, seq_len 256

cfg = AutoConfig.from_pretrained("tests/fixtures/hf/qwen3_moe_tiny")
cfg.output_router_logits = True
impl = "default"
try:
    model = Qwen3MoeForCausalLM(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.zeros(B, S + 1, dtype=torch.long)
    model(input_ids=x[:, :-1], labels=x[:, :-1]).loss.backward()
except Exception as e:  # an experts kernel missing on the CPU: the eager loop
    impl = "eager"
    cfg.experts_implementation = "eager"
    model = Qwen3MoeForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)

data = np.fromfile("data/tiny_shakespeare_train.bin", dtype=np.uint16, offset=1024).astype(np.int64)
rng = np.random.default_rng(0)
t0 = None
for step in range(warmup + steps):
    if step == warmup:
        t0 = time.perf_counter()
    starts = rng.integers(0, len(data) - S - 1, size=B)
    batch = torch.from_numpy(np.stack([data[s:s + S + 1] for s in starts]))
    out = model(input_ids=batch[:, :-1], labels=batch[:, :-1])
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
dt = time.perf_counter() - t0
print(f"hf_tokens_per_s {B * S * steps / dt:.1f} {cfg._attn_implementation}/{impl} threads={threads}")

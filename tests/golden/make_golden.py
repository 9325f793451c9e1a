#!/usr/bin/env python3
"""make_golden.py - golden vectors from Hugging Face transformers' Qwen3-MoE for moec's
trainer tests: one forward, backward and AdamW step of a tiny random Qwen3MoeForCausalLM.

    python3 tests/golden/make_golden.py            # rewrites tests/golden/<cfg>/ for every cfg

Python is only used to produce these files; the tests read them from C. Everything is
deterministic (CPU, float32, eager attention, eager experts, deterministic algorithms, fixed
seeds). For each config it writes, into tests/golden/<cfg>/:

  config.json        the Hugging Face config (Qwen3MoeForCausalLM, saved by transformers)
  model.safetensors  initial fp32 weights under the standard per-expert checkpoint names
  golden.safetensors input_ids, labels, logits, loss, ce_loss, aux_loss, grad.<name>,
                     adamw.<name>, and per-layer activations / router outputs for debugging
  golden.json        batch shape, optimizer settings, grad norm, decay groups, versions, seed
  spec.yaml          the moec spec of the same model and training step
  tokens.bin         llm.c shard (uint16) holding input_ids row after row, for data.paths

See README.md next to this file for the conventions.
"""
import json
import os
import shutil
import struct
import sys
import tempfile

import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

HERE = os.path.dirname(os.path.abspath(__file__))

# Both configs initialize every matrix N(0, INIT_STD) and every RMSNorm weight
# 1 + N(0, NORM_STD) (not all ones, so a forgotten norm weight shows in the outputs).
INIT_STD = 0.05
NORM_STD = 0.1
GAP_MIN = 1e-4          # router probabilities around the top-k cut must differ by more
MAX_SEED_TRIES = 200

CONFIGS = {
    "a": dict(
        model=dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
                   moe_intermediate_size=32, intermediate_size=128, norm_topk_prob=True,
                   router_aux_loss_coef=0.01, mlp_only_layers=[], decoder_sparse_step=1),
        B=2, S=16, lr=1e-3, max_grad_norm=1.0, base_seed=1000,
        # (row, position) of labels set to -100; position 0 never counts (HF shifts it out)
        ignore=[(0, 0), (0, 5), (1, 10), (1, 11)],
    ),
    "b": dict(
        model=dict(vocab_size=96, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=16, num_experts=8, num_experts_per_tok=3,
                   moe_intermediate_size=24, intermediate_size=80, norm_topk_prob=False,
                   router_aux_loss_coef=0.02, mlp_only_layers=[1], decoder_sparse_step=1),
        B=3, S=12, lr=3e-3, max_grad_norm=0.0, base_seed=2000,
        ignore=[(0, 7), (1, 3), (2, 11)],
    ),
}

BETAS = (0.9, 0.95)
EPS = 1e-8
WEIGHT_DECAY = 0.1


def make_config(m):
    return Qwen3MoeConfig(
        **m,
        hidden_act="silu",
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        rms_norm_eps=1e-6,
        use_sliding_window=False,
        sliding_window=None,
        tie_word_embeddings=False,
        attention_bias=False,
        attention_dropout=0.0,
        output_router_logits=True,
        initializer_range=INIT_STD,
        use_cache=False,
        dtype="float32",
    )


def is_moe_layer(cfg, i):
    return i not in cfg.mlp_only_layers and cfg.num_experts > 0 and (i + 1) % cfg.decoder_sparse_step == 0


def checkpoint_shapes(cfg):
    """Checkpoint tensor names and shapes, in a fixed order (the order weights are drawn)."""
    H, V, hd = cfg.hidden_size, cfg.vocab_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    out = [("model.embed_tokens.weight", (V, H))]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (H,)),
            (p + "self_attn.q_proj.weight", (q, H)),
            (p + "self_attn.k_proj.weight", (kv, H)),
            (p + "self_attn.v_proj.weight", (kv, H)),
            (p + "self_attn.o_proj.weight", (H, q)),
            (p + "self_attn.q_norm.weight", (hd,)),
            (p + "self_attn.k_norm.weight", (hd,)),
            (p + "post_attention_layernorm.weight", (H,)),
        ]
        if is_moe_layer(cfg, i):
            I = cfg.moe_intermediate_size
            out.append((p + "mlp.gate.weight", (cfg.num_experts, H)))
            for e in range(cfg.num_experts):
                out += [
                    (p + f"mlp.experts.{e}.gate_proj.weight", (I, H)),
                    (p + f"mlp.experts.{e}.up_proj.weight", (I, H)),
                    (p + f"mlp.experts.{e}.down_proj.weight", (H, I)),
                ]
        else:
            D = cfg.intermediate_size
            out += [
                (p + "mlp.gate_proj.weight", (D, H)),
                (p + "mlp.up_proj.weight", (D, H)),
                (p + "mlp.down_proj.weight", (H, D)),
            ]
    out += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return out


def init_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape in checkpoint_shapes(cfg):
        if len(shape) == 1:
            w[name] = 1.0 + NORM_STD * torch.randn(shape, generator=g, dtype=torch.float32)
        else:
            w[name] = INIT_STD * torch.randn(shape, generator=g, dtype=torch.float32)
    return w


def module_to_checkpoint(cfg, tensors):
    """Module tensors (transformers 5 keeps each layer's experts fused: gate_up_proj
    [E, 2I, H] = [gate; up] along dim 1, down_proj [E, H, I]) -> per-expert checkpoint names."""
    out = {}
    I = cfg.moe_intermediate_size
    for name, t in tensors.items():
        t = t.detach()
        if name.endswith("mlp.experts.gate_up_proj"):
            pre = name[: -len("gate_up_proj")]
            for e in range(t.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = t[e, :I].clone().contiguous()
                out[f"{pre}{e}.up_proj.weight"] = t[e, I:].clone().contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            pre = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = t[e].clone().contiguous()
        else:
            out[name] = t.clone().contiguous()
    return out


def ordered(cfg, d):
    names = [n for n, _ in checkpoint_shapes(cfg)]
    assert set(names) == set(d.keys()), sorted(set(names) ^ set(d.keys()))
    for n, s in checkpoint_shapes(cfg):
        assert tuple(d[n].shape) == s, (n, tuple(d[n].shape), s)
    return {n: d[n] for n in names}


def load_model(path):
    m = Qwen3MoeForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                            experts_implementation="eager")
    assert m.config._attn_implementation == "eager", m.config._attn_implementation
    assert m.config._experts_implementation == "eager", m.config._experts_implementation
    return m


def make_batch(cfg, spec, seed):
    g = torch.Generator().manual_seed(seed + 7)
    ids = torch.randint(0, cfg.vocab_size, (spec["B"], spec["S"]), generator=g)
    labels = ids.clone()
    for b, t in spec["ignore"]:
        labels[b, t] = -100
    return ids, labels


def forward(model, ids, labels):
    """Forward with hooks that record activations and router outputs."""
    acts, router = {}, {}
    hooks = [model.model.embed_tokens.register_forward_hook(lambda m, i, o: acts.__setitem__("act.embed", o.detach().clone())),
             model.model.norm.register_forward_hook(lambda m, i, o: acts.__setitem__("act.final_norm", o.detach().clone()))]
    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.register_forward_hook(
            lambda m, inp, o, i=i: acts.__setitem__(f"act.layer.{i}", (o[0] if isinstance(o, tuple) else o).detach().clone())))
        if hasattr(layer.mlp, "gate"):
            hooks.append(layer.mlp.gate.register_forward_hook(
                lambda m, inp, o, i=i: router.__setitem__(i, tuple(x.detach().clone() for x in o))))
    out = model(input_ids=ids, labels=labels, output_router_logits=True)
    for h in hooks:
        h.remove()
    return out, acts, router


def routing_gap(router, k):
    """Smallest difference among the k+1 largest router probabilities of any token, any layer."""
    worst = float("inf")
    for logits, _, _ in router.values():
        p = torch.softmax(logits.double(), dim=-1)
        top = torch.sort(p, dim=-1, descending=True).values[:, : k + 1]
        worst = min(worst, (top[:, :-1] - top[:, 1:]).min().item())
    return worst


def hand_losses(cfg, logits, labels, router_logits):
    """The loss as DESIGN.md defines it, recomputed from the logits and router logits."""
    B, S, V = logits.shape
    tgt = labels[:, 1:].reshape(-1)
    lg = logits[:, :-1].reshape(-1, V).double()
    keep = tgt != -100
    ce = -(torch.log_softmax(lg, -1)[keep].gather(1, tgt[keep, None])).mean()
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    rows = torch.cat([r.double() for r in router_logits], 0)     # every MoE layer's rows
    probs = torch.softmax(rows, -1)
    chosen = torch.topk(probs, k, -1).indices                      # [R, k]
    f = torch.zeros(k, E, dtype=torch.float64)
    for j in range(k):
        f[j] = torch.bincount(chosen[:, j], minlength=E).double() / rows.shape[0]
    P = probs.mean(0)
    aux = E * (f * P[None, :]).sum()
    return ce, aux, keep.sum().item()


def write_llmc_shard(path, ids):
    toks = ids.reshape(-1).tolist()
    header = [20240520, 1, len(toks)] + [0] * 253
    with open(path, "wb") as fh:
        fh.write(struct.pack("<256i", *header))
        fh.write(struct.pack(f"<{len(toks)}H", *toks))


def spec_yaml(name, spec):
    return f"""\
# Generated by tests/golden/make_golden.py: the moec job of golden config '{name}': the
# model of config.json (imported), one fp32 training step of the batch in golden.safetensors
# from the weights in model.safetensors. Regenerate with: python3 tests/golden/make_golden.py

name: golden_{name}

model:
  hf_config: config.json

moe:
  router_z_loss_coef: 0        # Hugging Face's Qwen3-MoE has no z-loss

parallel:
  nodes: 1
  gpus_per_node: 1

train:
  mode: full
  precision: fp32
  seq_len: {spec['S']}
  micro_batch: {spec['B']}
  grad_accum: 1
  steps: 1
  lr: {spec['lr']!r}
  min_lr: {spec['lr']!r}
  schedule: constant
  warmup_steps: 0
  adam_beta1: {BETAS[0]!r}
  adam_beta2: {BETAS[1]!r}
  adam_eps: {EPS!r}
  weight_decay: {WEIGHT_DECAY!r}
  max_grad_norm: {spec['max_grad_norm']!r}
  recompute: none
  seed: {spec['seed']}

data:
  paths: [tokens.bin]          # input_ids, row after row (llm.c shard, uint16)
  format: llmc
  packing: false
  shuffle: false

checkpoint:
  init_from: .                 # config.json + model.safetensors in this directory
  every: 0
  resume: false
"""


def build(name, spec):
    cfg_kwargs = spec["model"]
    outdir = os.path.join(HERE, name)
    tmp = tempfile.mkdtemp(prefix=f"golden_{name}_")
    try:
        for attempt in range(MAX_SEED_TRIES):
            seed = spec["base_seed"] + attempt
            cfg = make_config(cfg_kwargs)
            weights = ordered(cfg, init_weights(cfg, seed))

            # Write the checkpoint ourselves under the per-expert names, load it with
            # from_pretrained (transformers fuses the experts on load), and check that the
            # module weights are exactly what we wrote.
            cfg.save_pretrained(tmp)
            save_file(weights, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
            torch.manual_seed(seed)
            model = load_model(tmp)
            params = dict(model.named_parameters())
            loaded = ordered(cfg, module_to_checkpoint(cfg, params))
            for n in weights:
                assert torch.equal(loaded[n], weights[n]), f"{name}: {n} differs after from_pretrained"
            fused = [n for n in params if n.endswith("experts.gate_up_proj")]
            I = cfg.moe_intermediate_size
            for n in fused:   # spot check of the layout: gate rows first, then up rows
                pre = n[: -len("gate_up_proj")]
                assert torch.equal(params[n][1, :I], weights[pre + "1.gate_proj.weight"])
                assert torch.equal(params[n][1, I:], weights[pre + "1.up_proj.weight"])
            # transformers' own save writes the same names and values.
            resave = os.path.join(tmp, "resave")
            model.save_pretrained(resave)
            again = load_file(os.path.join(resave, "model.safetensors"))
            assert set(again) == set(weights), sorted(set(again) ^ set(weights))
            for n in weights:
                assert torch.equal(again[n], weights[n]), f"{name}: save_pretrained changes {n}"

            model.train()
            ids, labels = make_batch(cfg, spec, seed)
            out, acts, router = forward(model, ids, labels)
            gap = routing_gap(router, cfg.num_experts_per_tok)
            if gap > GAP_MIN:
                break
            print(f"{name}: seed {seed}: router gap {gap:.3g} <= {GAP_MIN}, next seed", file=sys.stderr)
        else:
            raise SystemExit(f"{name}: no seed with comfortable router gaps in {MAX_SEED_TRIES} tries")
        spec = dict(spec, seed=seed)

        # The output format: router_logits is a tuple with one [B*S, E] tensor per MoE layer.
        moe_layers = [i for i in range(cfg.num_hidden_layers) if is_moe_layer(cfg, i)]
        assert isinstance(out.router_logits, tuple) and len(out.router_logits) == len(moe_layers)
        for rl, i in zip(out.router_logits, moe_layers):
            assert torch.equal(rl, router[i][0])

        # The loss, recomputed by hand as DESIGN.md defines it.
        ce, aux, counted = hand_losses(cfg, out.logits.detach(), labels, [r.detach() for r in out.router_logits])
        coef = cfg.router_aux_loss_coef
        hf_ce = F.cross_entropy(out.logits.detach()[:, :-1].reshape(-1, cfg.vocab_size), labels[:, 1:].reshape(-1),
                                ignore_index=-100)
        assert abs(hf_ce.item() - ce.item()) <= 1e-6, (hf_ce.item(), ce.item())
        assert abs(out.aux_loss.item() - aux.item()) <= 1e-6, (out.aux_loss.item(), aux.item())
        assert abs(out.loss.item() - (ce.item() + coef * aux.item())) <= 1e-6, (out.loss.item(), ce.item(), aux.item())
        # Hugging Face adds the aux term to the loss in place; ce_loss is the CE alone.
        ce_loss = hf_ce

        out.loss.backward()
        grads = {n: p.grad for n, p in params.items()}
        assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
        grads_ckpt = ordered(cfg, module_to_checkpoint(cfg, grads))

        # The optimizer step moec takes: clip, then AdamW with decay on every param of ndim >= 2.
        plist = list(params.values())
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])).item()
        grad_norm64 = sum((g.double() ** 2).sum().item() for g in grads.values()) ** 0.5
        clip_coef = 1.0
        if spec["max_grad_norm"] > 0:
            tn = torch.nn.utils.clip_grad_norm_(plist, spec["max_grad_norm"], foreach=False)
            assert abs(tn.item() - grad_norm) <= 1e-6 * grad_norm
            clip_coef = min(1.0, spec["max_grad_norm"] / (tn.item() + 1e-6))
        decay = [n for n, p in params.items() if p.ndim >= 2]
        no_decay = [n for n, p in params.items() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": [params[n] for n in decay], "weight_decay": WEIGHT_DECAY},
             {"params": [params[n] for n in no_decay], "weight_decay": 0.0}],
            lr=spec["lr"], betas=BETAS, eps=EPS, foreach=False, fused=False)
        opt.step()
        after = ordered(cfg, module_to_checkpoint(cfg, params))
        decay_ckpt = [n for n in weights if weights[n].ndim >= 2]
        no_decay_ckpt = [n for n in weights if weights[n].ndim < 2]

        # Write everything.
        os.makedirs(outdir, exist_ok=True)
        for f in os.listdir(outdir):
            os.remove(os.path.join(outdir, f))
        cfg.save_pretrained(outdir)
        save_file(weights, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
        g = {
            "input_ids": ids.to(torch.int32).contiguous(),
            "labels": labels.to(torch.int32).contiguous(),
            "logits": out.logits.detach().contiguous(),
            "loss": out.loss.detach().reshape(1).contiguous(),
            "ce_loss": ce_loss.reshape(1).contiguous(),
            "aux_loss": out.aux_loss.detach().reshape(1).to(torch.float32).contiguous(),
        }
        for n, t in grads_ckpt.items():
            g["grad." + n] = t
        for n, t in after.items():
            g["adamw." + n] = t
        for n, t in acts.items():
            g[n] = t.contiguous()
        for i in moe_layers:
            lg, w, idx = router[i]
            g[f"router.{i}.logits"] = lg.contiguous()
            g[f"router.{i}.topk_weight"] = w.contiguous()
            g[f"router.{i}.topk_idx"] = idx.to(torch.int32).contiguous()
        save_file(g, os.path.join(outdir, "golden.safetensors"), metadata={"format": "pt"})
        write_llmc_shard(os.path.join(outdir, "tokens.bin"), ids)

        # Expert load, for the record.
        load = {str(i): torch.bincount(router[i][2].reshape(-1), minlength=cfg.num_experts).tolist() for i in moe_layers}
        info = {
            "config": name,
            "B": spec["B"], "S": spec["S"],
            "counted_targets": counted,
            "seed": seed,
            "seed_note": "weights: torch.Generator(seed), drawn in checkpoint order; batch: torch.Generator(seed + 7)",
            "init_std": INIT_STD,
            "norm_weight_init": f"1 + N(0, {NORM_STD})",
            "min_router_gap": gap,
            "router_gap_threshold": GAP_MIN,
            "moe_layers": moe_layers,
            "expert_tokens_per_layer": load,
            "loss": out.loss.item(), "ce_loss": ce_loss.item(), "aux_loss": out.aux_loss.item(),
            "router_aux_loss_coef": coef,
            "optimizer": {
                "type": "torch.optim.AdamW (foreach=False, fused=False), one step",
                "lr": spec["lr"], "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS,
                "weight_decay": WEIGHT_DECAY, "max_grad_norm": spec["max_grad_norm"],
                "schedule": "constant, no warmup",
            },
            "grad_norm": grad_norm,
            "grad_norm_fp64": grad_norm64,
            "clip_coef": clip_coef,
            "clip_rule": "torch.nn.utils.clip_grad_norm_: g *= min(1, max_norm / (norm + 1e-6)); off when max_grad_norm == 0",
            "grads_are": "d loss / d param before clipping",
            "weight_decay_params": decay_ckpt,
            "no_weight_decay_params": no_decay_ckpt,
            "decay_rule": "weight decay on every parameter with ndim >= 2 (embeddings, projections, router gate, experts, lm_head); none on 1-D norm weights",
            "num_params": sum(t.numel() for t in weights.values()),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "python": sys.version.split()[0]},
            "hf_settings": {"attn_implementation": "eager", "experts_implementation": "eager",
                            "dtype": "float32", "deterministic_algorithms": True, "mode": "model.train()"},
        }
        with open(os.path.join(outdir, "golden.json"), "w") as fh:
            json.dump(info, fh, indent=2)
            fh.write("\n")
        with open(os.path.join(outdir, "spec.yaml"), "w") as fh:
            fh.write(spec_yaml(name, spec))
        for f in os.listdir(outdir):
            os.chmod(os.path.join(outdir, f), 0o644)
        print(f"{name}: seed {seed} loss {out.loss.item():.7f} ce {ce_loss.item():.7f} aux {out.aux_loss.item():.7f} "
              f"grad_norm {grad_norm:.7f} min_gap {gap:.3g} params {info['num_params']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    names = sys.argv[1:] or list(CONFIGS)
    for name in names:
        build(name, CONFIGS[name])


if __name__ == "__main__":
    main()

/* lower.h - spec -> IR: the layer list, every weight tensor and every saved activation.
 *
 * The IR is the one description of the model that every later stage reads: plan.c counts
 * parameters, memory, FLOPs and bytes from it; emit writes its tensor table; ckpt reads
 * and writes safetensors by its names. It holds FULL (unsharded) shapes; how a tensor is
 * split is a property (`shard`), and which rank holds which slice is plan.c's business.
 *
 * Shape legend (as in spec.h):
 *   H = hidden, L = layers, E = routed experts, K = top-k, I = expert intermediate,
 *   D = dense intermediate, S = shared-expert width (num_shared * shared intermediate),
 *   V = vocab, NH = query heads, NKV = kv heads, HD = head dim, r = LoRA rank,
 *   QL = q_lora_rank, KVL = kv_lora_rank, NOPE/ROPE/VHD = MLA per-head widths.
 * Weights use nn.Linear's layout [out, in] unless `transposed` (GPT-OSS experts: [E, in, out]).
 */
#ifndef MOEC_LOWER_H
#define MOEC_LOWER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "spec.h"

#define IR_NAME_MAX 160
#define IR_MAX_DIMS 4

/* What a tensor is, independent of the family's spelling of its name. */
enum ir_role {
	IR_ROLE_EMBED,            /* [V, H] token embedding */
	IR_ROLE_LM_HEAD,          /* [V, H] output projection (absent when tied) */
	IR_ROLE_FINAL_NORM,       /* [H] */
	IR_ROLE_INPUT_NORM,       /* [H] before attention */
	IR_ROLE_POST_ATTN_NORM,   /* [H] before the MLP */
	IR_ROLE_Q,                /* [NH*HD, H] (MLA without q compression: [NH*(NOPE+ROPE), H]) */
	IR_ROLE_K,                /* [NKV*HD, H] */
	IR_ROLE_V,                /* [NKV*HD, H] */
	IR_ROLE_O,                /* [H, NH*HD] (MLA: [H, NH*VHD]) */
	IR_ROLE_Q_BIAS,           /* [NH*HD] */
	IR_ROLE_K_BIAS,           /* [NKV*HD] */
	IR_ROLE_V_BIAS,           /* [NKV*HD] */
	IR_ROLE_O_BIAS,           /* [H] */
	IR_ROLE_Q_NORM,           /* [HD] per-head RMSNorm of q (Qwen3) */
	IR_ROLE_K_NORM,           /* [HD] */
	IR_ROLE_SINKS,            /* [NH] learned sink logits (GPT-OSS) */
	IR_ROLE_Q_A,              /* [QL, H] MLA query down-projection */
	IR_ROLE_Q_A_BIAS,         /* [QL] */
	IR_ROLE_Q_A_NORM,         /* [QL] */
	IR_ROLE_Q_B,              /* [NH*(NOPE+ROPE), QL] */
	IR_ROLE_KV_A,             /* [KVL+ROPE, H] MLA joint kv down-projection + shared rope key */
	IR_ROLE_KV_A_BIAS,        /* [KVL+ROPE] */
	IR_ROLE_KV_A_NORM,        /* [KVL] */
	IR_ROLE_KV_B,             /* [NH*(NOPE+VHD), KVL] */
	IR_ROLE_ROUTER,           /* [E, H] */
	IR_ROLE_ROUTER_BIAS,      /* [E] bias of the router linear (GPT-OSS) */
	IR_ROLE_ROUTER_CORRECTION,/* [E] aux-loss-free selection bias (DeepSeek-V3), not a gradient param */
	IR_ROLE_EXPERT_GATE,      /* [E, I, H] */
	IR_ROLE_EXPERT_UP,        /* [E, I, H] */
	IR_ROLE_EXPERT_DOWN,      /* [E, H, I]; GPT-OSS: [E, I, H] transposed */
	IR_ROLE_EXPERT_GATE_UP,   /* [E, H, 2I] transposed, gate/up interleaved (GPT-OSS) */
	IR_ROLE_EXPERT_GATE_UP_BIAS, /* [E, 2I] */
	IR_ROLE_EXPERT_DOWN_BIAS, /* [E, H] */
	IR_ROLE_SHARED_GATE,      /* [S, H] */
	IR_ROLE_SHARED_UP,        /* [S, H] */
	IR_ROLE_SHARED_DOWN,      /* [H, S] */
	IR_ROLE_SHARED_EXPERT_GATE, /* [1, H] sigmoid gate on the shared output (Qwen2-MoE) */
	IR_ROLE_MLP_GATE,         /* [D, H] dense layers */
	IR_ROLE_MLP_UP,           /* [D, H] */
	IR_ROLE_MLP_DOWN,         /* [H, D] */
	IR_ROLE_LORA_A,           /* [r, in], stacked [E, r, in] */
	IR_ROLE_LORA_B,           /* [out, r], stacked [E, out, r] */
	IR_ROLE_COUNT
};

/* How the full tensor is split across ranks; `shard_dim` names the split dimension. */
enum ir_shard {
	IR_SHARD_REPLICATED, /* every rank holds it whole */
	IR_SHARD_TP_COLUMN,  /* output features split over tp (q/k/v, gate/up, lora_B of those) */
	IR_SHARD_TP_ROW,     /* input features split over tp (o, down, lora_A of those) */
	IR_SHARD_EP,         /* expert dimension split over ep: E/ep whole experts per rank */
	IR_SHARD_VOCAB,      /* vocab rows split over tp (embedding, LM head) */
};

/* Whether and how a tensor trains. */
enum ir_train {
	IR_TRAIN_FULL,       /* gradient + AdamW */
	IR_TRAIN_FROZEN,     /* no gradient */
	IR_TRAIN_LORA_BASE,  /* frozen, with a LoRA adapter pair */
	IR_TRAIN_ROUTER,     /* router weight/bias, trained (train.train_router) */
	IR_TRAIN_ADAPTER,    /* LoRA A/B: gradient + AdamW */
	IR_TRAIN_BUFFER,     /* persistent state updated by a rule, not a gradient (e_score_correction_bias) */
};

/* Which layers an activation belongs to. */
enum ir_part {
	IR_PART_GLOBAL,    /* once per micro-step (inputs, final norm, loss) */
	IR_PART_ATTENTION, /* every layer: norms, attention, residuals */
	IR_PART_MOE,       /* MoE layers only */
	IR_PART_DENSE,     /* dense-MLP layers only */
};

/* Bit (1 << policy) set in ir_act.keep when the activation is saved for backward under
 * train.recompute == policy. */
#define IR_KEEP(policy) (1u << (policy))
#define IR_KEEP_ALL (IR_KEEP(RECOMPUTE_NONE) | IR_KEEP(RECOMPUTE_SELECTIVE) | IR_KEEP(RECOMPUTE_FULL))
#define IR_KEEP_NOT_FULL (IR_KEEP(RECOMPUTE_NONE) | IR_KEEP(RECOMPUTE_SELECTIVE))

struct ir_tensor {
	char name[IR_NAME_MAX];   /* HF safetensors name; "{e}" stands for the expert index when
				     the checkpoint stores experts one by one */
	int layer;                /* decoder layer, -1 for global tensors */
	enum ir_role role;        /* what it is, whatever the family calls it */
	int ndim;                 /* 1..IR_MAX_DIMS */
	int64_t shape[IR_MAX_DIMS]; /* full, unsharded; stacked experts lead with E */
	int dtype;                /* enum dtype: storage on the GPU */
	enum ir_shard shard;      /* how ranks split it */
	int shard_dim;            /* dimension split by `shard`; -1 when replicated */
	enum ir_train train;      /* gradient or not, and why */
	bool routed;              /* only tokens routed to an expert use it (active share K/E) */
	bool stacked;             /* leading E dimension (one IR tensor for all experts) */
	bool transposed;          /* stored [.., in, out] rather than [.., out, in] */
	int base;                 /* LoRA adapters: index of the adapted tensor; else -1 */
};

/* One activation saved for backward, per token (or per routed row). */
struct ir_act {
	char name[48];            /* e.g. "expert_gate_up" */
	enum ir_part part;        /* which layers save it */
	int64_t width;            /* elements per token (routed: per routed row) */
	int elem_bytes;           /* bytes per element (ids are int32 = 4) */
	bool routed;              /* one row per (token, chosen expert): T*K rows, not T */
	bool tp_split;            /* divided over tp ranks (heads, or tokens under sequence parallel) */
	unsigned keep;            /* IR_KEEP bits: policies under which it is saved */
};

struct ir_layer {
	int index;                /* 0..L-1 */
	bool moe;                 /* routed-expert MLP (else dense MLP of width D) */
	int64_t window;           /* sliding attention window, 0 = full causal */
	int first_tensor;         /* tensors [first_tensor, first_tensor + ntensors) */
	int ntensors;             /* (LoRA adapters are appended after all layers) */
};

/* The spec's model dimensions with every "0 = derived" resolved. */
struct ir_dims {
	int64_t hidden;           /* H */
	int64_t layers;           /* L */
	int64_t heads;            /* NH */
	int64_t kv_heads;         /* NKV (MLA: NH) */
	int64_t head_dim;         /* HD (MLA: NOPE + ROPE, the q/k width per head) */
	int64_t v_head_dim;       /* HD (MLA: VHD) */
	int64_t vocab;            /* V */
	int64_t experts;          /* E */
	int64_t top_k;            /* K */
	int64_t expert_inter;     /* I */
	int64_t dense_inter;      /* D */
	int64_t shared_inter;     /* S: all shared experts fused (0 = none) */
	int64_t q_lora;           /* QL (MLA; 0 = uncompressed q) */
	int64_t kv_lora;          /* KVL (MLA) */
	int64_t qk_rope;          /* ROPE (MLA) */
	int64_t lora_rank;        /* r (0 when not training LoRA) */
	bool mla;                 /* multi-head latent attention (DeepSeek-V3) */
	bool tied;                /* LM head shares the embedding */
};

struct ir {
	int family;               /* enum model_family */
	struct ir_dims dims;      /* resolved model sizes */
	struct ir_layer *layers;  /* [L] */
	int nlayers;              /* L */
	int n_moe_layers;         /* layers with routed experts */
	int n_dense_layers;       /* layers with a dense MLP of width D */
	struct ir_tensor *tensors; /* globals first, then layer by layer, then adapters */
	int ntensors;             /* entries in tensors */
	struct ir_act *acts;      /* [nacts] saved activations, by part */
	int nacts;                /* entries in acts */
};

/* Lower a checked spec (check.c has resolved and validated it) to IR. Returns NULL only
 * when out of memory or when a name does not fit IR_NAME_MAX. */
struct ir *lower(const struct spec *s);
void ir_free(struct ir *ir);

/* Saturating arithmetic for sizes: an absurd (or fuzzed) spec clamps at INT64_MAX instead
 * of overflowing, which in C is undefined behaviour. Sizes are never negative. */
static inline int64_t ir_sat_mul(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
static inline int64_t ir_sat_add(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* Element count of the full tensor. */
int64_t ir_tensor_numel(const struct ir_tensor *t);
/* Has gradients and AdamW state (full, router, adapter). */
bool ir_tensor_trainable(const struct ir_tensor *t);
/* A weight multiplied with activations (counts 2 FLOPs per element per token forward). */
bool ir_tensor_is_matmul(const struct ir_tensor *t, const struct ir *ir);
/* Counted as a model parameter (buffers and LoRA adapters are not). */
bool ir_tensor_is_param(const struct ir_tensor *t);

/* How tensor parallelism treats a weight's gradient (one rule for the step, which stores
 * the weights grouped by it, and for moec plan, which counts the all-reduce bytes by it):
 *   IR_GRAD_SAME     every tp rank computes the whole gradient (the input and final norms:
 *                    inputs every tp rank has in full)                    -> summed over dp
 *   IR_GRAD_PARTIAL  replicated, but each tp rank sees part of the rows or heads (q/k norms,
 *                    the post-attention norm and the router on an MoE layer's token slice,
 *                    k/v when there are fewer kv heads than tp ranks)   -> over dp and tp
 *   IR_GRAD_SPLIT    a slice per tp rank: q/k/v rows (heads), o columns, a dense MLP's
 *                    gate/up rows and down columns, the embedding's and LM head's
 *                    vocabulary rows                                       -> over dp
 *   IR_GRAD_EXPERT   E / ep experts per rank                               -> over edp
 * With tp 1 there is no PARTIAL or SPLIT. kv_split: the kv heads divide over the tp ranks. */
enum ir_grad_group { IR_GRAD_SAME, IR_GRAD_PARTIAL, IR_GRAD_SPLIT, IR_GRAD_EXPERT };
enum ir_grad_group ir_grad_group_of(const struct ir *ir, const struct ir_tensor *t, int64_t tp, bool kv_split);
/* Bytes to store n elements of dtype d; nf4 = 4 bits + one fp32 absmax per 64 elements. */
int64_t ir_dtype_bytes(int d, int64_t n);
/* HF name of expert e of a stacked tensor ("{e}" replaced); the name itself when none. */
void ir_expert_name(const struct ir_tensor *t, int64_t e, char *buf, size_t n);
/* Find a tensor by exact IR name, or NULL. */
const struct ir_tensor *ir_find(const struct ir *ir, const char *name);

const char *ir_role_name(enum ir_role r);
const char *ir_shard_name(enum ir_shard s);
const char *ir_train_name(enum ir_train t);
const char *ir_part_name(enum ir_part p);

/* `moec plan -d lower`: one line per tensor and activation. */
void ir_dump(FILE *f, const struct ir *ir);

#endif

/* plan.h - parallel layout, parameter counts, per-rank memory, FLOPs and communication.
 *
 * Shape legend (as in spec.h / lower.h): H hidden, E experts, K top-k, I expert
 * intermediate, V vocab, T = micro_batch * seq_len tokens per data-parallel replica,
 * Tm = T / tp tokens a rank routes (sequence parallel), tp/dp attention folding,
 * ep/edp expert folding (expert TP = 1), world = tp * dp = ep * edp.
 * Units: bytes, FLOPs, seconds, GB/s = 1e9 bytes/s (as the cluster file gives them).
 */
#ifndef MOEC_PLAN_H
#define MOEC_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "lower.h"
#include "spec.h"

/* One rank's place in both foldings. Rank order: tp innermost, then dp (attention);
 * ep innermost, then edp (experts). Consecutive ranks share a node and an NVLink domain. */
struct plan_rank {
	int rank;                 /* global rank, 0..world-1 */
	int node;                 /* rank / gpus_per_node */
	int local_gpu;            /* rank % gpus_per_node */
	int domain;               /* NVLink domain: rank / nvlink_domain */
	int dp, tp;               /* attention folding coordinates */
	int ep, edp;              /* expert folding coordinates */
	int64_t expert_first;     /* routed experts held: [expert_first, expert_last] */
	int64_t expert_last;
};

/* count groups of size ranks each. */
struct plan_groups {
	int count;                /* number of groups */
	int size;                 /* ranks per group */
	int *ranks;               /* [count * size]: group g is ranks[g * size .. g * size + size) */
	bool *in_domain;          /* [count]: every member in one NVLink domain */
	bool all_in_domain;       /* every group stays inside one NVLink domain */
};

struct plan_layout {
	int world;                /* nodes * gpus_per_node */
	int nodes;                /* parallel.nodes */
	int gpus_per_node;        /* parallel.gpus_per_node */
	int nvlink_domain;        /* GPUs per NVLink domain (cluster; default gpus_per_node) */
	int dp, tp;               /* world = dp * tp */
	int ep, edp;              /* world = ep * edp */
	int64_t experts_per_rank; /* E / ep */
	struct plan_rank *ranks;  /* [world] */
	struct plan_groups tp_groups;  /* dp groups of tp ranks */
	struct plan_groups dp_groups;  /* tp groups of dp ranks */
	struct plan_groups ep_groups;  /* edp groups of ep ranks */
	struct plan_groups edp_groups; /* ep groups of edp ranks */
};

/* Parameter counts (elements), whole model. */
struct plan_params {
	int64_t total;            /* model parameters: LoRA adapters and buffers excluded */
	int64_t embedding;        /* the input embedding table V*H */
	int64_t routed;           /* routed-expert parameters */
	int64_t active;           /* per token: non-routed + K/E of routed, embedding included
				     (Qwen's and Mistral's convention) */
	int64_t active_no_embed;  /* per token without the input embedding (OpenAI's convention
				     for GPT-OSS; a tied table still counts as the LM head) */
	int64_t trainable;        /* with gradients: full + trained router + adapters */
	int64_t adapters;         /* LoRA adapter parameters (part of trainable) */
	int64_t rank_params;      /* elements one rank holds (its shards), adapters included */
};

enum plan_mem_item {
	PLAN_MEM_WEIGHTS,         /* every tensor's shard in its storage dtype */
	PLAN_MEM_GRADS,           /* fp32 gradient of every trainable shard */
	PLAN_MEM_MASTER,          /* fp32 master copy when weights are stored narrower */
	PLAN_MEM_OPTIMIZER,       /* AdamW m and v, fp32 */
	PLAN_MEM_ACTIVATIONS,     /* saved for backward + one layer's backward working set */
	PLAN_MEM_EXPERT_BUFFERS,  /* one MoE layer's expert GEMM buffers at worst-case rows */
	PLAN_MEM_A2A_BUFFERS,     /* all-to-all send/receive buffers */
	PLAN_MEM_WORKSPACE,       /* cuBLAS + LM-head/CE chunk + CUDA/NCCL reserve */
	PLAN_MEM_NITEMS
};

#define PLAN_MAX_HINTS 6

/* Bytes on one rank. Ranks hold equal shards (check.c enforces divisibility), so rank 0's
 * figures are every rank's. */
struct plan_memory {
	int64_t item[PLAN_MEM_NITEMS];         /* bytes per component, enum plan_mem_item */
	int64_t weights_by_dtype[DTYPE_COUNT]; /* PLAN_MEM_WEIGHTS split by storage dtype */
	int64_t act_saved;        /* activations kept across all layers (part of ACTIVATIONS) */
	int64_t act_working;      /* one layer's recomputed tensors + residual gradients */
	int64_t ws_cublas;        /* cuBLAS(Lt) workspace */
	int64_t ws_ce_chunk;      /* fused LM-head + cross-entropy logits chunk and its grad */
	int64_t ws_reserve;       /* CUDA context, NCCL channels, allocator slack */
	int64_t tokens;           /* T = micro_batch * seq_len */
	int64_t moe_tokens;       /* Tm = ceil(T / tp): tokens this rank routes */
	int64_t rows_saved;       /* routed rows saved per MoE layer */
	int64_t rows_worst;       /* routed rows this rank can receive in one MoE layer */
	bool rows_bounded;        /* capacity policy bounds rows_saved; dropless: balanced estimate */
	int64_t ce_chunk_rows;    /* tokens per LM-head chunk */
	int64_t total;            /* sum of item[] */
	int64_t capacity;         /* GPU memory (0: unknown, custom GPU without gpu_memory_gib) */
	int64_t headroom;         /* capacity - total (negative: does not fit) */
	bool fits;                /* total <= capacity */
	int top[3];               /* indices of the three largest items */
	int nhints;               /* entries in hints (only when it does not fit) */
	char hints[PLAN_MAX_HINTS][200]; /* what would make it fit, with the bytes it saves */
};

struct plan_compute {
	double matmul_flops_per_token;  /* fwd+bwd of weight GEMMs: 6/param trained, 4 frozen */
	double attn_flops_per_token;    /* fwd+bwd (3x fwd) of scores and values, all layers */
	double flops_per_token;         /* model FLOPs: the two above */
	double hw_flops_per_token;      /* plus recompute (full: one more forward of each layer; selective: the gate/up GEMMs) */
	int64_t tokens_per_step;        /* global: micro_batch * seq_len * dp * grad_accum */
	double flops_per_step;          /* model FLOPs, all ranks */
	double hw_flops_per_rank_step;  /* hardware FLOPs on one rank */
	double peak_flops;              /* dense peak of the compute precision, FLOP/s */
	double compute_s;               /* hw_flops_per_rank_step / peak_flops: a lower bound */
};

/* Bytes each rank sends per optimizer step, and seconds at the cluster's bandwidths
 * (no overlap assumed). */
struct plan_comm {
	double intra_gbps;        /* resolved cluster.intra_node_gbps */
	double inter_gbps;        /* resolved cluster.inter_node_gbps */
	double a2a_bytes;         /* dispatch + combine, fwd and bwd, every MoE layer */
	double tp_bytes;          /* sequence-parallel all-gather/reduce-scatter pairs */
	double dp_bytes;          /* dense gradient all-reduce over dp */
	double edp_bytes;         /* expert gradient all-reduce over edp */
	double a2a_s, tp_s, dp_s, edp_s; /* seconds for each of the four above */
	double total_s;           /* their sum */
	bool a2a_in_domain;       /* EP groups stay inside one NVLink domain */
};

struct plan {
	struct plan_layout layout;   /* ranks, coordinates, groups */
	struct plan_params params;   /* parameter counts */
	struct plan_memory memory;   /* bytes per rank and verdict */
	struct plan_compute compute; /* FLOPs */
	struct plan_comm comm;       /* bytes sent and seconds */
};

/* Build the plan for a checked spec and its IR. Returns NULL when out of memory or when
 * the layout is impossible (world % tp, world % ep, dp * tp != world, E % ep): check.c
 * reports those with positions; plan does not repeat the messages. */
struct plan *plan_build(const struct spec *s, const struct ir *ir);
void plan_free(struct plan *p);

/* Printable names: item keys for JSON ("weights", "expert_buffers", ...). */
const char *plan_mem_item_name(enum plan_mem_item i);
/* GPU memory in bytes of a GPU type as nvidia-smi reports it (0 for custom). */
int64_t plan_gpu_memory_bytes(int gpu);

#endif

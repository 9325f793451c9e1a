/* plan.c - parallel layout, parameter counts, per-rank memory, FLOPs and communication.
 *
 * Requires: a checked spec and its IR (lower.c). Divisibility (world % tp, world % ep,
 *   E % ep, heads % tp) is check.c's job; plan_build returns NULL rather than guess.
 * Establishes: rank -> (node, gpu, NVLink domain, dp, tp, ep, edp) and the four group
 *   lists; parameter counts (total, active per token with and without the embedding,
 *   trainable); a per-rank memory figure for every component with a verdict against the
 *   GPU's memory and hints that are themselves re-planned; FLOPs per token and per step;
 *   bytes each rank sends per step and the seconds that takes on the cluster.
 *
 * Every count comes from the IR's tensors and activations; the spec supplies only the
 * parallel and batch knobs. Conventions, each explained where it is used:
 *   - tp > 1 means sequence parallelism (Megatron requires it for MoE with TP): the MoE
 *     layer of a rank routes Tm = T / tp tokens, and token-wise activations split over tp.
 *   - Gradients are fp32 buffers over every trainable shard (also under shard_optimizer,
 *     as Megatron's distributed optimizer keeps the full grad buffer); fp32 masters exist
 *     when weights are stored narrower than fp32; AdamW keeps m and v in fp32. Masters and
 *     m, v shard over dp (dense) or edp (experts) under parallel.shard_optimizer (the step
 *     also keeps a bf16 step's norms whole in fp32: a few KiB per layer, not counted).
 *   - Routed activations are saved at Tm*K rows (balanced routing) when dropless: no
 *     finite bound exists without a capacity. With capacity_factor c the bound is exact.
 *     Transient expert buffers are sized for the worst case of one layer either way.
 *
 * Shape legend: see plan.h.
 */
#include "plan.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB ((int64_t)1 << 20)

/* Knobs the memory model depends on, so hints can re-plan with one of them changed. */
struct plan_knobs {
	int64_t tp, dp, ep, edp;
	int64_t kv_heads;         /* below tp, kv heads are replicated: tp / kv_heads ranks share one */
	bool shard_optimizer;
	int recompute;            /* enum recompute_policy */
};

static int64_t plan_ceil_div(int64_t a, int64_t b)
{
	return b > 0 ? (a + b - 1) / b : a;
}

/* ---- GPU and cluster facts ----
 * Memory is nvidia-smi's memory.total, not the marketing figure: H100 SXM 80GB shows
 * 81559 MiB (79.6 GiB), H200 143771 MiB (140.4 GiB), B200 183359 MiB (179.1 GiB),
 * A100 80GB 81920 MiB. NVLink bandwidth per GPU per direction: H100/H200 450 GB/s
 * (NVLink 4, 900 GB/s bidirectional), B200 900 (NVLink 5), A100 300 (NVLink 3). Dense
 * bf16 peak: H100/H200 989 TFLOP/s, B200 2250, A100 312. Custom GPUs take H100's link and
 * no peak (compute seconds are then not estimated). */
static const int64_t plan_gpu_mib[] = {[GPU_H100] = 81559, [GPU_H200] = 143771, [GPU_B200] = 183359, [GPU_A100] = 81920, [GPU_CUSTOM] = 0};
static const double plan_gpu_nvlink_gbps[] = {[GPU_H100] = 450, [GPU_H200] = 450, [GPU_B200] = 900, [GPU_A100] = 300, [GPU_CUSTOM] = 450};
static const double plan_gpu_bf16_tflops[] = {[GPU_H100] = 989.4, [GPU_H200] = 989.4, [GPU_B200] = 2250, [GPU_A100] = 312, [GPU_CUSTOM] = 0};
/* Inter-node default: one 400 Gb/s NIC per GPU = 50 GB/s per direction. */
#define PLAN_INTER_NODE_GBPS 50.0

static bool plan_gpu_valid(int gpu)
{
	return gpu >= GPU_H100 && gpu <= GPU_CUSTOM;
}

int64_t plan_gpu_memory_bytes(int gpu)
{
	return plan_gpu_valid(gpu) ? plan_gpu_mib[gpu] * MIB : 0;
}

static int64_t plan_capacity_bytes(const struct spec *s)
{
	if (s->parallel.gpu_memory_gib > 0)
		return (int64_t)(s->parallel.gpu_memory_gib * GIB);
	return plan_gpu_memory_bytes(s->parallel.gpu);
}

/* Dense peak of the compute precision: fp8 doubles bf16 (Hopper, Blackwell), fp32 runs as
 * tf32 at half of bf16. */
static double plan_peak_flops(const struct spec *s)
{
	int gpu = s->parallel.gpu;
	double bf16 = plan_gpu_valid(gpu) ? plan_gpu_bf16_tflops[gpu] * 1e12 : 0;
	switch (s->train.precision) {
	case DTYPE_FP8:
		return gpu == GPU_A100 ? bf16 : 2 * bf16;
	case DTYPE_FP32:
		return bf16 / 2;
	default:
		return bf16;
	}
}

/* ---- layout ---- */

static bool plan_groups_alloc(struct plan_groups *g, int count, int size)
{
	g->count = count;
	g->size = size;
	g->ranks = calloc((size_t)count * (size_t)size, sizeof *g->ranks);
	g->in_domain = calloc((size_t)count, sizeof *g->in_domain);
	return g->ranks && g->in_domain;
}

static void plan_groups_free(struct plan_groups *g)
{
	free(g->ranks);
	free(g->in_domain);
}

/* Group k holds ranks k * kstride + i * istride for i < size. */
static void plan_groups_fill(struct plan_groups *g, const struct plan_layout *l, int kstride, int istride)
{
	g->all_in_domain = true;
	for (int k = 0; k < g->count; k++) {
		int *r = &g->ranks[k * g->size];
		g->in_domain[k] = true;
		for (int i = 0; i < g->size; i++) {
			r[i] = k * kstride + i * istride;
			if (l->ranks[r[i]].domain != l->ranks[r[0]].domain)
				g->in_domain[k] = false;
		}
		g->all_in_domain = g->all_in_domain && g->in_domain[k];
	}
}

static bool plan_layout_build(const struct spec *s, const struct ir *ir, struct plan_layout *l)
{
	const struct parallel_spec *ps = &s->parallel;
	int64_t world = ps->nodes * ps->gpus_per_node;
	int64_t tp = ps->tp > 0 ? ps->tp : 1, ep = ps->ep > 0 ? ps->ep : 1;
	if (world <= 0 || world > INT_MAX || world % tp || world % ep)
		return false;
	int64_t dp = ps->dp > 0 ? ps->dp : world / tp;
	if (dp * tp != world || (ir->dims.experts > 0 && ir->dims.experts % ep))
		return false;
	l->world = (int)world;
	l->nodes = (int)ps->nodes;
	l->gpus_per_node = (int)ps->gpus_per_node;
	l->nvlink_domain = (int)(s->cluster.nvlink_domain > 0 ? s->cluster.nvlink_domain : ps->gpus_per_node);
	l->tp = (int)tp;
	l->dp = (int)dp;
	l->ep = (int)ep;
	l->edp = (int)(world / ep);
	l->experts_per_rank = ir->dims.experts / ep;
	l->ranks = calloc((size_t)world, sizeof *l->ranks);
	if (!l->ranks)
		return false;
	for (int r = 0; r < l->world; r++) {
		struct plan_rank *pr = &l->ranks[r];
		pr->rank = r;
		pr->node = r / l->gpus_per_node;
		pr->local_gpu = r % l->gpus_per_node;
		pr->domain = r / l->nvlink_domain;
		pr->tp = r % l->tp;
		pr->dp = r / l->tp;
		pr->ep = r % l->ep;
		pr->edp = r / l->ep;
		pr->expert_first = pr->ep * l->experts_per_rank;
		pr->expert_last = pr->expert_first + l->experts_per_rank - 1;
	}
	if (!plan_groups_alloc(&l->tp_groups, l->dp, l->tp) || !plan_groups_alloc(&l->dp_groups, l->tp, l->dp) ||
	    !plan_groups_alloc(&l->ep_groups, l->edp, l->ep) || !plan_groups_alloc(&l->edp_groups, l->ep, l->edp))
		return false;
	/* tp and ep are innermost (consecutive ranks); dp and edp stride over them */
	plan_groups_fill(&l->tp_groups, l, l->tp, 1);
	plan_groups_fill(&l->dp_groups, l, 1, l->tp);
	plan_groups_fill(&l->ep_groups, l, l->ep, 1);
	plan_groups_fill(&l->edp_groups, l, 1, l->ep);
	return true;
}

static void plan_layout_free(struct plan_layout *l)
{
	free(l->ranks);
	plan_groups_free(&l->tp_groups);
	plan_groups_free(&l->dp_groups);
	plan_groups_free(&l->ep_groups);
	plan_groups_free(&l->edp_groups);
}

/* ---- parameters ---- */

/* Elements of t held by one rank. */
static int64_t plan_shard_numel(const struct ir_tensor *t, const struct plan_knobs *k)
{
	int64_t n = ir_tensor_numel(t), parts = 1;
	if (t->shard == IR_SHARD_TP_COLUMN || t->shard == IR_SHARD_TP_ROW || t->shard == IR_SHARD_VOCAB)
		parts = k->tp;
	int kv = t->role == IR_ROLE_K || t->role == IR_ROLE_V || t->role == IR_ROLE_K_BIAS || t->role == IR_ROLE_V_BIAS;
	if (kv && k->kv_heads > 0 && parts > k->kv_heads)
		parts = k->kv_heads; /* each rank holds one whole, replicated kv head */
	else if (t->shard == IR_SHARD_EP)
		parts = k->ep;
	if (parts <= 1 || t->shard_dim < 0)
		return n;
	int64_t dim = t->shape[t->shard_dim];
	return dim > 0 ? n / dim * plan_ceil_div(dim, parts) : n;
}

/* Per-token share of a tensor: routed experts are used by K of E experts' worth. */
static int64_t plan_active_numel(const struct ir_tensor *t, const struct ir *ir)
{
	int64_t n = ir_tensor_numel(t);
	if (!t->routed || ir->dims.experts <= 0)
		return n;
	return n / ir->dims.experts * ir->dims.top_k;
}

static void plan_count_params(const struct ir *ir, const struct plan_knobs *k, struct plan_params *p)
{
	memset(p, 0, sizeof *p);
	for (int i = 0; i < ir->ntensors; i++) {
		const struct ir_tensor *t = &ir->tensors[i];
		int64_t n = ir_tensor_numel(t);
		p->rank_params = ir_sat_add(p->rank_params, plan_shard_numel(t, k));
		if (ir_tensor_trainable(t))
			p->trainable = ir_sat_add(p->trainable, n);
		if (t->train == IR_TRAIN_ADAPTER)
			p->adapters = ir_sat_add(p->adapters, n);
		if (!ir_tensor_is_param(t))
			continue;
		p->total = ir_sat_add(p->total, n);
		p->active = ir_sat_add(p->active, plan_active_numel(t, ir));
		if (t->routed)
			p->routed = ir_sat_add(p->routed, n);
		if (t->role == IR_ROLE_EMBED)
			p->embedding = ir_sat_add(p->embedding, n);
	}
	/* A tied table is the LM head too, which every convention counts. */
	p->active_no_embed = p->active - (ir->dims.tied ? 0 : p->embedding);
}

/* ---- memory ---- */

static int64_t plan_part_layers(const struct ir *ir, enum ir_part part)
{
	switch (part) {
	case IR_PART_ATTENTION:
		return ir->nlayers;
	case IR_PART_MOE:
		return ir->n_moe_layers;
	case IR_PART_DENSE:
		return ir->n_dense_layers;
	default:
		return 1;
	}
}

/* Bytes of one instance (one layer) of activation a on one rank. */
static int64_t plan_act_bytes(const struct ir_act *a, const struct plan_memory *m, const struct plan_knobs *k)
{
	int64_t rows = a->routed ? m->rows_saved : (a->tp_split ? plan_ceil_div(m->tokens, k->tp) : m->tokens);
	return ir_sat_mul(ir_sat_mul(rows, a->width), a->elem_bytes);
}

/* Routed rows. A rank owns E/ep experts and routes Tm tokens; the ep ranks of its group
 * send it rows. Dropless: each token reaches at most min(K, E/ep) of its experts, so at
 * most min(K, E/ep) * Tm * ep rows arrive (every token of the group chose this rank);
 * balanced routing brings Tm * K. Capacity c: each expert takes at most
 * ceil(c * Tm * ep * K / E) rows, E/ep experts per rank. */
static void plan_size_routed_rows(const struct spec *s, const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	int64_t e = ir->dims.experts, kk = ir->dims.top_k, local = e / k->ep;
	int64_t worst = ir_sat_mul(ir_sat_mul(kk < local ? kk : local, m->moe_tokens), k->ep);
	m->rows_saved = ir_sat_mul(m->moe_tokens, kk);
	m->rows_worst = worst;
	m->rows_bounded = false;
	if (s->moe.capacity_factor > 0 && e > 0) {
		double cap = ceil(s->moe.capacity_factor * (double)m->moe_tokens * (double)k->ep * (double)kk / (double)e);
		int64_t per_expert = cap < 9e18 ? (int64_t)cap : INT64_MAX;
		int64_t bound = ir_sat_mul(per_expert, local);
		m->rows_worst = bound < worst ? bound : worst;
		m->rows_saved = m->rows_worst;
		m->rows_bounded = true;
	}
	if (ir->n_moe_layers == 0)
		m->rows_saved = m->rows_worst = 0;
}

/* Saved activations over all layers, and the working set of the one layer whose backward
 * runs: what the policy did not keep (rebuilt before that backward) plus the gradients of
 * the residual stream entering and leaving the layer. */
static void plan_size_activations(const struct spec *s, const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	unsigned bit = IR_KEEP(k->recompute);
	int64_t work[4] = {0};
	m->act_saved = 0;
	for (int i = 0; i < ir->nacts; i++) {
		const struct ir_act *a = &ir->acts[i];
		int64_t layers = plan_part_layers(ir, a->part);
		if (layers == 0)
			continue;
		int64_t b = plan_act_bytes(a, m, k);
		if (a->keep & bit)
			m->act_saved = ir_sat_add(m->act_saved, ir_sat_mul(b, layers));
		else
			work[a->part] = ir_sat_add(work[a->part], b);
	}
	int64_t mlp = work[IR_PART_MOE] > work[IR_PART_DENSE] ? work[IR_PART_MOE] : work[IR_PART_DENSE];
	int64_t dresid = ir_sat_mul(2 * plan_ceil_div(m->tokens, k->tp), ir_dtype_bytes(s->train.precision, ir->dims.hidden));
	m->act_working = ir_sat_add(ir_sat_add(work[IR_PART_GLOBAL], work[IR_PART_ATTENTION]), ir_sat_add(mlp, dresid));
	m->item[PLAN_MEM_ACTIVATIONS] = ir_sat_add(m->act_saved, m->act_working);
}

/* One MoE layer's expert buffers at the worst-case row count, as the trainer lays them out
 * (compiler/step.c: step_layer_bufs, step_layout_slots):
 *   expert_buffers  gate/up [rows, 2I] and the SwiGLU output [rows, I], which the backward
 *                   reads; on one rank d(gate|up) [rows, 2I] too; under expert parallelism
 *                   the received rows [rows, H] (the experts' input, which the backward
 *                   reads) and one [rows, H] for the experts' outputs, then their output and
 *                   input gradients (one at a time);
 *   a2a_buffers     the permuted rows' gradients [Tm*K, H] (sent, then received back); under
 *                   expert parallelism the all-to-all's receive buffer [rows, H], which
 *                   d(gate|up) reuses (no all-to-all runs while it lives): max(H, 2I) wide. */
static void plan_size_expert_buffers(const struct spec *s, const struct ir *ir, const struct plan_knobs *k,
				     struct plan_memory *m)
{
	const struct ir_dims *d = &ir->dims;
	int64_t h = d->hidden, i2 = 2 * d->expert_inter, ep = k->ep > 1;
	int64_t row = 3 * d->expert_inter + (ep ? 2 * h : i2);
	m->item[PLAN_MEM_EXPERT_BUFFERS] = ir_dtype_bytes(s->train.precision, ir_sat_mul(m->rows_worst, row));
	int64_t send = ir->n_moe_layers ? ir_sat_mul(m->moe_tokens, d->top_k) : 0;
	int64_t a2a = ir_sat_mul(send, h);
	if (ep)
		a2a = ir_sat_add(a2a, ir_sat_mul(m->rows_worst, h > i2 ? h : i2));
	m->item[PLAN_MEM_A2A_BUFFERS] = ir_dtype_bytes(s->train.precision, a2a);
}

static int64_t plan_next_pow2(int64_t x)
{
	int64_t p = 1;
	while (p < x)
		p <<= 1;
	return p;
}

/* cuBLAS: 32 MiB, the workspace Hopper needs for its fastest kernels (NVIDIA's cuBLAS
 * docs recommend 32 MiB on sm_90). Fused LM head + cross-entropy: chunks of
 * next_pow2(ceil(T / ceil(V / H))) tokens (Liger-Kernel's rule: a chunk's logits are
 * about as large as the hidden states), fp32 logits of the local vocab shard plus their
 * gradient in the compute precision. Reserve: 1 GiB for the CUDA context (~500 MiB on
 * H100 with lazy module loading), NCCL channel buffers and allocator fragmentation. */
static void plan_size_workspace(const struct spec *s, const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	const struct ir_dims *d = &ir->dims;
	int64_t per_chunk = plan_ceil_div(d->vocab, d->hidden > 0 ? d->hidden : 1);
	int64_t rows = plan_next_pow2(plan_ceil_div(m->tokens, per_chunk));
	if (rows > m->tokens)
		rows = m->tokens;
	int64_t vshard = plan_ceil_div(d->vocab, k->tp);
	m->ce_chunk_rows = rows;
	m->ws_cublas = 32 * MIB;
	int64_t logits = ir_sat_mul(rows, vshard);
	m->ws_ce_chunk = ir_sat_add(ir_sat_mul(logits, 4), ir_dtype_bytes(s->train.precision, logits));
	m->ws_reserve = 1024 * MIB;
	m->item[PLAN_MEM_WORKSPACE] = ir_sat_add(m->ws_cublas + m->ws_reserve, m->ws_ce_chunk);
}

/* Weights, gradients, masters and AdamW state from every tensor's shard. */
static void plan_size_states(const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	for (int i = 0; i < ir->ntensors; i++) {
		const struct ir_tensor *t = &ir->tensors[i];
		int64_t n = plan_shard_numel(t, k), w = ir_dtype_bytes(t->dtype, n);
		m->item[PLAN_MEM_WEIGHTS] = ir_sat_add(m->item[PLAN_MEM_WEIGHTS], w);
		if (t->dtype >= 0 && t->dtype < DTYPE_COUNT)
			m->weights_by_dtype[t->dtype] = ir_sat_add(m->weights_by_dtype[t->dtype], w);
		if (!ir_tensor_trainable(t))
			continue;
		int64_t div = k->shard_optimizer ? (t->shard == IR_SHARD_EP ? k->edp : k->dp) : 1;
		int64_t opt_n = plan_ceil_div(n, div);
		m->item[PLAN_MEM_GRADS] = ir_sat_add(m->item[PLAN_MEM_GRADS], ir_sat_mul(4, n));
		if (t->dtype != DTYPE_FP32)
			m->item[PLAN_MEM_MASTER] = ir_sat_add(m->item[PLAN_MEM_MASTER], ir_sat_mul(4, opt_n));
		m->item[PLAN_MEM_OPTIMIZER] = ir_sat_add(m->item[PLAN_MEM_OPTIMIZER], ir_sat_mul(8, opt_n));
	}
}

static void plan_rank_items(struct plan_memory *m)
{
	bool used[PLAN_MEM_NITEMS] = {false};
	for (int j = 0; j < 3; j++) {
		int best = -1;
		for (int i = 0; i < PLAN_MEM_NITEMS; i++)
			if (!used[i] && (best < 0 || m->item[i] > m->item[best]))
				best = i;
		used[best] = true;
		m->top[j] = best;
	}
}

static void plan_memory_compute(const struct spec *s, const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	memset(m, 0, sizeof *m);
	m->tokens = s->train.micro_batch * s->train.seq_len;
	m->moe_tokens = plan_ceil_div(m->tokens, k->tp);
	plan_size_states(ir, k, m);
	plan_size_routed_rows(s, ir, k, m);
	plan_size_activations(s, ir, k, m);
	plan_size_expert_buffers(s, ir, k, m);
	plan_size_workspace(s, ir, k, m);
	for (int i = 0; i < PLAN_MEM_NITEMS; i++)
		m->total = ir_sat_add(m->total, m->item[i]);
	m->capacity = plan_capacity_bytes(s);
	m->headroom = m->capacity - m->total;
	m->fits = m->capacity > 0 && m->headroom >= 0;
	plan_rank_items(m);
}

/* ---- hints: each one re-plans with one knob changed and reports what it saves ---- */

static void plan_add_hint(struct plan_memory *m, int64_t saved, const char *what)
{
	if (m->nhints >= PLAN_MAX_HINTS || saved <= 0)
		return;
	snprintf(m->hints[m->nhints], sizeof m->hints[0], "%s (saves %.1f GiB per rank%s)", what, (double)saved / GIB,
		 m->total - saved <= m->capacity ? ", then fits" : "");
	m->nhints++;
}

/* Bytes per rank if the job were planned from spec alt with knobs k; relower when alt
 * changes what lower.c decides (training mode, storage dtypes). */
static int64_t plan_replan_total(const struct spec *alt, const struct ir *ir, const struct plan_knobs *k, bool relower)
{
	struct ir *own = relower ? lower(alt) : NULL;
	if (relower && !own)
		return INT64_MAX;
	struct plan_memory m;
	plan_memory_compute(alt, own ? own : ir, k, &m);
	ir_free(own);
	return m.total;
}

/* Knobs of the parallel layout: optimizer sharding, recompute, expert parallelism. */
static void plan_hint_knobs(const struct spec *s, const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	char what[160];
	if (!k->shard_optimizer && (k->dp > 1 || k->edp > 1)) {
		struct plan_knobs alt = *k;
		alt.shard_optimizer = true;
		plan_add_hint(m, m->total - plan_replan_total(s, ir, &alt, false), "set parallel.shard_optimizer: true");
	}
	if (k->recompute != RECOMPUTE_FULL) {
		struct plan_knobs alt = *k;
		alt.recompute = RECOMPUTE_FULL;
		plan_add_hint(m, m->total - plan_replan_total(s, ir, &alt, false), "set train.recompute: full");
	}
	int64_t world = k->dp * k->tp, ep2 = k->ep * 2;
	if (ir->n_moe_layers > 0 && world % ep2 == 0 && ir->dims.experts % ep2 == 0) {
		struct plan_knobs alt = *k;
		alt.ep = ep2;
		alt.edp = world / ep2;
		snprintf(what, sizeof what, "raise parallel.ep to %lld", (long long)ep2);
		plan_add_hint(m, m->total - plan_replan_total(s, ir, &alt, false), what);
	} else if (ir->n_moe_layers > 0 && ir->dims.experts % ep2 == 0 && m->nhints < PLAN_MAX_HINTS) {
		snprintf(m->hints[m->nhints++], sizeof m->hints[0],
			 "add GPUs: ep %lld (half the experts per rank) needs a world divisible by %lld", (long long)ep2, (long long)ep2);
	}
}

/* Knobs of the recipe: a capacity bound on routed rows, LoRA, a narrower frozen base. */
static void plan_hint_recipe(const struct spec *s, const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	struct spec alt = *s; /* shallow: lower() and plan only read it */
	if (ir->n_moe_layers > 0 && s->moe.capacity_factor <= 0) {
		alt.moe.capacity_factor = 1.25;
		plan_add_hint(m, m->total - plan_replan_total(&alt, ir, k, false),
			      "set moe.capacity_factor: 1.25 (drops overflow tokens)");
		alt.moe.capacity_factor = s->moe.capacity_factor;
	}
	if (s->train.mode == TRAIN_FULL) {
		alt.train.mode = TRAIN_LORA;
		alt.train.train_router = false;
		plan_add_hint(m, m->total - plan_replan_total(&alt, ir, k, true), "set train.mode: lora");
	}
	if (s->train.base_dtype != DTYPE_NF4) {
		alt.train.mode = TRAIN_LORA;
		alt.train.train_router = s->train.mode == TRAIN_LORA && s->train.train_router;
		alt.train.base_dtype = DTYPE_NF4;
		plan_add_hint(m, m->total - plan_replan_total(&alt, ir, k, true),
			      s->train.mode == TRAIN_LORA ? "set train.base_dtype: nf4" : "set train.mode: lora and train.base_dtype: nf4");
	}
}

static void plan_memory_hints(const struct spec *s, const struct ir *ir, const struct plan_knobs *k, struct plan_memory *m)
{
	if (m->fits || m->capacity <= 0)
		return;
	plan_hint_knobs(s, ir, k, m);
	plan_hint_recipe(s, ir, k, m);
}

/* ---- FLOPs ---- */

/* Keys a query attends to on average: (S+1)/2 causal; with a window w < S,
 * (w(w+1)/2 + (S-w)w) / S. */
static double plan_attended_keys(int64_t seq, int64_t window)
{
	double sq = (double)seq;
	if (window <= 0 || window >= seq)
		return (sq + 1) / 2;
	double w = (double)window;
	return (w * (w + 1) / 2 + (sq - w) * w) / sq;
}

/* GEMMs: 2 FLOPs per weight per token forward; backward is 2x forward for the input
 * gradient plus 2x for the weight gradient, which frozen weights skip: 6 trained, 4
 * frozen. Routed experts count K/E of their weights per token. Attention scores and
 * values: 2 * NH * (HDqk + HDv) * attended keys forward per token per layer, 3x for
 * fwd+bwd. Recompute (compiler/step.c's step_recompute): full runs every layer's forward
 * once more, but for a dense MLP's down projection, whose output fed only the residual
 * add; selective reruns no GEMM (norms, RoPE and SwiGLU only: no FLOPs counted here). */
static void plan_compute_flops(const struct spec *s, const struct ir *ir, const struct plan_layout *l, struct plan_compute *c)
{
	const struct ir_dims *d = &ir->dims;
	double layer_fwd = 0, attn_fwd = 0;
	memset(c, 0, sizeof *c);
	for (int i = 0; i < ir->ntensors; i++) {
		const struct ir_tensor *t = &ir->tensors[i];
		if (!ir_tensor_is_matmul(t, ir))
			continue;
		double n = (double)plan_active_numel(t, ir);
		c->matmul_flops_per_token += (ir_tensor_trainable(t) ? 6 : 4) * n;
		if (t->layer >= 0 && t->role != IR_ROLE_MLP_DOWN)
			layer_fwd += 2 * n;
	}
	for (int i = 0; i < ir->nlayers; i++)
		attn_fwd += 2.0 * (double)(d->heads * (d->head_dim + d->v_head_dim)) *
			    plan_attended_keys(s->train.seq_len, ir->layers[i].window);
	c->attn_flops_per_token = 3 * attn_fwd;
	c->flops_per_token = c->matmul_flops_per_token + c->attn_flops_per_token;
	c->hw_flops_per_token = c->flops_per_token;
	if (s->train.recompute == RECOMPUTE_FULL)
		c->hw_flops_per_token += layer_fwd + attn_fwd;
	c->tokens_per_step = ir_sat_mul(ir_sat_mul(s->train.micro_batch, s->train.seq_len), ir_sat_mul(l->dp, s->train.grad_accum));
	c->flops_per_step = c->flops_per_token * (double)c->tokens_per_step;
	c->hw_flops_per_rank_step = c->hw_flops_per_token * (double)c->tokens_per_step / l->world;
	c->peak_flops = plan_peak_flops(s);
	c->compute_s = c->peak_flops > 0 ? c->hw_flops_per_rank_step / c->peak_flops : 0;
}

/* ---- communication ---- */

static double plan_ring_factor(int n)
{
	return n > 1 ? 2.0 * (n - 1) / n : 0;
}

/* All-to-all under balanced routing: each collective moves Tm*K*H*b, 1/ep of it to each
 * peer; peers inside this rank's NVLink domain go over NVLink, the rest over the network,
 * in parallel, so the slower share sets the time. 4 per MoE layer per micro-step
 * (dispatch and combine, forward and backward), 6 with full recompute. */
static void plan_comm_a2a(const struct spec *s, const struct ir *ir, const struct plan_layout *l, struct plan_comm *c)
{
	int ep = l->ep;
	c->a2a_in_domain = l->ep_groups.all_in_domain;
	if (ep <= 1 || ir->n_moe_layers == 0)
		return;
	int64_t tm = plan_ceil_div(s->train.micro_batch * s->train.seq_len, l->tp);
	double per_peer = (double)ir_dtype_bytes(s->train.precision, ir_sat_mul(ir_sat_mul(tm, ir->dims.top_k), ir->dims.hidden)) / ep;
	int local = 0;
	for (int i = 0; i < ep; i++)
		local += l->ranks[l->ep_groups.ranks[i]].domain == l->ranks[0].domain;
	double n = (double)ir->n_moe_layers * (s->train.recompute == RECOMPUTE_FULL ? 6 : 4) * (double)s->train.grad_accum;
	double t_local = (local - 1) * per_peer / (c->intra_gbps * 1e9);
	double t_remote = (ep - local) * per_peer / (c->inter_gbps * 1e9);
	c->a2a_bytes = n * per_peer * (ep - 1);
	c->a2a_s = n * (t_local > t_remote ? t_local : t_remote);
}

/* Tensor parallelism moves activations, as the step issues them (compiler/step.c's TP_SUM
 * and TP_GATHER): per micro-batch an all-reduce of [T, H] after the vocab-parallel
 * embedding and one of d(xf) at the LM head; per layer the attention output's and d(xn1)'s
 * all-reduces; an MoE layer, sequence-parallel (each rank routes T/tp tokens), all-gathers
 * its output and d(x_mid); a dense layer all-reduces its output and d(xn2); and the
 * cross-entropy all-gathers each vocabulary slice's per-row (max, sum, target) in fp32.
 * Ring bytes per rank: 2(p-1)/p of an all-reduce's buffer, (p-1)/p of an all-gather's
 * whole. Full recompute (step.c's step_recompute) repeats each layer's attention
 * all-reduce; the MoE's all-gather and the dense MLP's all-reduce fed only the residual
 * add, which the recompute skips. */
static void plan_comm_tp(const struct spec *s, const struct ir *ir, const struct plan_layout *l, struct plan_comm *c)
{
	if (l->tp <= 1)
		return;
	const double p = l->tp, t = (double)s->train.micro_batch * (double)s->train.seq_len;
	const double n = (double)ir_dtype_bytes(s->train.precision, ir_sat_mul(s->train.micro_batch * s->train.seq_len,
										    ir->dims.hidden));
	double reduces = 2 + 2.0 * ir->nlayers + 2.0 * ir->n_dense_layers, gathers = 2.0 * ir->n_moe_layers;
	if (s->train.recompute == RECOMPUTE_FULL)
		reduces += ir->nlayers;
	double micro = reduces * plan_ring_factor(l->tp) * n + gathers * (p - 1) / p * n + (p - 1) * 3 * t * 4;
	c->tp_bytes = micro * s->train.grad_accum;
	c->tp_s = c->tp_bytes / ((l->tp_groups.all_in_domain ? c->intra_gbps : c->inter_gbps) * 1e9);
}

/* Gradients, once per step, in fp32 (the gradient buffers' dtype): ring all-reduce of the
 * dense shard over dp (the tp-partial ones, lower.h's IR_GRAD_PARTIAL, over the world: each
 * tp rank saw part of their rows or heads) and of the expert shard over
 * edp. With shard_optimizer the step then all-gathers the updated weights the forward reads,
 * each rank's range to its dp (dense) or edp (expert) group: a ring all-gather of the
 * weights in their storage dtype, except a bf16 step's norms, which it reads (and gathers)
 * in fp32. (The gradients stay all-reduced whole so the norm and the update are exactly an
 * unsharded step's; a reduce-scatter would save half the all-reduce.) */
static void plan_comm_grads(const struct ir *ir, const struct plan_layout *l, const struct plan_knobs *k, struct plan_comm *c)
{
	double dense = 0, partial = 0, expert = 0, gather_dense = 0, gather_expert = 0;
	for (int i = 0; i < ir->ntensors; i++) {
		const struct ir_tensor *t = &ir->tensors[i];
		if (!ir_tensor_trainable(t))
			continue;
		double b = 4.0 * (double)plan_shard_numel(t, k);
		bool norm = t->role == IR_ROLE_INPUT_NORM || t->role == IR_ROLE_POST_ATTN_NORM ||
			    t->role == IR_ROLE_FINAL_NORM || t->role == IR_ROLE_Q_NORM || t->role == IR_ROLE_K_NORM;
		double gathered = norm ? b : (double)ir_dtype_bytes(t->dtype, plan_shard_numel(t, k));
		if (t->shard == IR_SHARD_EP)
			expert += b, gather_expert += gathered;
		else if (ir_grad_group_of(ir, t, k->tp, !(k->kv_heads > 0 && k->kv_heads < k->tp)) == IR_GRAD_PARTIAL)
			partial += b, gather_dense += gathered;
		else
			dense += b, gather_dense += gathered;
	}
	c->dp_bytes = plan_ring_factor(l->dp) * dense + plan_ring_factor(l->dp * l->tp) * partial;
	c->edp_bytes = plan_ring_factor(l->edp) * expert;
	if (k->shard_optimizer) { /* a ring all-gather moves half an all-reduce's bytes */
		c->dp_bytes += plan_ring_factor(l->dp) / 2 * gather_dense;
		c->edp_bytes += plan_ring_factor(l->edp) / 2 * gather_expert;
	}
	c->dp_s = c->dp_bytes / ((l->dp_groups.all_in_domain ? c->intra_gbps : c->inter_gbps) * 1e9);
	c->edp_s = c->edp_bytes / ((l->edp_groups.all_in_domain ? c->intra_gbps : c->inter_gbps) * 1e9);
}

static void plan_comm_compute(const struct spec *s, const struct ir *ir, const struct plan_layout *l,
			      const struct plan_knobs *k, struct plan_comm *c)
{
	memset(c, 0, sizeof *c);
	int gpu = plan_gpu_valid(s->parallel.gpu) ? s->parallel.gpu : GPU_CUSTOM;
	c->intra_gbps = s->cluster.intra_node_gbps > 0 ? s->cluster.intra_node_gbps : plan_gpu_nvlink_gbps[gpu];
	c->inter_gbps = s->cluster.inter_node_gbps > 0 ? s->cluster.inter_node_gbps : PLAN_INTER_NODE_GBPS;
	plan_comm_a2a(s, ir, l, c);
	plan_comm_tp(s, ir, l, c);
	plan_comm_grads(ir, l, k, c);
	c->total_s = c->a2a_s + c->tp_s + c->dp_s + c->edp_s;
}

/* ---- the pass ---- */

struct plan *plan_build(const struct spec *s, const struct ir *ir)
{
	if (!s || !ir)
		return NULL;
	struct plan *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	if (!plan_layout_build(s, ir, &p->layout))
		goto out_free_plan;
	struct plan_knobs k = {
		.tp = p->layout.tp,
		.kv_heads = s->model.attention == ATTENTION_GQA ? s->model.num_kv_heads : 0,
		.dp = p->layout.dp,
		.ep = p->layout.ep,
		.edp = p->layout.edp,
		.shard_optimizer = s->parallel.shard_optimizer,
		.recompute = s->train.recompute,
	};
	plan_count_params(ir, &k, &p->params);
	plan_memory_compute(s, ir, &k, &p->memory);
	plan_memory_hints(s, ir, &k, &p->memory);
	plan_compute_flops(s, ir, &p->layout, &p->compute);
	plan_comm_compute(s, ir, &p->layout, &k, &p->comm);
	return p;
out_free_plan:
	plan_free(p);
	return NULL;
}

void plan_free(struct plan *p)
{
	if (!p)
		return;
	plan_layout_free(&p->layout);
	free(p);
}

const char *plan_mem_item_name(enum plan_mem_item i)
{
	static const char *const names[PLAN_MEM_NITEMS] = {
		"weights", "grads", "master", "optimizer", "activations", "expert_buffers", "a2a_buffers", "workspace",
	};
	return i >= 0 && i < PLAN_MEM_NITEMS ? names[i] : "?";
}

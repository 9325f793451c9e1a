/* lower.c - spec -> IR.
 *
 * Requires: a spec that check.c accepted (sizes positive, heads % tp == 0, E % ep == 0,
 *   lora targets spelled as the family's module names). "0 = derived" keys may still be 0:
 *   lower resolves them the same way check.c does (see lower_resolve_dims).
 * Establishes: the layer list (dense or MoE, attention window); every weight tensor with its
 *   Hugging Face safetensors name, full shape, storage dtype, how it is sharded, whether it
 *   trains and whether every token or only routed tokens use it; LoRA adapters with PEFT
 *   names; the activations each layer kind saves for backward under each recompute policy.
 *
 * Names follow transformers' modeling_{qwen3_moe,mixtral,deepseek_v3,gpt_oss}.py. Experts
 * are one stacked IR tensor [E, ...]; when the checkpoint stores them one by one the name
 * holds "{e}" (model.layers.0.mlp.experts.{e}.gate_proj.weight); GPT-OSS stores them
 * stacked already (mlp.experts.gate_up_proj [E, H, 2I], no ".weight").
 *
 * Shape legend: see lower.h.
 */
#include "lower.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

/* ---- family spelling ---- */

/* How a family spells its MoE block; attention and dense-MLP names are shared by all four. */
struct lower_names {
	const char *moe;    /* module holding router and experts */
	const char *router; /* router module inside it */
	const char *gate;   /* per-expert projections: gate (silu input), up, down */
	const char *up;
	const char *down;
	const char *shared; /* fused shared-expert module */
	bool fused_experts; /* experts stored stacked with biases (GPT-OSS) */
};

static const struct lower_names lower_family_names[] = {
	[FAMILY_QWEN3_MOE] = {"mlp", "gate", "gate_proj", "up_proj", "down_proj", "shared_expert", false},
	[FAMILY_MIXTRAL] = {"block_sparse_moe", "gate", "w1", "w3", "w2", "shared_expert", false},
	[FAMILY_DEEPSEEK_V3] = {"mlp", "gate", "gate_proj", "up_proj", "down_proj", "shared_experts", false},
	[FAMILY_GPT_OSS] = {"mlp", "router", "gate_up_proj", "gate_up_proj", "down_proj", "shared_expert", true},
};

/* ---- builder ---- */

struct lower_ctx {
	const struct spec *s;
	const struct lower_names *nm;
	struct ir *ir;
	int tcap;     /* tensors allocated */
	int acap;     /* acts allocated */
	bool failed;  /* out of memory or a name overflowed */
	char scratch[IR_NAME_MAX]; /* lower_fmt's buffer */
};

/* Scratch name for one TENSOR() call: printf into a buffer the push copies at once. */
__attribute__((format(printf, 2, 3))) static const char *lower_fmt(struct lower_ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->scratch, sizeof c->scratch, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof c->scratch)
		c->failed = true;
	return c->scratch;
}

/* Append a tensor named "model.layers.<layer>.<suffix>" (layer >= 0) or `suffix`.
 * Returns the tensor's index, or -1 after setting c->failed. */
static int lower_push_tensor(struct lower_ctx *c, int layer, enum ir_role role, int ndim,
			     const int64_t *shape, enum ir_shard shard, int shard_dim, const char *suffix)
{
	if (c->failed)
		return -1;
	struct ir *ir = c->ir;
	if (ir->ntensors == c->tcap) {
		int cap = c->tcap ? c->tcap * 2 : 64;
		struct ir_tensor *t = realloc(ir->tensors, (size_t)cap * sizeof *t);
		if (!t) {
			c->failed = true;
			return -1;
		}
		ir->tensors = t;
		c->tcap = cap;
	}
	struct ir_tensor *t = &ir->tensors[ir->ntensors];
	memset(t, 0, sizeof *t);
	int n = layer >= 0 ? snprintf(t->name, sizeof t->name, "model.layers.%d.%s", layer, suffix)
			   : snprintf(t->name, sizeof t->name, "%s", suffix);
	if (n < 0 || n >= IR_NAME_MAX) {
		c->failed = true;
		return -1;
	}
	t->layer = layer;
	t->role = role;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->shard = shard;
	t->shard_dim = shard == IR_SHARD_REPLICATED ? -1 : shard_dim;
	t->dtype = c->s->train.precision;
	t->train = IR_TRAIN_FULL;
	t->base = -1;
	return ir->ntensors++;
}

/* Shorthands: a shape literal and the common shardings of nn.Linear weights [out, in]. */
#define SHAPE(...) (const int64_t[]){__VA_ARGS__}
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define REPL IR_SHARD_REPLICATED, -1
#define COL IR_SHARD_TP_COLUMN, 0
#define ROW IR_SHARD_TP_ROW, 1
#define VOCAB IR_SHARD_VOCAB, 0
#define TENSOR(c, layer, role, shard, name, ...) \
	lower_push_tensor(c, layer, role, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), shard, name)

/* Routed experts: stacked [E, ...], split over ep on dim 0, used by routed tokens only. */
static void lower_mark_expert(struct lower_ctx *c, int i, bool transposed)
{
	if (i < 0)
		return;
	struct ir_tensor *t = &c->ir->tensors[i];
	t->shard = IR_SHARD_EP;
	t->shard_dim = 0;
	t->routed = true;
	t->stacked = true;
	t->transposed = transposed;
}

static void lower_push_act(struct lower_ctx *c, enum ir_part part, const char *name, int64_t width,
			   int elem_bytes, bool routed, bool tp_split, unsigned keep)
{
	if (c->failed || width <= 0)
		return;
	struct ir *ir = c->ir;
	if (ir->nacts == c->acap) {
		int cap = c->acap ? c->acap * 2 : 32;
		struct ir_act *a = realloc(ir->acts, (size_t)cap * sizeof *a);
		if (!a) {
			c->failed = true;
			return;
		}
		ir->acts = a;
		c->acap = cap;
	}
	struct ir_act *a = &ir->acts[ir->nacts++];
	memset(a, 0, sizeof *a);
	snprintf(a->name, sizeof a->name, "%s", name);
	a->part = part;
	a->width = width;
	a->elem_bytes = elem_bytes;
	a->routed = routed;
	a->tp_split = tp_split;
	a->keep = keep;
}

/* ---- dimensions and layer kinds ---- */

/* Resolve the "0 = derived" model keys exactly as check.c documents them. */
static void lower_resolve_dims(const struct spec *s, struct ir_dims *d)
{
	const struct model_spec *m = &s->model;
	const struct moe_spec *e = &s->moe;
	memset(d, 0, sizeof *d);
	d->hidden = m->hidden_size;
	d->layers = m->num_layers;
	d->heads = m->num_heads;
	d->vocab = m->vocab_size;
	d->experts = e->num_experts;
	d->top_k = e->top_k;
	d->expert_inter = e->moe_intermediate_size;
	d->dense_inter = m->dense_intermediate_size;
	int64_t one_shared = e->shared_expert_intermediate_size ? e->shared_expert_intermediate_size : e->moe_intermediate_size;
	d->shared_inter = e->num_shared_experts * one_shared;
	d->tied = m->tie_embeddings;
	d->lora_rank = s->train.mode == TRAIN_LORA ? s->train.lora.rank : 0;
	d->mla = m->attention == ATTENTION_MLA;
	if (d->mla) {
		/* Every head has its own k and v after kv_b_proj; q/k width = nope + rope. */
		d->kv_heads = m->num_heads;
		d->head_dim = m->qk_nope_head_dim + m->qk_rope_head_dim;
		d->v_head_dim = m->v_head_dim;
		d->q_lora = m->q_lora_rank;
		d->kv_lora = m->kv_lora_rank;
		d->qk_rope = m->qk_rope_head_dim;
	} else {
		d->kv_heads = m->num_kv_heads ? m->num_kv_heads : m->num_heads;
		d->head_dim = m->head_dim ? m->head_dim : m->hidden_size / m->num_heads;
		d->v_head_dim = d->head_dim;
	}
}

/* HF Qwen rule plus DeepSeek's first_k_dense: dense if i < first_k_dense, if i is in
 * mlp_only_layers, or if (i+1) % decoder_sparse_step != 0. */
static bool lower_layer_is_moe(const struct spec *s, int64_t i)
{
	if (i < s->model.first_k_dense)
		return false;
	for (int j = 0; j < s->model.mlp_only_layers.n; j++)
		if (s->model.mlp_only_layers.v[j] == i)
			return false;
	int64_t step = s->model.decoder_sparse_step > 0 ? s->model.decoder_sparse_step : 1;
	return (i + 1) % step == 0;
}

/* GPT-OSS alternates sliding and full attention, starting with sliding on layer 0
 * (config.layer_types); the spec's sliding_window applies to the even layers. */
static int64_t lower_layer_window(const struct spec *s, int64_t i)
{
	return s->model.sliding_window > 0 && i % 2 == 0 ? s->model.sliding_window : 0;
}

/* ---- weights ---- */

static void lower_add_globals_head(struct lower_ctx *c)
{
	const struct ir_dims *d = &c->ir->dims;
	TENSOR(c, -1, IR_ROLE_EMBED, VOCAB, "model.embed_tokens.weight", d->vocab, d->hidden);
}

static void lower_add_globals_tail(struct lower_ctx *c)
{
	const struct ir_dims *d = &c->ir->dims;
	TENSOR(c, -1, IR_ROLE_FINAL_NORM, REPL, "model.norm.weight", d->hidden);
	if (!d->tied)
		TENSOR(c, -1, IR_ROLE_LM_HEAD, VOCAB, "lm_head.weight", d->vocab, d->hidden);
}

static void lower_add_gqa(struct lower_ctx *c, int l)
{
	const struct ir_dims *d = &c->ir->dims;
	const struct model_spec *m = &c->s->model;
	int64_t h = d->hidden, q = d->heads * d->head_dim, kv = d->kv_heads * d->head_dim;
	TENSOR(c, l, IR_ROLE_Q, COL, "self_attn.q_proj.weight", q, h);
	TENSOR(c, l, IR_ROLE_K, COL, "self_attn.k_proj.weight", kv, h);
	TENSOR(c, l, IR_ROLE_V, COL, "self_attn.v_proj.weight", kv, h);
	TENSOR(c, l, IR_ROLE_O, ROW, "self_attn.o_proj.weight", h, q);
	if (m->attention_bias) {
		TENSOR(c, l, IR_ROLE_Q_BIAS, COL, "self_attn.q_proj.bias", q);
		TENSOR(c, l, IR_ROLE_K_BIAS, COL, "self_attn.k_proj.bias", kv);
		TENSOR(c, l, IR_ROLE_V_BIAS, COL, "self_attn.v_proj.bias", kv);
		/* added after the row-parallel reduction, so every rank holds it whole */
		TENSOR(c, l, IR_ROLE_O_BIAS, REPL, "self_attn.o_proj.bias", h);
	}
	if (m->qk_norm) {
		TENSOR(c, l, IR_ROLE_Q_NORM, REPL, "self_attn.q_norm.weight", d->head_dim);
		TENSOR(c, l, IR_ROLE_K_NORM, REPL, "self_attn.k_norm.weight", d->head_dim);
	}
	if (m->attention_sinks)
		TENSOR(c, l, IR_ROLE_SINKS, COL, "self_attn.sinks", d->heads);
}

/* MLA (DeepSeek-V3): the down-projections are small and replicated (as Megatron does);
 * the up-projections split heads over tp like q/k/v. */
static void lower_add_mla(struct lower_ctx *c, int l)
{
	const struct ir_dims *d = &c->ir->dims;
	bool bias = c->s->model.attention_bias;
	int64_t h = d->hidden, qw = d->heads * d->head_dim, kva = d->kv_lora + d->qk_rope;
	int64_t kvb = d->heads * (d->head_dim - d->qk_rope + d->v_head_dim);
	if (d->q_lora > 0) {
		TENSOR(c, l, IR_ROLE_Q_A, REPL, "self_attn.q_a_proj.weight", d->q_lora, h);
		if (bias)
			TENSOR(c, l, IR_ROLE_Q_A_BIAS, REPL, "self_attn.q_a_proj.bias", d->q_lora);
		TENSOR(c, l, IR_ROLE_Q_A_NORM, REPL, "self_attn.q_a_layernorm.weight", d->q_lora);
		TENSOR(c, l, IR_ROLE_Q_B, COL, "self_attn.q_b_proj.weight", qw, d->q_lora);
	} else {
		TENSOR(c, l, IR_ROLE_Q, COL, "self_attn.q_proj.weight", qw, h);
	}
	TENSOR(c, l, IR_ROLE_KV_A, REPL, "self_attn.kv_a_proj_with_mqa.weight", kva, h);
	if (bias)
		TENSOR(c, l, IR_ROLE_KV_A_BIAS, REPL, "self_attn.kv_a_proj_with_mqa.bias", kva);
	TENSOR(c, l, IR_ROLE_KV_A_NORM, REPL, "self_attn.kv_a_layernorm.weight", d->kv_lora);
	TENSOR(c, l, IR_ROLE_KV_B, COL, "self_attn.kv_b_proj.weight", kvb, d->kv_lora);
	TENSOR(c, l, IR_ROLE_O, ROW, "self_attn.o_proj.weight", h, d->heads * d->v_head_dim);
	if (bias)
		TENSOR(c, l, IR_ROLE_O_BIAS, REPL, "self_attn.o_proj.bias", h);
}

static void lower_add_dense_mlp(struct lower_ctx *c, int l)
{
	int64_t h = c->ir->dims.hidden, dd = c->ir->dims.dense_inter;
	TENSOR(c, l, IR_ROLE_MLP_GATE, COL, "mlp.gate_proj.weight", dd, h);
	TENSOR(c, l, IR_ROLE_MLP_UP, COL, "mlp.up_proj.weight", dd, h);
	TENSOR(c, l, IR_ROLE_MLP_DOWN, ROW, "mlp.down_proj.weight", h, dd);
}

static void lower_add_router(struct lower_ctx *c, int l)
{
	const struct lower_names *nm = c->nm;
	int64_t h = c->ir->dims.hidden, e = c->ir->dims.experts;
	TENSOR(c, l, IR_ROLE_ROUTER, REPL, lower_fmt(c, "%s.%s.weight", nm->moe, nm->router), e, h);
	if (c->s->moe.router_bias)
		TENSOR(c, l, IR_ROLE_ROUTER_BIAS, REPL, lower_fmt(c, "%s.%s.bias", nm->moe, nm->router), e);
	/* DeepSeek-V3 checkpoints always carry the selection bias; other families need it only
	 * when aux-loss-free balancing is on. */
	if (c->s->model.family == FAMILY_DEEPSEEK_V3 || c->s->moe.bias_update_rate > 0)
		TENSOR(c, l, IR_ROLE_ROUTER_CORRECTION, REPL,
		       lower_fmt(c, "%s.%s.e_score_correction_bias", nm->moe, nm->router), e);
}

/* GPT-OSS: experts are nn.Parameters used as x @ W, so [E, in, out], with biases. */
static void lower_add_experts_fused(struct lower_ctx *c, int l)
{
	const char *m = c->nm->moe;
	int64_t h = c->ir->dims.hidden, e = c->ir->dims.experts, i = c->ir->dims.expert_inter;
	lower_mark_expert(c, TENSOR(c, l, IR_ROLE_EXPERT_GATE_UP, REPL, lower_fmt(c, "%s.experts.gate_up_proj", m), e, h, 2 * i), true);
	lower_mark_expert(c, TENSOR(c, l, IR_ROLE_EXPERT_GATE_UP_BIAS, REPL, lower_fmt(c, "%s.experts.gate_up_proj_bias", m), e, 2 * i), false);
	lower_mark_expert(c, TENSOR(c, l, IR_ROLE_EXPERT_DOWN, REPL, lower_fmt(c, "%s.experts.down_proj", m), e, i, h), true);
	lower_mark_expert(c, TENSOR(c, l, IR_ROLE_EXPERT_DOWN_BIAS, REPL, lower_fmt(c, "%s.experts.down_proj_bias", m), e, h), false);
}

static void lower_add_experts(struct lower_ctx *c, int l)
{
	const struct lower_names *nm = c->nm;
	int64_t h = c->ir->dims.hidden, e = c->ir->dims.experts, i = c->ir->dims.expert_inter;
	if (nm->fused_experts) {
		lower_add_experts_fused(c, l);
		return;
	}
	lower_mark_expert(c, TENSOR(c, l, IR_ROLE_EXPERT_GATE, REPL, lower_fmt(c, "%s.experts.{e}.%s.weight", nm->moe, nm->gate), e, i, h), false);
	lower_mark_expert(c, TENSOR(c, l, IR_ROLE_EXPERT_UP, REPL, lower_fmt(c, "%s.experts.{e}.%s.weight", nm->moe, nm->up), e, i, h), false);
	lower_mark_expert(c, TENSOR(c, l, IR_ROLE_EXPERT_DOWN, REPL, lower_fmt(c, "%s.experts.{e}.%s.weight", nm->moe, nm->down), e, h, i), false);
}

/* Shared experts run on every token like a dense MLP, so they split over tp like one. */
static void lower_add_shared(struct lower_ctx *c, int l)
{
	const struct lower_names *nm = c->nm;
	int64_t h = c->ir->dims.hidden, sw = c->ir->dims.shared_inter;
	if (sw <= 0)
		return;
	TENSOR(c, l, IR_ROLE_SHARED_GATE, COL, lower_fmt(c, "%s.%s.gate_proj.weight", nm->moe, nm->shared), sw, h);
	TENSOR(c, l, IR_ROLE_SHARED_UP, COL, lower_fmt(c, "%s.%s.up_proj.weight", nm->moe, nm->shared), sw, h);
	TENSOR(c, l, IR_ROLE_SHARED_DOWN, ROW, lower_fmt(c, "%s.%s.down_proj.weight", nm->moe, nm->shared), h, sw);
	if (c->s->moe.shared_expert_gate)
		TENSOR(c, l, IR_ROLE_SHARED_EXPERT_GATE, REPL, lower_fmt(c, "%s.shared_expert_gate.weight", nm->moe), (int64_t)1, h);
}

static void lower_add_layer(struct lower_ctx *c, int l)
{
	struct ir_layer *ly = &c->ir->layers[l];
	int64_t h = c->ir->dims.hidden;
	ly->index = l;
	ly->moe = lower_layer_is_moe(c->s, l);
	ly->window = lower_layer_window(c->s, l);
	ly->first_tensor = c->ir->ntensors;
	TENSOR(c, l, IR_ROLE_INPUT_NORM, REPL, "input_layernorm.weight", h);
	if (c->ir->dims.mla)
		lower_add_mla(c, l);
	else
		lower_add_gqa(c, l);
	TENSOR(c, l, IR_ROLE_POST_ATTN_NORM, REPL, "post_attention_layernorm.weight", h);
	if (ly->moe) {
		lower_add_router(c, l);
		lower_add_experts(c, l);
		lower_add_shared(c, l);
		c->ir->n_moe_layers++;
	} else {
		lower_add_dense_mlp(c, l);
		c->ir->n_dense_layers++;
	}
	ly->ntensors = c->ir->ntensors - ly->first_tensor;
}

/* ---- training: trainable kind and storage dtype ---- */

static bool lower_role_is_router(enum ir_role r)
{
	return r == IR_ROLE_ROUTER || r == IR_ROLE_ROUTER_BIAS;
}

/* Module name of a weight: its HF name without ".weight"; the last component is what PEFT's
 * target_modules match ("model.layers.0.self_attn.q_proj" matches "q_proj"). */
static const char *lower_module_leaf(const struct ir_tensor *t, char *buf, size_t n)
{
	snprintf(buf, n, "%s", t->name);
	size_t len = strlen(buf);
	if (len > 7 && strcmp(buf + len - 7, ".weight") == 0)
		buf[len - 7] = 0;
	const char *dot = strrchr(buf, '.');
	return dot ? dot + 1 : buf;
}

/* PEFT semantics: a linear weight is adapted when its module's last name is listed, or when
 * "all-linear" is listed (every linear except the LM head). Embeddings, norms and biases
 * never get adapters here. */
static bool lower_is_lora_target(const struct lower_ctx *c, const struct ir_tensor *t)
{
	const struct str_list *tm = &c->s->train.lora.target_modules;
	if (c->s->train.mode != TRAIN_LORA || t->role == IR_ROLE_EMBED || !ir_tensor_is_matmul(t, c->ir))
		return false;
	char buf[IR_NAME_MAX];
	const char *leaf = lower_module_leaf(t, buf, sizeof buf);
	for (int i = 0; i < tm->n; i++) {
		if (strcmp(tm->v[i], "all-linear") == 0 && t->role != IR_ROLE_LM_HEAD)
			return true;
		if (strcmp(tm->v[i], leaf) == 0)
			return true;
	}
	return false;
}

/* full: everything trains except a router with train_router off and rule-updated buffers.
 * lora: adapted weights are LoRA bases, the router trains only with train_router, the rest
 * is frozen. */
static enum ir_train lower_train_kind(const struct lower_ctx *c, const struct ir_tensor *t)
{
	if (t->role == IR_ROLE_ROUTER_CORRECTION)
		return IR_TRAIN_BUFFER;
	if (lower_is_lora_target(c, t))
		return IR_TRAIN_LORA_BASE;
	if (lower_role_is_router(t->role))
		return c->s->train.train_router ? IR_TRAIN_ROUTER : IR_TRAIN_FROZEN;
	return c->s->train.mode == TRAIN_LORA ? IR_TRAIN_FROZEN : IR_TRAIN_FULL;
}

/* Trained weights are stored in the compute precision (fp32 masters live in the optimizer
 * state, see plan.c). Under LoRA the frozen projection weights of attention, experts and
 * MLPs are stored in train.base_dtype (QLoRA quantizes exactly these); embedding, LM head,
 * router, norms and biases stay in the compute precision because they are small or
 * precision-sensitive. Rule-updated buffers are fp32. */
static int lower_storage_dtype(const struct lower_ctx *c, const struct ir_tensor *t)
{
	if (t->train == IR_TRAIN_BUFFER)
		return DTYPE_FP32;
	bool frozen = t->train == IR_TRAIN_FROZEN || t->train == IR_TRAIN_LORA_BASE;
	bool projection = ir_tensor_is_matmul(t, c->ir) && t->role != IR_ROLE_EMBED && t->role != IR_ROLE_LM_HEAD &&
			  !lower_role_is_router(t->role) && t->role != IR_ROLE_SHARED_EXPERT_GATE;
	if (c->s->train.mode == TRAIN_LORA && frozen && projection)
		return c->s->train.base_dtype;
	return c->s->train.precision;
}

static void lower_assign_training(struct lower_ctx *c)
{
	for (int i = 0; i < c->ir->ntensors; i++) {
		struct ir_tensor *t = &c->ir->tensors[i];
		t->train = lower_train_kind(c, t);
		t->dtype = lower_storage_dtype(c, t);
	}
}

/* One adapter pair per LoRA base: A [r, in] then B [out, r] (stacked bases get [E, r, in]
 * and [E, out, r]). Sharding follows the base so no extra communication is needed:
 * column-split base -> A whole, B split on out; row-split base -> A split on in, B whole;
 * expert base -> both split over ep. PEFT names: base_model.model.<module>.lora_{A,B}.weight. */
static void lower_add_adapter_pair(struct lower_ctx *c, int bi)
{
	const struct ir_tensor *b = &c->ir->tensors[bi];
	int lead = b->stacked ? 1 : 0;
	int64_t d0 = b->shape[lead], d1 = b->shape[lead + 1];
	int64_t out = b->transposed ? d1 : d0, in = b->transposed ? d0 : d1, r = c->ir->dims.lora_rank;
	int64_t e = b->stacked ? b->shape[0] : 0;
	enum ir_shard sa = IR_SHARD_REPLICATED, sb = IR_SHARD_REPLICATED;
	int da = -1, db = -1;
	if (b->shard == IR_SHARD_EP) {
		sa = sb = IR_SHARD_EP;
		da = db = 0;
	} else if (b->shard == IR_SHARD_TP_COLUMN || b->shard == IR_SHARD_VOCAB) {
		sb = b->shard;
		db = lead;
	} else if (b->shard == IR_SHARD_TP_ROW) {
		sa = IR_SHARD_TP_ROW;
		da = lead + 1;
	}
	char module[IR_NAME_MAX];
	snprintf(module, sizeof module, "%s", b->name);
	size_t len = strlen(module);
	if (len > 7 && strcmp(module + len - 7, ".weight") == 0)
		module[len - 7] = 0;
	int layer = b->layer;
	bool routed = b->routed, stacked = b->stacked;
	int ia, ib;
	if (stacked) {
		ia = lower_push_tensor(c, -1, IR_ROLE_LORA_A, 3, SHAPE(e, r, in), sa, da, lower_fmt(c, "base_model.model.%s.lora_A.weight", module));
		ib = lower_push_tensor(c, -1, IR_ROLE_LORA_B, 3, SHAPE(e, out, r), sb, db, lower_fmt(c, "base_model.model.%s.lora_B.weight", module));
	} else {
		ia = lower_push_tensor(c, -1, IR_ROLE_LORA_A, 2, SHAPE(r, in), sa, da, lower_fmt(c, "base_model.model.%s.lora_A.weight", module));
		ib = lower_push_tensor(c, -1, IR_ROLE_LORA_B, 2, SHAPE(out, r), sb, db, lower_fmt(c, "base_model.model.%s.lora_B.weight", module));
	}
	int idx[2] = {ia, ib};
	for (int k = 0; k < 2; k++) {
		if (idx[k] < 0)
			return;
		struct ir_tensor *t = &c->ir->tensors[idx[k]];
		t->layer = layer;
		t->routed = routed;
		t->stacked = stacked;
		t->train = IR_TRAIN_ADAPTER;
		t->dtype = c->s->train.precision;
		t->base = bi;
	}
}

static void lower_add_adapters(struct lower_ctx *c)
{
	int nbase = c->ir->ntensors;
	for (int i = 0; i < nbase && !c->failed; i++)
		if (c->ir->tensors[i].train == IR_TRAIN_LORA_BASE)
			lower_add_adapter_pair(c, i);
}

/* ---- activations saved for backward ----
 *
 * Rule: an op's backward needs its inputs (for weight gradients) and, for nonlinear ops,
 * what it cannot cheaply rebuild. Per layer, with b = bytes of the compute precision:
 *   RMSNorm       saves its input (the residual stream, saved anyway) and rstd [1] fp32;
 *                 its output feeds the next GEMM, whose weight gradient needs it.
 *   q/k/v GEMMs   need the norm output; flash attention backward needs q, k, v (post
 *                 RoPE), its output and the softmax log-sum-exp [NH] fp32 (never [T, T]).
 *   qk_norm       needs the pre-norm projections and their rstd.
 *   router        softmax/sigmoid backward and the aux loss need the logits [E] in
 *                 router_dtype, and the top-k ids (int32) and weights (fp32).
 *   experts       gate_up GEMM needs the permuted tokens [K*H] per token; SwiGLU needs
 *                 gate_up [K*2I]; the down GEMM needs act [K*I]; the weighted combine's
 *                 gradient w.r.t. the routing weights needs the down output [K*H].
 *   residuals     layer input (checkpoint) and the mid-layer residual (post-attn norm input).
 * Policies: none keeps all of it; selective drops what kernels rebuild exactly from what
 * is kept (norm outputs from residual + rstd, post-RoPE q/k from pre-norm q/k when
 * qk_norm, SwiGLU outputs from gate_up, MLA's per-head q/k/v from its latents) - the
 * layernorm, moe_act and mla_up_proj modules of Megatron's selective recompute. The
 * SwiGLU output comes back bit for bit: moe_gate_up_fwd computes it from the gate_up it
 * stores (rounded to the activation dtype), and swiglu_fwd runs the same function on the
 * kept gate_up. compiler/step.c's step_saved is the step's side of these lists. Full keeps
 * only each layer's input and recomputes the layer in backward (plan.c adds one layer's
 * working set for that).
 * Under tp > 1 moec runs sequence parallelism (Megatron requires it for MoE with TP), so
 * token-wise tensors split over tp by tokens and attention tensors by heads: both tp_split.
 * MLA's down-projections are replicated GEMMs over the gathered sequence: not split. */

static void lower_add_acts_norm(struct lower_ctx *c, const char *rstd, const char *out)
{
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	lower_push_act(c, IR_PART_ATTENTION, rstd, 1, 4, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_ATTENTION, out, c->ir->dims.hidden, b, false, true, IR_KEEP(RECOMPUTE_NONE));
}

static void lower_add_acts_gqa(struct lower_ctx *c)
{
	const struct ir_dims *d = &c->ir->dims;
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	int64_t q = d->heads * d->head_dim, kv = d->kv_heads * d->head_dim;
	unsigned rope_keep = IR_KEEP_NOT_FULL;
	if (c->s->model.qk_norm) {
		lower_push_act(c, IR_PART_ATTENTION, "q_proj_out", q, b, false, true, IR_KEEP_NOT_FULL);
		lower_push_act(c, IR_PART_ATTENTION, "k_proj_out", kv, b, false, true, IR_KEEP_NOT_FULL);
		lower_push_act(c, IR_PART_ATTENTION, "qk_norm_rstd", d->heads + d->kv_heads, 4, false, true, IR_KEEP_NOT_FULL);
		rope_keep = IR_KEEP(RECOMPUTE_NONE);
	}
	lower_push_act(c, IR_PART_ATTENTION, "q_rope", q, b, false, true, rope_keep);
	lower_push_act(c, IR_PART_ATTENTION, "k_rope", kv, b, false, true, rope_keep);
	lower_push_act(c, IR_PART_ATTENTION, "v", kv, b, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_ATTENTION, "attn_out", q, b, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_ATTENTION, "attn_lse", d->heads, 4, false, true, IR_KEEP_NOT_FULL);
}

static void lower_add_acts_mla(struct lower_ctx *c)
{
	const struct ir_dims *d = &c->ir->dims;
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	if (d->q_lora > 0) {
		lower_push_act(c, IR_PART_ATTENTION, "q_a_out", d->q_lora, b, false, false, IR_KEEP_NOT_FULL);
		lower_push_act(c, IR_PART_ATTENTION, "q_a_rstd", 1, 4, false, false, IR_KEEP_NOT_FULL);
		lower_push_act(c, IR_PART_ATTENTION, "q_a_norm_out", d->q_lora, b, false, false, IR_KEEP(RECOMPUTE_NONE));
	}
	lower_push_act(c, IR_PART_ATTENTION, "kv_a_out", d->kv_lora + d->qk_rope, b, false, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_ATTENTION, "kv_a_rstd", 1, 4, false, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_ATTENTION, "kv_a_norm_out", d->kv_lora, b, false, false, IR_KEEP(RECOMPUTE_NONE));
	/* Per-head q/k/v are rebuilt from the latents by the up-projection GEMMs under
	 * selective, as DeepSeek-V3's own training does (tech report 3.2.3, "recomputation of
	 * RMSNorm and MLA up-projection"; Megatron's recompute module mla_up_proj): they are
	 * ~6x wider than the latents. */
	lower_push_act(c, IR_PART_ATTENTION, "q_rope", d->heads * d->head_dim, b, false, true, IR_KEEP(RECOMPUTE_NONE));
	lower_push_act(c, IR_PART_ATTENTION, "k_rope", d->heads * d->head_dim, b, false, true, IR_KEEP(RECOMPUTE_NONE));
	lower_push_act(c, IR_PART_ATTENTION, "v", d->heads * d->v_head_dim, b, false, true, IR_KEEP(RECOMPUTE_NONE));
	lower_push_act(c, IR_PART_ATTENTION, "attn_out", d->heads * d->v_head_dim, b, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_ATTENTION, "attn_lse", d->heads, 4, false, true, IR_KEEP_NOT_FULL);
}

static void lower_add_acts_attention(struct lower_ctx *c)
{
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	int64_t h = c->ir->dims.hidden;
	lower_push_act(c, IR_PART_ATTENTION, "resid_in", h, b, false, true, IR_KEEP_ALL);
	lower_add_acts_norm(c, "attn_norm_rstd", "attn_norm_out");
	if (c->ir->dims.mla)
		lower_add_acts_mla(c);
	else
		lower_add_acts_gqa(c);
	lower_push_act(c, IR_PART_ATTENTION, "resid_mid", h, b, false, true, IR_KEEP_NOT_FULL);
	lower_add_acts_norm(c, "mlp_norm_rstd", "mlp_norm_out");
}

static void lower_add_acts_moe(struct lower_ctx *c)
{
	const struct ir_dims *d = &c->ir->dims;
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	int rb = (int)ir_dtype_bytes(c->s->moe.router_dtype, 1);
	lower_push_act(c, IR_PART_MOE, "router_logits", d->experts, rb, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_MOE, "topk_ids", d->top_k, 4, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_MOE, "topk_weights", d->top_k, 4, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_MOE, "expert_in", d->hidden, b, true, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_MOE, "expert_gate_up", 2 * d->expert_inter, b, true, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_MOE, "expert_act", d->expert_inter, b, true, false, IR_KEEP(RECOMPUTE_NONE));
	lower_push_act(c, IR_PART_MOE, "expert_out", d->hidden, b, true, false, IR_KEEP_NOT_FULL);
	if (d->shared_inter > 0) {
		lower_push_act(c, IR_PART_MOE, "shared_gate_up", 2 * d->shared_inter, b, false, true, IR_KEEP_NOT_FULL);
		lower_push_act(c, IR_PART_MOE, "shared_act", d->shared_inter, b, false, true, IR_KEEP(RECOMPUTE_NONE));
		if (c->s->moe.shared_expert_gate)
			lower_push_act(c, IR_PART_MOE, "shared_gate_logit", 1, 4, false, true, IR_KEEP_NOT_FULL);
	}
}

static void lower_add_acts_dense(struct lower_ctx *c)
{
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	int64_t dd = c->ir->dims.dense_inter;
	lower_push_act(c, IR_PART_DENSE, "mlp_gate_up", 2 * dd, b, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_DENSE, "mlp_act", dd, b, false, true, IR_KEEP(RECOMPUTE_NONE));
}

/* Tokens and labels (int32), the last residual and the final norm feeding the fused
 * LM-head + cross-entropy, which keeps only the per-token log-sum-exp. */
static void lower_add_acts_global(struct lower_ctx *c)
{
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	int64_t h = c->ir->dims.hidden;
	lower_push_act(c, IR_PART_GLOBAL, "tokens", 1, 4, false, false, IR_KEEP_ALL);
	lower_push_act(c, IR_PART_GLOBAL, "labels", 1, 4, false, false, IR_KEEP_ALL);
	lower_push_act(c, IR_PART_GLOBAL, "final_resid", h, b, false, true, IR_KEEP_ALL);
	lower_push_act(c, IR_PART_GLOBAL, "final_norm_rstd", 1, 4, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_GLOBAL, "final_norm_out", h, b, false, true, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_GLOBAL, "ce_lse", 1, 4, false, true, IR_KEEP_ALL);
}

static enum ir_part lower_role_part(enum ir_role r)
{
	switch (r) {
	case IR_ROLE_EMBED:
	case IR_ROLE_LM_HEAD:
	case IR_ROLE_FINAL_NORM:
		return IR_PART_GLOBAL;
	case IR_ROLE_ROUTER:
	case IR_ROLE_EXPERT_GATE:
	case IR_ROLE_EXPERT_UP:
	case IR_ROLE_EXPERT_DOWN:
	case IR_ROLE_EXPERT_GATE_UP:
	case IR_ROLE_SHARED_GATE:
	case IR_ROLE_SHARED_UP:
	case IR_ROLE_SHARED_DOWN:
	case IR_ROLE_SHARED_EXPERT_GATE:
		return IR_PART_MOE;
	case IR_ROLE_MLP_GATE:
	case IR_ROLE_MLP_UP:
	case IR_ROLE_MLP_DOWN:
		return IR_PART_DENSE;
	default:
		return IR_PART_ATTENTION;
	}
}

/* LoRA: the rank-r intermediate x @ A^T of every adapter is saved for B's weight gradient
 * (the adapter input is the base GEMM's input, saved already). Widths are summed over the
 * adapters of one representative layer of each kind. */
static void lower_add_acts_lora(struct lower_ctx *c)
{
	const struct ir *ir = c->ir;
	int b = (int)ir_dtype_bytes(c->s->train.precision, 1);
	int rep[4] = {-1, 0, -1, -1}; /* representative layer per part */
	for (int l = 0; l < ir->nlayers; l++) {
		int part = ir->layers[l].moe ? IR_PART_MOE : IR_PART_DENSE;
		if (rep[part] < 0)
			rep[part] = l;
	}
	int64_t tok[4] = {0}, routed = 0;
	for (int i = 0; i < ir->ntensors; i++) {
		const struct ir_tensor *t = &ir->tensors[i];
		if (t->role != IR_ROLE_LORA_A)
			continue;
		enum ir_part p = lower_role_part(ir->tensors[t->base].role);
		if (p != IR_PART_GLOBAL && t->layer != rep[p])
			continue;
		if (t->routed)
			routed += ir->dims.lora_rank;
		else
			tok[p] += ir->dims.lora_rank;
	}
	lower_push_act(c, IR_PART_GLOBAL, "lora_mid", tok[IR_PART_GLOBAL], b, false, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_ATTENTION, "lora_mid", tok[IR_PART_ATTENTION], b, false, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_MOE, "lora_mid", tok[IR_PART_MOE], b, false, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_MOE, "lora_mid_routed", routed, b, true, false, IR_KEEP_NOT_FULL);
	lower_push_act(c, IR_PART_DENSE, "lora_mid", tok[IR_PART_DENSE], b, false, false, IR_KEEP_NOT_FULL);
}

static void lower_add_acts(struct lower_ctx *c)
{
	lower_add_acts_global(c);
	lower_add_acts_attention(c);
	if (c->ir->n_moe_layers > 0)
		lower_add_acts_moe(c);
	if (c->ir->n_dense_layers > 0)
		lower_add_acts_dense(c);
	if (c->ir->dims.lora_rank > 0)
		lower_add_acts_lora(c);
}

/* ---- the pass ---- */

struct ir *lower(const struct spec *s)
{
	struct ir *ir = calloc(1, sizeof *ir);
	if (!ir)
		return NULL;
	struct lower_ctx c = {.s = s, .ir = ir};
	int fam = s->model.family >= 0 && s->model.family <= FAMILY_GPT_OSS ? s->model.family : FAMILY_QWEN3_MOE;
	c.nm = &lower_family_names[fam];
	ir->family = s->model.family;
	lower_resolve_dims(s, &ir->dims);
	ir->nlayers = (int)ir->dims.layers;
	ir->layers = calloc((size_t)(ir->nlayers > 0 ? ir->nlayers : 1), sizeof *ir->layers);
	if (!ir->layers)
		goto out_free_ir;
	lower_add_globals_head(&c);
	for (int l = 0; l < ir->nlayers; l++)
		lower_add_layer(&c, l);
	lower_add_globals_tail(&c);
	lower_assign_training(&c);
	lower_add_adapters(&c);
	lower_add_acts(&c);
	if (c.failed)
		goto out_free_ir;
	return ir;
out_free_ir:
	ir_free(ir);
	return NULL;
}

void ir_free(struct ir *ir)
{
	if (!ir)
		return;
	free(ir->layers);
	free(ir->tensors);
	free(ir->acts);
	free(ir);
}

/* ---- queries ---- */

int64_t ir_tensor_numel(const struct ir_tensor *t)
{
	int64_t n = 1;
	for (int i = 0; i < t->ndim; i++)
		n = ir_sat_mul(n, t->shape[i]);
	return n;
}

bool ir_tensor_trainable(const struct ir_tensor *t)
{
	return t->train == IR_TRAIN_FULL || t->train == IR_TRAIN_ROUTER || t->train == IR_TRAIN_ADAPTER;
}

bool ir_tensor_is_matmul(const struct ir_tensor *t, const struct ir *ir)
{
	switch (t->role) {
	case IR_ROLE_EMBED:
		return ir->dims.tied; /* a tied embedding is also the LM head */
	case IR_ROLE_LM_HEAD:
	case IR_ROLE_Q:
	case IR_ROLE_K:
	case IR_ROLE_V:
	case IR_ROLE_O:
	case IR_ROLE_Q_A:
	case IR_ROLE_Q_B:
	case IR_ROLE_KV_A:
	case IR_ROLE_KV_B:
	case IR_ROLE_ROUTER:
	case IR_ROLE_EXPERT_GATE:
	case IR_ROLE_EXPERT_UP:
	case IR_ROLE_EXPERT_DOWN:
	case IR_ROLE_EXPERT_GATE_UP:
	case IR_ROLE_SHARED_GATE:
	case IR_ROLE_SHARED_UP:
	case IR_ROLE_SHARED_DOWN:
	case IR_ROLE_SHARED_EXPERT_GATE:
	case IR_ROLE_MLP_GATE:
	case IR_ROLE_MLP_UP:
	case IR_ROLE_MLP_DOWN:
	case IR_ROLE_LORA_A:
	case IR_ROLE_LORA_B:
		return true;
	default:
		return false;
	}
}

enum ir_grad_group ir_grad_group_of(const struct ir *ir, const struct ir_tensor *t, int64_t tp, bool kv_split)
{
	if (t->shard == IR_SHARD_EP)
		return IR_GRAD_EXPERT;
	if (tp <= 1)
		return IR_GRAD_SAME;
	switch (t->role) {
	case IR_ROLE_EMBED:
	case IR_ROLE_LM_HEAD:
	case IR_ROLE_Q:
	case IR_ROLE_O:
	case IR_ROLE_MLP_GATE:
	case IR_ROLE_MLP_UP:
	case IR_ROLE_MLP_DOWN:
		return IR_GRAD_SPLIT;
	case IR_ROLE_K:
	case IR_ROLE_V:
		return kv_split ? IR_GRAD_SPLIT : IR_GRAD_PARTIAL;
	case IR_ROLE_POST_ATTN_NORM: /* partial where the MoE runs on a token slice */
		return t->layer >= 0 && t->layer < ir->nlayers && ir->layers[t->layer].moe ? IR_GRAD_PARTIAL
												: IR_GRAD_SAME;
	case IR_ROLE_Q_NORM:
	case IR_ROLE_K_NORM:
	case IR_ROLE_ROUTER:
		return IR_GRAD_PARTIAL;
	default:
		return IR_GRAD_SAME;
	}
}

bool ir_tensor_is_param(const struct ir_tensor *t)
{
	return t->train != IR_TRAIN_BUFFER && t->role != IR_ROLE_LORA_A && t->role != IR_ROLE_LORA_B;
}

int64_t ir_dtype_bytes(int d, int64_t n)
{
	switch (d) {
	case DTYPE_BF16:
	case DTYPE_FP16:
		return ir_sat_mul(2, n);
	case DTYPE_FP8:
		return n;
	case DTYPE_NF4:
		return n / 2 + n % 2 + (n / 64 + (n % 64 != 0)) * 4;
	default:
		return ir_sat_mul(4, n);
	}
}

void ir_expert_name(const struct ir_tensor *t, int64_t e, char *buf, size_t n)
{
	const char *p = strstr(t->name, "{e}");
	if (!p) {
		snprintf(buf, n, "%s", t->name);
		return;
	}
	snprintf(buf, n, "%.*s%lld%s", (int)(p - t->name), t->name, (long long)e, p + 3);
}

const struct ir_tensor *ir_find(const struct ir *ir, const char *name)
{
	for (int i = 0; i < ir->ntensors; i++)
		if (strcmp(ir->tensors[i].name, name) == 0)
			return &ir->tensors[i];
	return NULL;
}

static const char *const ir_role_names[IR_ROLE_COUNT] = {
	"embed", "lm_head", "final_norm", "input_norm", "post_attn_norm", "q", "k", "v", "o",
	"q_bias", "k_bias", "v_bias", "o_bias", "q_norm", "k_norm", "sinks", "q_a", "q_a_bias",
	"q_a_norm", "q_b", "kv_a", "kv_a_bias", "kv_a_norm", "kv_b", "router", "router_bias",
	"router_correction", "expert_gate", "expert_up", "expert_down", "expert_gate_up",
	"expert_gate_up_bias", "expert_down_bias", "shared_gate", "shared_up", "shared_down",
	"shared_expert_gate", "mlp_gate", "mlp_up", "mlp_down", "lora_A", "lora_B",
};

const char *ir_role_name(enum ir_role r)
{
	return r >= 0 && r < IR_ROLE_COUNT ? ir_role_names[r] : "?";
}

const char *ir_shard_name(enum ir_shard s)
{
	static const char *const names[] = {"replicated", "tp_column", "tp_row", "ep", "vocab"};
	return s >= 0 && s <= IR_SHARD_VOCAB ? names[s] : "?";
}

const char *ir_train_name(enum ir_train t)
{
	static const char *const names[] = {"full", "frozen", "lora_base", "router", "adapter", "buffer"};
	return t >= 0 && t <= IR_TRAIN_BUFFER ? names[t] : "?";
}

const char *ir_part_name(enum ir_part p)
{
	static const char *const names[] = {"global", "attention", "moe", "dense"};
	return p >= 0 && p <= IR_PART_DENSE ? names[p] : "?";
}

void ir_dump(FILE *f, const struct ir *ir)
{
	const struct ir_dims *d = &ir->dims;
	fprintf(f, "ir: %d layers (%d moe, %d dense), %d tensors, %d activations\n", ir->nlayers,
		ir->n_moe_layers, ir->n_dense_layers, ir->ntensors, ir->nacts);
	fprintf(f, "dims: H=%lld NH=%lld NKV=%lld HD=%lld V=%lld E=%lld K=%lld I=%lld D=%lld S=%lld r=%lld%s%s\n",
		(long long)d->hidden, (long long)d->heads, (long long)d->kv_heads, (long long)d->head_dim,
		(long long)d->vocab, (long long)d->experts, (long long)d->top_k, (long long)d->expert_inter,
		(long long)d->dense_inter, (long long)d->shared_inter, (long long)d->lora_rank,
		d->mla ? " mla" : "", d->tied ? " tied" : "");
	for (int i = 0; i < ir->ntensors; i++) {
		const struct ir_tensor *t = &ir->tensors[i];
		fprintf(f, "  %-64s [", t->name);
		for (int k = 0; k < t->ndim; k++)
			fprintf(f, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
		fprintf(f, "] %s %s", schema_enum_name(dtype_names, t->dtype), ir_role_name(t->role));
		fprintf(f, " %s", ir_shard_name(t->shard));
		if (t->shard_dim >= 0)
			fprintf(f, "(dim %d)", t->shard_dim);
		fprintf(f, " %s%s\n", ir_train_name(t->train), t->routed ? " routed" : "");
	}
	for (int i = 0; i < ir->nacts; i++) {
		const struct ir_act *a = &ir->acts[i];
		fprintf(f, "  act %-10s %-20s %lld x %dB per %s%s keep:%s%s%s\n", ir_part_name(a->part), a->name,
			(long long)a->width, a->elem_bytes, a->routed ? "routed row" : "token",
			a->tp_split ? " /tp" : "", a->keep & IR_KEEP(RECOMPUTE_NONE) ? " none" : "",
			a->keep & IR_KEEP(RECOMPUTE_SELECTIVE) ? " selective" : "",
			a->keep & IR_KEEP(RECOMPUTE_FULL) ? " full" : "");
	}
}

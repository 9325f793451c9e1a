/* check.c - pass 2: cross-field rules and derived values. See check.h.
 *
 * The parallel rules (also in docs/spec.md):
 *   world = nodes * gpus_per_node.
 *   Attention and dense weights fold the world as dp x tp; experts fold it as ep x edp
 *   (expert tensor parallelism is 1), so dp * tp == world and ep divides world.
 *   num_experts % ep == 0 (each EP rank holds the same number of experts).
 *   num_heads % tp == 0; kv heads: if num_kv_heads >= tp then num_kv_heads % tp == 0,
 *   else tp % num_kv_heads == 0 and each kv head is replicated on tp / num_kv_heads ranks.
 *   pp == 1: pipeline parallelism is rejected for MoE.
 */
#include "check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "diag.h"
#include "parse.h"
#include "schema.h"

double gpu_memory_gib(int gpu)
{
	/* Total memory as the driver reports it (nvidia-smi MiB / 1024). */
	switch (gpu) {
	case GPU_H100: return 79.6;  /* 81559 MiB */
	case GPU_H200: return 140.4; /* 143771 MiB */
	case GPU_B200: return 179.0; /* 183359 MiB */
	case GPU_A100: return 80.0;  /* 81920 MiB */
	default: return 0;
	}
}

static struct origin *origin_of(struct spec *s, const char *path)
{
	return &s->origin[schema_index(schema_find(path))];
}

/* Report an error at the key `path` was set by; for a default, at its section in the
 * user's file (or the file itself when the section is absent). */
static void report(struct spec *s, enum diag_level level, const char *path, const char *fmt, va_list ap)
{
	const struct origin *o = origin_of(s, path);
	if (o->src) {
		diag_vat(level, o->src, o->line, o->col, fmt, ap);
		return;
	}
	char section[32];
	snprintf(section, sizeof section, "%.*s", (int)strcspn(path, "."), path);
	struct origin sec = spec_section_origin(s, section);
	if (sec.src)
		diag_vat(level, sec.src, sec.line, sec.col, fmt, ap);
	else
		diag_vat(level, s->main_source, 0, 0, fmt, ap);
}

static void error_at(struct spec *s, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error_at(struct spec *s, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(s, DIAG_ERROR, path, fmt, ap);
	va_end(ap);
}

static void warning_at(struct spec *s, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warning_at(struct spec *s, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(s, DIAG_WARNING, path, fmt, ap);
	va_end(ap);
}

/* Of two keys in one rule, the one the user more likely got wrong: the one set by the
 * higher-priority source (their file or --set rather than a preset or a default). */
static const char *blame(struct spec *s, const char *a, const char *b)
{
	return origin_of(s, b)->kind > origin_of(s, a)->kind ? b : a;
}

/* Set by the user's own file or --set (warnings about choices are for the user's choices). */
static int user_set(struct spec *s, const char *path) { return origin_of(s, path)->kind >= ORIGIN_FILE; }

static void derive(struct spec *s, const char *path, void *field, double value, int is_int)
{
	if (is_int)
		*(int64_t *)field = (int64_t)value;
	else
		*(double *)field = value;
	*origin_of(s, path) = (struct origin){ORIGIN_DERIVED, NULL, 0, 0};
}

/* "1, 2, 4 or 8": the common divisors of n and m, for messages that say what would work. */
static void divisors(int64_t n, int64_t m, char *buf, size_t size)
{
	int64_t d[64];
	int nd = 0;
	for (int64_t i = 1; i <= n && i <= m && nd < 64; i++)
		if (n % i == 0 && m % i == 0)
			d[nd++] = i;
	size_t used = 0;
	buf[0] = 0;
	for (int i = 0; i < nd && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%lld", i == 0 ? "" : (i == nd - 1 ? " or " : ", "), (long long)d[i]);
}

static const char *const required[] = {
	"model.hidden_size", "model.num_layers", "model.num_heads", "model.vocab_size",
	"moe.num_experts", "moe.top_k", "moe.moe_intermediate_size", NULL,
};

static int check_required(struct spec *s)
{
	int missing = 0;
	for (int i = 0; required[i]; i++) {
		if (origin_of(s, required[i])->kind != ORIGIN_UNSET)
			continue;
		error_at(s, required[i], "%s is required: set it, include a preset (include: qwen3_30b_a3b), or import model.hf_config", required[i]);
		missing++;
	}
	return missing;
}

static void check_model(struct spec *s)
{
	struct model_spec *m = &s->model;
	if (!m->num_kv_heads)
		derive(s, "model.num_kv_heads", &m->num_kv_heads, (double)m->num_heads, 1);
	if (m->num_heads % m->num_kv_heads)
		error_at(s, blame(s, "model.num_kv_heads", "model.num_heads"),
		         "num_heads (%lld) is not a multiple of num_kv_heads (%lld): each key/value head serves a whole group of query heads",
		         (long long)m->num_heads, (long long)m->num_kv_heads);
	if (m->attention == ATTENTION_GQA && !m->head_dim) {
		if (m->hidden_size % m->num_heads)
			error_at(s, "model.num_heads", "hidden_size (%lld) is not divisible by num_heads (%lld); set model.head_dim explicitly",
			         (long long)m->hidden_size, (long long)m->num_heads);
		else
			derive(s, "model.head_dim", &m->head_dim, (double)(m->hidden_size / m->num_heads), 1);
	}
	if (m->attention == ATTENTION_GQA && m->head_dim % 2)
		error_at(s, "model.head_dim", "head_dim (%lld) must be even: RoPE rotates pairs of halves", (long long)m->head_dim);
	if (m->attention == ATTENTION_MLA) {
		static const char *const mla[] = {"model.kv_lora_rank", "model.qk_nope_head_dim", "model.qk_rope_head_dim", "model.v_head_dim", NULL};
		for (int i = 0; mla[i]; i++)
			if (*(int64_t *)schema_ptr(s, schema_find(mla[i])) == 0)
				error_at(s, "model.attention", "attention: mla needs %s (> 0)", mla[i]);
		if (m->qk_rope_head_dim % 2)
			error_at(s, "model.qk_rope_head_dim", "qk_rope_head_dim (%lld) must be even: RoPE rotates pairs of halves", (long long)m->qk_rope_head_dim);
		if (m->qk_norm)
			error_at(s, "model.qk_norm", "qk_norm applies to grouped-query attention; MLA normalizes its compressed q and kv instead");
		if (!m->head_dim)
			derive(s, "model.head_dim", &m->head_dim, (double)(m->qk_nope_head_dim + m->qk_rope_head_dim), 1);
	}
	if (m->family == FAMILY_DEEPSEEK_V3 && m->attention != ATTENTION_MLA)
		error_at(s, "model.attention", "family deepseek_v3 uses multi-head latent attention: set attention: mla");

	int dense_layers = m->first_k_dense > 0 || m->mlp_only_layers.n > 0 || m->decoder_sparse_step > 1;
	if (m->first_k_dense > m->num_layers)
		error_at(s, "model.first_k_dense", "first_k_dense (%lld) exceeds num_layers (%lld)", (long long)m->first_k_dense, (long long)m->num_layers);
	for (int i = 0; i < m->mlp_only_layers.n; i++)
		if (m->mlp_only_layers.v[i] >= m->num_layers) {
			error_at(s, "model.mlp_only_layers", "mlp_only_layers names layer %lld, but the model has layers 0..%lld",
			         (long long)m->mlp_only_layers.v[i], (long long)m->num_layers - 1);
			break;
		}
	if (dense_layers && !m->dense_intermediate_size)
		error_at(s, "model.dense_intermediate_size", "the model has dense MLP layers (first_k_dense, mlp_only_layers or decoder_sparse_step), so dense_intermediate_size must be set");
	if (m->sliding_window && m->family != FAMILY_GPT_OSS)
		warning_at(s, "model.sliding_window", "sliding_window is applied on alternate layers, as GPT-OSS does; family %s does not use it",
		           schema_enum_name(family_names, m->family));
}

static void check_moe(struct spec *s)
{
	struct moe_spec *e = &s->moe;
	if (e->top_k > e->num_experts)
		error_at(s, blame(s, "moe.top_k", "moe.num_experts"), "top_k (%lld) exceeds num_experts (%lld): a token cannot pick more experts than exist",
		         (long long)e->top_k, (long long)e->num_experts);
	if (!e->shared_expert_intermediate_size && e->num_shared_experts)
		derive(s, "moe.shared_expert_intermediate_size", &e->shared_expert_intermediate_size, (double)e->moe_intermediate_size, 1);
	if (e->num_experts % e->n_group) {
		char d[256];
		divisors(e->num_experts, e->num_experts, d, sizeof d);
		error_at(s, blame(s, "moe.n_group", "moe.num_experts"), "n_group (%lld) does not divide num_experts (%lld); choose from %s",
		         (long long)e->n_group, (long long)e->num_experts, d);
	} else if (e->topk_group > e->n_group) {
		error_at(s, blame(s, "moe.topk_group", "moe.n_group"), "topk_group (%lld) exceeds n_group (%lld): a token cannot route into more groups than exist",
		         (long long)e->topk_group, (long long)e->n_group);
	} else if (e->n_group > 1 && e->top_k > e->topk_group * (e->num_experts / e->n_group)) {
		error_at(s, "moe.top_k", "top_k (%lld) is more than a token can reach: topk_group (%lld) groups of %lld experts each",
		         (long long)e->top_k, (long long)e->topk_group, (long long)(e->num_experts / e->n_group));
	}
	if (e->bias_update_rate > 0 && e->router != ROUTER_SIGMOID_TOPK)
		error_at(s, "moe.bias_update_rate", "bias_update_rate (aux-loss-free balancing) needs router: sigmoid_topk; softmax scores are not shifted by a per-expert bias");
	if (e->capacity_factor > 0 && e->drop_policy == DROP_NONE)
		error_at(s, blame(s, "moe.capacity_factor", "moe.drop_policy"),
		         "capacity_factor %g caps each expert's tokens, so some are dropped, but drop_policy is none: set drop_policy: low_prob or late_tokens, or capacity_factor: 0 for dropless",
		         e->capacity_factor);
	if (e->capacity_factor == 0 && e->drop_policy != DROP_NONE)
		error_at(s, "moe.drop_policy", "drop_policy %s has no effect without a capacity: set capacity_factor (e.g. 1.25) or drop_policy: none",
		         schema_enum_name(drop_names, e->drop_policy));
	if (e->capacity_factor > 0 && e->capacity_factor < 1)
		warning_at(s, "moe.capacity_factor", "capacity_factor %g is below 1: even perfectly balanced routing drops tokens", e->capacity_factor);
	if ((e->expert_bias || e->router_bias || e->activation == ACTIVATION_SWIGLU_CLAMPED) && s->model.family != FAMILY_GPT_OSS)
		error_at(s, e->expert_bias ? "moe.expert_bias" : e->router_bias ? "moe.router_bias" : "moe.activation",
		         "expert biases, router bias and the clamped SwiGLU are GPT-OSS's (family gpt_oss); %s models have none",
		         schema_enum_name(family_names, s->model.family));
	if (e->router_dtype != DTYPE_FP32 && e->router_dtype != DTYPE_BF16)
		error_at(s, "moe.router_dtype", "router_dtype must be fp32 or bf16; top-k over %s scores is not stable", schema_enum_name(dtype_names, e->router_dtype));
	if (e->norm_topk_prob && e->top_k == 1 && e->router == ROUTER_SOFTMAX_TOPK && user_set(s, "moe.norm_topk_prob"))
		warning_at(s, "moe.norm_topk_prob", "norm_topk_prob with top_k 1 makes every routing weight 1, so the router gets no gradient from the experts");
}

static void check_parallel(struct spec *s)
{
	struct parallel_spec *p = &s->parallel;
	struct model_spec *m = &s->model;
	int64_t world = p->nodes * p->gpus_per_node;
	char d[256];

	if (p->pp > 1)
		error_at(s, "parallel.pp", "pipeline parallelism (pp %lld) is not supported for MoE: all-to-all inside pipeline stages is where peers hang; use ep (and tp) to spread the weights instead",
		         (long long)p->pp);
	if (p->gpu == GPU_CUSTOM && p->gpu_memory_gib == 0)
		error_at(s, "parallel.gpu", "gpu: custom needs parallel.gpu_memory_gib");
	if (p->gpu_memory_gib == 0)
		derive(s, "parallel.gpu_memory_gib", &p->gpu_memory_gib, gpu_memory_gib(p->gpu), 0);

	if (m->num_heads % p->tp) {
		divisors(m->num_heads, world, d, sizeof d);
		error_at(s, blame(s, "parallel.tp", "model.num_heads"), "num_heads (%lld) is not divisible by tp (%lld): each tensor-parallel rank needs whole heads; choose tp from %s",
		         (long long)m->num_heads, (long long)p->tp, d);
	} else if (m->num_kv_heads >= p->tp ? m->num_kv_heads % p->tp : p->tp % m->num_kv_heads) {
		error_at(s, blame(s, "parallel.tp", "model.num_kv_heads"),
		         "num_kv_heads (%lld) and tp (%lld) do not fit: kv heads must split evenly over tp ranks (kv_heads %% tp == 0) or be replicated evenly (tp %% kv_heads == 0)",
		         (long long)m->num_kv_heads, (long long)p->tp);
	}
	if (m->dense_intermediate_size % p->tp)
		error_at(s, blame(s, "parallel.tp", "model.dense_intermediate_size"), "dense_intermediate_size (%lld) is not divisible by tp (%lld)",
		         (long long)m->dense_intermediate_size, (long long)p->tp);

	if (s->moe.num_experts % p->ep) {
		divisors(s->moe.num_experts, world, d, sizeof d);
		error_at(s, blame(s, "parallel.ep", "moe.num_experts"), "num_experts (%lld) is not divisible by ep (%lld): each expert-parallel rank must hold the same number of experts; choose ep from %s",
		         (long long)s->moe.num_experts, (long long)p->ep, d);
	}
	if (world % p->tp) {
		error_at(s, "parallel.tp", "tp (%lld) does not divide the world size %lld (nodes %lld x gpus_per_node %lld)",
		         (long long)p->tp, (long long)world, (long long)p->nodes, (long long)p->gpus_per_node);
	} else if (!p->dp) {
		derive(s, "parallel.dp", &p->dp, (double)(world / p->tp), 1);
	} else if (p->dp * p->tp != world) {
		error_at(s, blame(s, "parallel.dp", "parallel.tp"), "dp (%lld) x tp (%lld) = %lld ranks, but the world is %lld GPUs (nodes %lld x gpus_per_node %lld): attention weights fold the world as dp x tp",
		         (long long)p->dp, (long long)p->tp, (long long)(p->dp * p->tp), (long long)world, (long long)p->nodes, (long long)p->gpus_per_node);
	}
	if (world % p->ep) {
		divisors(world, s->moe.num_experts, d, sizeof d);
		error_at(s, "parallel.ep", "ep (%lld) does not divide the world size %lld: experts fold the world as ep x expert-data-parallel; choose ep from %s",
		         (long long)p->ep, (long long)world, d);
	}
	if (s->moe.capacity_factor > 0 && p->ep == 1 && user_set(s, "moe.capacity_factor"))
		warning_at(s, "moe.capacity_factor", "capacity_factor without expert parallelism only drops tokens: with ep 1 every expert is local and dropless costs no communication");

	struct cluster_spec *c = &s->cluster;
	if (!c->nvlink_domain)
		derive(s, "cluster.nvlink_domain", &c->nvlink_domain, (double)p->gpus_per_node, 1);
	if (c->intra_node_gbps == 0)
		derive(s, "cluster.intra_node_gbps", &c->intra_node_gbps, p->gpu == GPU_B200 ? 900 : p->gpu == GPU_A100 ? 300 : 450, 0);
	if (c->inter_node_gbps == 0)
		derive(s, "cluster.inter_node_gbps", &c->inter_node_gbps, 50, 0);
	if (c->nvlink_domain < p->gpus_per_node && p->gpus_per_node % c->nvlink_domain)
		error_at(s, "cluster.nvlink_domain", "nvlink_domain (%lld) must divide gpus_per_node (%lld) or span whole nodes",
		         (long long)c->nvlink_domain, (long long)p->gpus_per_node);
	else if (c->nvlink_domain > p->gpus_per_node && c->nvlink_domain % p->gpus_per_node)
		error_at(s, "cluster.nvlink_domain", "nvlink_domain (%lld) spans several nodes, so it must be a multiple of gpus_per_node (%lld)",
		         (long long)c->nvlink_domain, (long long)p->gpus_per_node);
}

/* Module names that get LoRA adapters, per family (the HF module names). */
static const char *const lora_modules_gqa[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "gate", NULL};
static const char *const lora_modules_mla[] = {"q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj", "gate", NULL};
static const char *const lora_modules_mixtral[] = {"q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3", "gate", NULL};
static const char *const lora_modules_gpt_oss[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj", "router", NULL};

const char *const *lora_modules_for(const struct spec *s)
{
	switch (s->model.family) {
	case FAMILY_MIXTRAL: return lora_modules_mixtral;
	case FAMILY_GPT_OSS: return lora_modules_gpt_oss;
	case FAMILY_DEEPSEEK_V3: return lora_modules_mla;
	default: return s->model.attention == ATTENTION_MLA ? lora_modules_mla : lora_modules_gqa;
	}
}

static void check_train(struct spec *s)
{
	struct train_spec *t = &s->train;
	if (origin_of(s, "train.train_router")->kind == ORIGIN_UNSET) {
		t->train_router = t->mode == TRAIN_FULL;
		*origin_of(s, "train.train_router") = (struct origin){ORIGIN_DERIVED, NULL, 0, 0};
	}
	if (t->precision != DTYPE_BF16 && t->precision != DTYPE_FP32 && t->precision != DTYPE_FP8)
		error_at(s, "train.precision", "precision must be bf16, fp32 or fp8, got %s", schema_enum_name(dtype_names, t->precision));
	if (t->mode == TRAIN_FULL) {
		if (t->base_dtype != DTYPE_BF16 && user_set(s, "train.base_dtype"))
			error_at(s, "train.base_dtype", "base_dtype %s applies to frozen base weights under LoRA; full training keeps bf16 weights with fp32 masters (set mode: lora)",
			         schema_enum_name(dtype_names, t->base_dtype));
		if (user_set(s, "train.lora.rank") || user_set(s, "train.lora.target_modules"))
			warning_at(s, user_set(s, "train.lora.rank") ? "train.lora.rank" : "train.lora.target_modules", "train.lora settings have no effect with mode: full");
	} else {
		if (t->base_dtype != DTYPE_BF16 && t->base_dtype != DTYPE_FP8 && t->base_dtype != DTYPE_NF4)
			error_at(s, "train.base_dtype", "base_dtype must be bf16, fp8 or nf4, got %s", schema_enum_name(dtype_names, t->base_dtype));
		if (t->lora.target_modules.n == 0)
			error_at(s, "train.lora.target_modules", "mode: lora needs at least one target module");
		const char *const *known = lora_modules_for(s);
		for (int i = 0; i < t->lora.target_modules.n; i++) {
			const char *name = t->lora.target_modules.v[i];
			int ok = !strcmp(name, "all-linear"); /* PEFT's name for every linear but the LM head */
			for (int j = 0; known[j] && !ok; j++)
				ok = !strcmp(known[j], name);
			if (ok)
				continue;
			char list[512];
			size_t used = 0;
			for (int j = 0; known[j] && used < sizeof list; j++)
				used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", known[j]);
			error_at(s, "train.lora.target_modules", "LoRA target '%s' is not a module of %s models; targets are %s (or all-linear)", name,
			         schema_enum_name(family_names, s->model.family), list);
		}
	}
	if (t->seq_len > s->model.max_seq_len)
		error_at(s, blame(s, "train.seq_len", "model.max_seq_len"), "seq_len (%lld) exceeds the model's max_seq_len (%lld)",
		         (long long)t->seq_len, (long long)s->model.max_seq_len);
	if (t->min_lr > t->lr)
		error_at(s, blame(s, "train.min_lr", "train.lr"), "min_lr (%g) is above lr (%g): the schedule decays from lr to min_lr", t->min_lr, t->lr);
	if (t->warmup_steps > t->steps)
		error_at(s, blame(s, "train.warmup_steps", "train.steps"), "warmup_steps (%lld) exceeds steps (%lld)", (long long)t->warmup_steps, (long long)t->steps);
}

static void check_data(struct spec *s)
{
	if (s->data.eod_token >= s->model.vocab_size)
		error_at(s, "data.eod_token", "eod_token (%lld) is outside the vocabulary (vocab_size %lld)",
		         (long long)s->data.eod_token, (long long)s->model.vocab_size);
}

/* FNV-1a over the resolved values (not their origins): same job, same hash. */
static uint64_t spec_hash(const struct spec *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *f = &schema_fields[i];
		const char *p = (const char *)s + f->offset;
		size_t n = 0;
		switch (f->type) {
		case FIELD_INT: n = sizeof(int64_t); break;
		case FIELD_FLOAT: n = sizeof(double); break;
		case FIELD_BOOL: n = sizeof(bool); break;
		case FIELD_ENUM: n = sizeof(int); break;
		case FIELD_STRING:
			p = *(char *const *)p;
			n = p ? strlen(p) + 1 : 0;
			break;
		case FIELD_INT_LIST:
			n = (size_t)((const struct int_list *)p)->n * sizeof(int64_t);
			p = (const char *)((const struct int_list *)p)->v;
			break;
		case FIELD_STR_LIST: {
			const struct str_list *l = (const struct str_list *)p;
			for (int j = 0; j < l->n; j++)
				for (const char *c = l->v[j]; ; c++) {
					h = (h ^ (unsigned char)*c) * 1099511628211ULL;
					if (!*c)
						break;
				}
			n = 0;
			break;
		}
		}
		for (const char *c = f->path; *c; c++)
			h = (h ^ (unsigned char)*c) * 1099511628211ULL;
		for (size_t j = 0; j < n; j++)
			h = (h ^ (unsigned char)p[j]) * 1099511628211ULL;
	}
	return h;
}

int spec_check(struct spec *s)
{
	int before = diag_error_count();
	if (check_required(s))
		return diag_error_count() - before; /* the other rules divide by these */
	check_model(s);
	check_moe(s);
	check_parallel(s);
	check_train(s);
	check_data(s);
	s->hash = spec_hash(s);
	return diag_error_count() - before;
}

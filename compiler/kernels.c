/* kernels.c - pass 5a: the kernel instances of one training step. See kernels.h.
 *
 * Requires / establishes: see kernels.h. The step, for the GQA families (Qwen3-MoE,
 * Mixtral) this kernel set covers:
 *   forward   embedding, per layer {rmsnorm, [q/k rmsnorm], rope, attention, add, rmsnorm,
 *             router, count/scan/permute, grouped gate_up (fused SwiGLU), grouped down,
 *             combine, add | dense MLP as grouped GEMMs with one expert}, final rmsnorm,
 *             fused LM-head + cross-entropy in chunks
 *   backward  the same in reverse; weight-gradient kernels only for trained weights;
 *             under selective recompute SwiGLU from the saved gate/up (swiglu_fwd)
 *   optimizer grad norm, clip scale, AdamW, fp32 master -> bf16 weights
 * Dense projections (q/k/v/o, router logits, LM head) are cuBLASLt GEMMs, not instances.
 */
#include "kernels.h"

#include <dirent.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "files.h"
#include "parse.h"
#include "schema.h"

const char *kernels_default_dir(void)
{
	const char *env = getenv("MOEC_KERNELS_DIR");
	return env && *env ? env : MOEC_SOURCE_DIR "/kernels";
}

/* ---- the spec-wide dictionary ---- */

static void kernels_dict_set(struct kernel_dict *d, const char *name, const char *value)
{
	for (int i = 0; i < d->n; i++)
		if (!strcmp(d->v[i].name, name)) {
			snprintf(d->v[i].value, sizeof d->v[i].value, "%s", value);
			return;
		}
	if (d->n == KERNEL_MAX_CONSTS)
		return;
	snprintf(d->v[d->n].name, sizeof d->v[d->n].name, "%s", name);
	snprintf(d->v[d->n].value, sizeof d->v[d->n].value, "%s", value);
	d->n++;
}

static void kernels_dict_int(struct kernel_dict *d, const char *name, int64_t v)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lld", (long long)v);
	kernels_dict_set(d, name, buf);
}

const char *kernels_dict_get(const struct kernel_dict *d, const char *name)
{
	for (int i = 0; i < d->n; i++)
		if (!strcmp(d->v[i].name, name))
			return d->v[i].value;
	return NULL;
}

void kernels_float_literal(double v, char *buf, size_t n)
{
	snprintf(buf, n, "%.9g", v);
	if (!strpbrk(buf, ".eEn"))
		strncat(buf, ".0", n - strlen(buf) - 1);
	strncat(buf, "f", n - strlen(buf) - 1);
}

static void kernels_dict_float(struct kernel_dict *d, const char *name, double v)
{
	char buf[40];
	kernels_float_literal(v, buf, sizeof buf);
	kernels_dict_set(d, name, buf);
}

/* Rows each expert takes from one rank under a capacity factor c: ceil(c * Tm * K / E)
 * (Tm = tokens the rank routes), applied where the rank routes, before the all-to-all, as
 * Megatron does; an expert then receives at most ep times that, plan.c's bound.
 * 0 = dropless. */
static int64_t kernels_capacity(const struct spec *s, const struct ir *ir, const struct plan *p)
{
	int64_t e = ir->dims.experts;
	if (s->moe.capacity_factor <= 0 || e <= 0)
		return 0;
	double c = ceil(s->moe.capacity_factor * (double)p->memory.moe_tokens * (double)ir->dims.top_k / (double)e);
	return c < 1e15 ? (int64_t)c : INT64_MAX;
}

void kernels_fill_dict(const struct spec *s, const struct ir *ir, const struct plan *p, struct kernel_dict *d)
{
	const struct ir_dims *m = &ir->dims;
	int64_t tp = p->layout.tp > 0 ? p->layout.tp : 1, ep = p->layout.ep > 0 ? p->layout.ep : 1;
	memset(d, 0, sizeof *d);
	kernels_dict_int(d, "ACT_BF16", s->train.precision == DTYPE_BF16);
	kernels_dict_int(d, "H", m->hidden);
	kernels_dict_int(d, "V", m->vocab);
	kernels_dict_int(d, "NH", m->heads / tp);
	kernels_dict_int(d, "NKV", m->kv_heads >= tp ? m->kv_heads / tp : 1);
	kernels_dict_int(d, "HD", m->head_dim);
	kernels_dict_int(d, "E", m->experts);
	kernels_dict_int(d, "E_LOCAL", m->experts / ep);
	kernels_dict_int(d, "K", m->top_k);
	kernels_dict_int(d, "I", m->expert_inter);
	if (m->dense_inter > 0)
		kernels_dict_int(d, "D", m->dense_inter / tp);
	kernels_dict_int(d, "SEQ", s->train.seq_len);
	kernels_dict_float(d, "EPS", s->model.norm_eps);
	kernels_dict_float(d, "ROPE_THETA", s->model.rope_theta);
	kernels_dict_int(d, "ROUTER_SIGMOID", s->moe.router == ROUTER_SIGMOID_TOPK);
	kernels_dict_int(d, "NORM_TOPK", s->moe.norm_topk_prob);
	kernels_dict_float(d, "ROUTED_SCALE", s->moe.routed_scaling_factor);
	int grouped = s->moe.n_group > 1;
	kernels_dict_int(d, "N_GROUP", grouped ? s->moe.n_group : 1);
	kernels_dict_int(d, "TOPK_GROUP", grouped ? s->moe.topk_group : 1);
	kernels_dict_int(d, "CAPACITY", kernels_capacity(s, ir, p));
	kernels_dict_int(d, "DROP_POLICY", s->moe.drop_policy);
}

/* ---- what this kernel set cannot build yet ---- */

static void kernels_unsupported(const struct spec *s, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void kernels_unsupported(const struct spec *s, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	const struct field *f = schema_find(path);
	const struct origin *o = f ? &s->origin[schema_index(f)] : NULL;
	if (o && o->src) {
		diag_at(DIAG_ERROR, o->src, o->line, o->col, "not supported yet: %s", msg);
		return;
	}
	char section[32];
	snprintf(section, sizeof section, "%.*s", (int)strcspn(path, "."), path);
	struct origin sec = spec_section_origin(s, section);
	if (sec.src)
		diag_at(DIAG_ERROR, sec.src, sec.line, sec.col, "not supported yet: %s (%s)", msg, path);
	else
		diag_at(DIAG_ERROR, s->main_source, 0, 0, "not supported yet: %s (%s)", msg, path);
}

static const char kernels_still_works[] = "`moec check` and `moec plan` accept it; `moec build` has no kernels for it yet";

/* LoRA on the routed experts' projections needs grouped low-rank GEMMs this kernel set
 * does not have yet; the base step builds, so it is a warning, not an error. */
static void kernels_check_expert_lora(const struct spec *s, const struct ir *ir)
{
	for (int i = 0; i < ir->ntensors; i++) {
		const struct ir_tensor *t = &ir->tensors[i];
		if (t->role == IR_ROLE_LORA_A && t->base >= 0 && t->base < ir->ntensors && ir->tensors[t->base].stacked) {
			const struct field *f = schema_find("train.lora.target_modules");
			const struct origin *o = f ? &s->origin[schema_index(f)] : NULL;
			diag_at(DIAG_WARNING, o ? o->src : NULL, o ? o->line : 0, o ? o->col : 0,
				"LoRA adapters on the routed experts (%s) have no kernels yet: the kernels built cover the frozen "
				"base model's step, not those adapters' forward and backward",
				ir->tensors[t->base].name);
			return;
		}
	}
}

static void kernels_check_supported(const struct spec *s)
{
	const struct model_spec *m = &s->model;
	const struct moe_spec *e = &s->moe;
	if (m->family == FAMILY_GPT_OSS) {
		kernels_unsupported(s, "model.family", "GPT-OSS (attention sinks, sliding-window layers, q/k/v/o and expert biases, clamped SwiGLU); %s", kernels_still_works);
		return;
	}
	if (m->attention == ATTENTION_MLA) {
		kernels_unsupported(s, "model.attention", "multi-head latent attention (mla, DeepSeek-V3); %s", kernels_still_works);
		return;
	}
	if (m->attention_bias)
		kernels_unsupported(s, "model.attention_bias", "attention biases; %s", kernels_still_works);
	if (m->attention_sinks)
		kernels_unsupported(s, "model.attention_sinks", "attention sinks; %s", kernels_still_works);
	if (m->sliding_window > 0)
		kernels_unsupported(s, "model.sliding_window", "sliding-window attention; %s", kernels_still_works);
	if (e->activation != ACTIVATION_SWIGLU)
		kernels_unsupported(s, "moe.activation", "activation %s; %s", schema_enum_name(activation_names, e->activation), kernels_still_works);
	if (e->expert_bias)
		kernels_unsupported(s, "moe.expert_bias", "expert biases; %s", kernels_still_works);
	if (e->router_bias)
		kernels_unsupported(s, "moe.router_bias", "a router bias; %s", kernels_still_works);
	if (e->shared_expert_gate)
		kernels_unsupported(s, "moe.shared_expert_gate", "a gated shared expert; %s", kernels_still_works);
	if (s->train.precision != DTYPE_BF16 && s->train.precision != DTYPE_FP32)
		kernels_unsupported(s, "train.precision", "precision %s (bf16 and fp32 are); %s", schema_enum_name(dtype_names, s->train.precision), kernels_still_works);
	if (s->train.mode == TRAIN_LORA && s->train.base_dtype != DTYPE_BF16 && s->train.base_dtype != s->train.precision)
		kernels_unsupported(s, "train.base_dtype", "a %s frozen base (bf16 is); %s", schema_enum_name(dtype_names, s->train.base_dtype), kernels_still_works);
}

/* ---- the step's wish list ---- */

/* the step's own values (at most 2 here, and 2 tile sizes from kernels_tiles) plus the user's
 * --kernel-const ones */
#define KERNEL_MAX_OVERRIDES 12

struct kernel_want {
	const char *tmpl;
	const char *why;
	int nover;
	struct kernel_const over[KERNEL_MAX_OVERRIDES];
};

struct kernel_wants {
	struct kernel_want v[96];
	int n;
};

/* want(w, template, why, NAME, value, NAME, value, ..., NULL) */
static void kernels_want(struct kernel_wants *w, const char *tmpl, const char *why, ...)
{
	if (w->n == (int)(sizeof w->v / sizeof w->v[0]))
		return;
	struct kernel_want *k = &w->v[w->n++];
	memset(k, 0, sizeof *k);
	k->tmpl = tmpl;
	k->why = why;
	va_list ap;
	va_start(ap, why);
	for (const char *name; (name = va_arg(ap, const char *)) && k->nover < KERNEL_MAX_OVERRIDES;) {
		int64_t v = va_arg(ap, int64_t);
		struct kernel_const *c = &k->over[k->nover++];
		snprintf(c->name, sizeof c->name, "%s", name);
		snprintf(c->value, sizeof c->value, "%lld", (long long)v);
	}
	va_end(ap);
}

static bool kernels_role_trained(const struct ir *ir, enum ir_role role)
{
	for (int i = 0; i < ir->ntensors; i++)
		if (ir->tensors[i].role == role && ir_tensor_trainable(&ir->tensors[i]))
			return true;
	return false;
}

/* A dense MLP (dense layers, shared experts) runs as the grouped GEMMs with one expert. */
static void kernels_want_mlp(struct kernel_wants *w, int64_t width, bool bwd, bool trained, const char *why)
{
	if (!bwd) {
		kernels_want(w, "moe_gate_up_fwd", why, "E_LOCAL", (int64_t)1, "I", width, NULL);
		kernels_want(w, "moe_down_fwd", why, "E_LOCAL", (int64_t)1, "I", width, NULL);
		return;
	}
	kernels_want(w, "moe_down_bwd_data", why, "E_LOCAL", (int64_t)1, "I", width, NULL);
	kernels_want(w, "moe_gate_up_bwd_data", why, "E_LOCAL", (int64_t)1, "I", width, NULL);
	if (trained) {
		kernels_want(w, "moe_down_bwd_weight", why, "E_LOCAL", (int64_t)1, "I", width, NULL);
		kernels_want(w, "moe_gate_up_bwd_weight", why, "E_LOCAL", (int64_t)1, "I", width, NULL);
	}
}

static void kernels_want_step(const struct spec *s, const struct ir *ir, const struct plan *p, struct kernel_wants *w)
{
	const struct ir_dims *d = &ir->dims;
	int64_t tp = p->layout.tp > 0 ? p->layout.tp : 1;
	bool moe = ir->n_moe_layers > 0, dense = ir->n_dense_layers > 0 && d->dense_inter > 0;
	bool shared = moe && d->shared_inter > 0, qk = s->model.qk_norm;
	bool experts_trained = kernels_role_trained(ir, IR_ROLE_EXPERT_GATE) || kernels_role_trained(ir, IR_ROLE_EXPERT_DOWN);
	bool dense_trained = kernels_role_trained(ir, IR_ROLE_MLP_GATE) || kernels_role_trained(ir, IR_ROLE_MLP_DOWN);
	bool shared_trained = kernels_role_trained(ir, IR_ROLE_SHARED_GATE) || kernels_role_trained(ir, IR_ROLE_SHARED_DOWN);
	bool bf16 = s->train.precision == DTYPE_BF16;

	/* forward */
	kernels_want(w, "embedding_fwd", "token embedding", NULL);
	kernels_want(w, "rmsnorm_fwd", "input, post-attention and final norms", "DIM", d->hidden, NULL);
	if (qk)
		kernels_want(w, "rmsnorm_fwd", "q/k norm per head", "DIM", d->head_dim, NULL);
	kernels_want(w, "rope_fwd", "rotary position embedding of q and k", NULL);
	kernels_want(w, "attention_fwd", "causal GQA flash attention", NULL);
	kernels_want(w, "add", "residual", NULL);
	if (moe) {
		kernels_want(w, "router_fwd", "router softmax/sigmoid top-k and balance statistics", NULL);
		kernels_want(w, "moe_count", "tokens per expert", NULL);
		kernels_want(w, "moe_scan", "expert offsets", NULL);
		kernels_want(w, "moe_route", "row of each (token, expert) pair, capacity drops", NULL);
		if (s->moe.capacity_factor > 0 && s->moe.drop_policy == DROP_LOW_PROB)
			kernels_want(w, "moe_capacity", "low-probability capacity drops", NULL);
		kernels_want(w, "moe_permute", "rows grouped by expert", NULL);
		if (p->layout.ep > 1) /* the GPU's regroup of received rows; the CPU's is memcpy (runtime/ep.c) */
			kernels_want(w, "ep_regroup", "expert-parallel rows between arrival and expert-major order", NULL);
		kernels_want(w, "moe_gate_up_fwd", "expert gate/up GEMM + SwiGLU", NULL);
		kernels_want(w, "moe_down_fwd", "expert down GEMM", NULL);
		kernels_want(w, "moe_combine", "weighted sum of the k expert outputs", NULL);
	}
	if (shared)
		kernels_want_mlp(w, d->shared_inter / tp, false, false, "shared experts");
	if (dense)
		kernels_want_mlp(w, d->dense_inter / tp, false, false, "dense MLP layers");
	kernels_want(w, "ce_chunk_fwd", "LM head + cross-entropy, one chunk of tokens", NULL);
	kernels_want(w, "ce_finish", "loss over all chunks", NULL);

	/* backward */
	kernels_want(w, "ce_chunk_bwd", "cross-entropy backward", NULL);
	kernels_want(w, "rmsnorm_bwd", "input, post-attention and final norms", "DIM", d->hidden, NULL);
	if (moe) {
		kernels_want(w, "moe_combine_bwd", "combine backward", NULL);
		kernels_want(w, "moe_down_bwd_data", "expert down GEMM, input gradient", NULL);
		kernels_want(w, "moe_gate_up_bwd_data", "expert gate/up + SwiGLU, input gradient", NULL);
		if (experts_trained) {
			kernels_want(w, "moe_down_bwd_weight", "expert down GEMM, weight gradient", NULL);
			kernels_want(w, "moe_gate_up_bwd_weight", "expert gate/up GEMM, weight gradient", NULL);
		}
		kernels_want(w, "moe_permute_bwd", "unpermute gradients", NULL);
		kernels_want(w, "router_bwd", "router backward (top-k weights, aux and z losses)", NULL);
	}
	if (shared)
		kernels_want_mlp(w, d->shared_inter / tp, true, shared_trained, "shared experts");
	if (dense)
		kernels_want_mlp(w, d->dense_inter / tp, true, dense_trained, "dense MLP layers");
	/* selective recompute keeps gate/up and rebuilds only the SwiGLU output (step_recompute) */
	if (s->train.recompute == RECOMPUTE_SELECTIVE) {
		if (moe)
			kernels_want(w, "swiglu_fwd", "selective recompute: expert SwiGLU from the saved gate/up", NULL);
		if (dense)
			kernels_want(w, "swiglu_fwd", "selective recompute: dense MLP SwiGLU from the saved gate/up", "E_LOCAL",
				     (int64_t)1, "I", d->dense_inter / tp, NULL);
	}
	kernels_want(w, "attention_bwd_pre", "attention backward: rowwise dO . O", NULL);
	kernels_want(w, "attention_bwd", "causal GQA flash attention backward", NULL);
	kernels_want(w, "rope_bwd", "rotary embedding backward", NULL);
	if (qk)
		kernels_want(w, "rmsnorm_bwd", "q/k norm per head", "DIM", d->head_dim, NULL);
	if (kernels_role_trained(ir, IR_ROLE_EMBED))
		kernels_want(w, "embedding_bwd", "embedding gradient", NULL);

	/* optimizer */
	/* The gradient norm is computed every step: it is logged, and NaN/Inf checks read it. */
	kernels_want(w, "grad_sumsq", "gradient norm", NULL);
	if (s->train.max_grad_norm > 0)
		kernels_want(w, "scale", "gradient clipping", NULL);
	kernels_want(w, "adamw", "AdamW on fp32 masters", NULL);
	if (bf16) {
		kernels_want(w, "cast_f32_bf16", "fp32 masters -> bf16 weights", NULL);
		kernels_want(w, "cast_bf16_f32", "bf16 gradients -> fp32", NULL);
	}
}

/* ---- templates ---- */

/* One parsed template or twin: its constants and launch lines. */
struct kernel_file {
	char tmpl[KERNEL_TEMPLATE_MAX];
	const struct source *src;
	int nconst;
	char consts[KERNEL_MAX_CONSTS][KERNEL_CONST_NAME_MAX];
	int const_col[KERNEL_MAX_CONSTS]; /* column of each name on the constants line */
	int const_line;                   /* 0 when the file has no constants line */
	char launch[256];
};

/* Text after "moec: <what>" on a comment line: "// moec: ...", a block comment's opening
 * line, or a " * moec: ..." line inside one. NULL when the line is none of these. */
static const char *kernels_directive(const char *line, const char *what)
{
	const char *p = line + strspn(line, " \t");
	if (!strncmp(p, "//", 2) || !strncmp(p, "/*", 2))
		p += 2;
	else if (*p == '*')
		p++;
	else
		return NULL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncmp(p, "moec:", 5))
		return NULL;
	p += 5;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strlen(what);
	if (strncmp(p, what, n) || (p[n] != ' ' && p[n] != '\t' && p[n] != '\n' && p[n]))
		return NULL;
	return p + n;
}

/* Parse the directive lines; errors name the file and line (when report). */
static int kernels_parse_file(struct kernel_file *f, bool report)
{
	int line = 1, errors = 0;
	for (const char *p = f->src->text; *p; line++) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char buf[1024];
		snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf - 1 ? len : sizeof buf - 1), p);
		const char *rest;
		if ((rest = kernels_directive(buf, "constants")) && !f->const_line) {
			f->const_line = line;
			for (const char *q = rest;;) {
				q += strspn(q, " \t\r");
				size_t n = strcspn(q, " \t\r");
				if (!n || !strncmp(q, "*/", 2) || (n == 4 && !strncmp(q, "none", 4) && !f->nconst))
					break; /* end of the comment, or "none": a template without constants */
				if (strspn(q, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != n || (*q >= '0' && *q <= '9')) {
					if (report)
						diag_at(DIAG_ERROR, f->src, line, (int)(q - buf) + 1, "'%.*s' is not a constant name", (int)n, q);
					errors++;
					break;
				}
				if (f->nconst == KERNEL_MAX_CONSTS || n >= KERNEL_CONST_NAME_MAX) {
					if (report)
						diag_at(DIAG_ERROR, f->src, line, (int)(q - buf) + 1, "too many or too long constant names (at most %d, %d characters)",
						KERNEL_MAX_CONSTS, KERNEL_CONST_NAME_MAX - 1);
					errors++;
					break;
				}
				f->const_col[f->nconst] = (int)(q - buf) + 1;
				snprintf(f->consts[f->nconst++], KERNEL_CONST_NAME_MAX, "%.*s", (int)n, q);
				q += n;
			}
		} else if ((rest = kernels_directive(buf, "launch")) && !f->launch[0]) {
			rest += strspn(rest, " \t");
			snprintf(f->launch, sizeof f->launch, "%.*s", (int)strcspn(rest, "\r"), rest);
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	if (!f->const_line) {
		if (report)
			diag_at(DIAG_ERROR, f->src, 1, 1, "no 'moec: constants ...' line: every template and twin lists its constants (kernels/README.md)");
		errors++;
	}
	return errors;
}

/* Whether text defines NAME under "#ifndef NAME" or "#if !defined(NAME)". */
/* The "#ifndef NAME" (or "#if !defined(NAME)") line of a template default in text, or NULL. */
static const char *kernels_text_default(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *q = p + strspn(p, " \t");
		if (*q++ != '#')
			continue;
		q += strspn(q, " \t");
		if (!strncmp(q, "ifndef", 6))
			q += 6;
		else if (!strncmp(q, "if", 2) && (q += 2, q += strspn(q, " \t"), !strncmp(q, "!defined", 8)))
			q += 8;
		else
			continue;
		q += strspn(q, " \t(");
		if (!strncmp(q, name, n) && !(q[n] == '_' || (q[n] >= 'A' && q[n] <= 'Z') || (q[n] >= 'a' && q[n] <= 'z') || (q[n] >= '0' && q[n] <= '9')))
			return p;
	}
	return NULL;
}

/* The value of the "#define NAME value" that follows a default's #ifndef line ("" if none). */
static void kernels_default_value_at(const char *p, const char *name, char *value, size_t vn)
{
	size_t n = strlen(name);
	value[0] = 0;
	for (p = strchr(p, '\n'); p; p = strchr(p + 1, '\n')) {
		const char *q = p + 1 + strspn(p + 1, " \t");
		if (*q++ != '#')
			continue;
		q += strspn(q, " \t");
		if (!strncmp(q, "endif", 5))
			return;
		if (strncmp(q, "define", 6))
			continue;
		q += 6;
		q += strspn(q, " \t");
		if (strncmp(q, name, n) || (q[n] != ' ' && q[n] != '\t'))
			continue;
		q += n;
		q += strspn(q, " \t");
		size_t len = strcspn(q, "\n");
		while (len && (q[len - 1] == ' ' || q[len - 1] == '\t' || q[len - 1] == '\r'))
			len--;
		snprintf(value, vn, "%.*s", (int)len, q);
		return;
	}
}

/* Whether text, or a header it includes from dir ("name.cuh", nested), gives NAME a
 * default; its value text into value when value is not NULL. */
static bool kernels_find_default_in(const char *text, const char *dir, const char *name, int depth, char *value,
				    size_t vn)
{
	const char *at = kernels_text_default(text, name);
	if (at) {
		if (value)
			kernels_default_value_at(at, name, value, vn);
		return true;
	}
	for (const char *p = text; p && depth < 8; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *q = p + strspn(p, " \t");
		if (*q++ != '#')
			continue;
		q += strspn(q, " \t");
		if (strncmp(q, "include", 7))
			continue;
		q += 7;
		q += strspn(q, " \t");
		size_t len = *q == '"' ? strcspn(q + 1, "\"\n") : 0;
		if (!len || q[1 + len] != '"')
			continue;
		char path[PATH_MAX + 256], *inc;
		size_t n;
		snprintf(path, sizeof path, "%s/%.*s", dir, (int)len, q + 1);
		if (file_read_whole(path, &inc, &n))
			continue;
		bool found = kernels_find_default_in(inc, dir, name, depth + 1, value, vn);
		free(inc);
		if (found)
			return true;
	}
	return false;
}

static bool kernels_find_default(const struct source *src, const char *name, char *value, size_t vn)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(src->name, '/');
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - src->name) : 1, slash ? src->name : ".");
	return kernels_find_default_in(src->text, dir, name, 0, value, vn);
}

static bool kernels_has_default(const struct source *src, const char *name)
{
	return kernels_find_default(src, name, NULL, 0);
}

bool kernels_default_value(const struct kernel_inst *k, const char *name, char *value, size_t n)
{
	return k->cu && kernels_find_default(k->cu, name, value, n) && value[0];
}

/* Load kernels/<tmpl>.cu or kernels/cpu/<tmpl>.c; NULL after reporting why not. */
static struct kernel_file *kernels_load_file(const char *dir, const char *tmpl, bool twin, const char *why)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, twin ? "%s/cpu/%s.c" : "%s/%s.cu", dir, tmpl);
	const struct source *src = source_load(path);
	if (!src) {
		if (twin)
			diag_at(DIAG_ERROR, NULL, 0, 0, "template %s has no CPU twin %s (%s): every kernel needs one (kernels/README.md)",
				tmpl, path, source_load_error());
		else
			diag_at(DIAG_ERROR, NULL, 0, 0, "the step needs kernel template %s (%s) but %s cannot be read: %s",
				tmpl, why, path, source_load_error());
		return NULL;
	}
	struct kernel_file *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	snprintf(f->tmpl, sizeof f->tmpl, "%s", tmpl);
	f->src = src;
	if (kernels_parse_file(f, true)) {
		free(f);
		return NULL;
	}
	return f;
}

/* ---- instances ---- */

/* Constants that name an instance, in this order, with their short spelling. */
static const struct {
	const char *name, *part;
} kernels_name_parts[] = {
	{"E", "e"}, {"E_LOCAL", "e"}, {"K", "k"}, {"NH", "nh"}, {"NKV", "nkv"}, {"HD", "hd"},
	{"H", "h"}, {"I", "i"}, {"D", "d"}, {"V", "v"}, {"DIM", "dim"},
};

/* Short spellings of tile constants when the emitter sets them; others are lowercased. */
static const struct {
	const char *name, *part;
} kernels_tile_parts[] = {
	{"BLOCK_M", "bm"}, {"BLOCK_N", "bn"}, {"TILE_M", "tm"}, {"TILE_N", "tn"}, {"TILE_K", "tk"}, {"STAGES", "st"},
};

/* Spec-wide constants that do not name an instance (a float, a flag, a policy). */
static const char *const kernels_unnamed[] = {
	"ACT_BF16", "SEQ", "EPS", "ROPE_THETA", "ROUTER_SIGMOID", "NORM_TOPK", "ROUTED_SCALE",
	"N_GROUP", "TOPK_GROUP", "CAPACITY", "DROP_POLICY",
};

static void kernels_append(char *buf, size_t n, const char *part, const char *value)
{
	size_t len = strlen(buf);
	if (len < n)
		snprintf(buf + len, n - len, "_%s%s", part, value);
}

static void kernels_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

void kernels_name_instance(const char *tmpl, const struct kernel_dict *c, char *buf, size_t n)
{
	snprintf(buf, n, "%s", tmpl);
	const char *bf = kernels_dict_get(c, "ACT_BF16");
	if (bf)
		kernels_append(buf, n, strcmp(bf, "0") ? "bf16" : "f32", "");
	bool both_e = kernels_dict_get(c, "E") && kernels_dict_get(c, "E_LOCAL");
	for (size_t i = 0; i < sizeof kernels_name_parts / sizeof kernels_name_parts[0]; i++) {
		const char *v = kernels_dict_get(c, kernels_name_parts[i].name);
		if (v)
			kernels_append(buf, n, both_e && !strcmp(kernels_name_parts[i].name, "E_LOCAL") ? "el" : kernels_name_parts[i].part, v);
	}
	/* template-specific constants (tile sizes) the emitter set: lowercased name + value */
	for (int i = 0; i < c->n; i++) {
		const char *name = c->v[i].name;
		bool known = false;
		for (size_t j = 0; j < sizeof kernels_name_parts / sizeof kernels_name_parts[0] && !known; j++)
			known = !strcmp(name, kernels_name_parts[j].name);
		for (size_t j = 0; j < sizeof kernels_unnamed / sizeof kernels_unnamed[0] && !known; j++)
			known = !strcmp(name, kernels_unnamed[j]);
		if (!known) {
			char part[KERNEL_CONST_NAME_MAX];
			snprintf(part, sizeof part, "%s", name);
			kernels_lower(part);
			for (size_t j = 0; j < sizeof kernels_tile_parts / sizeof kernels_tile_parts[0]; j++)
				if (!strcmp(name, kernels_tile_parts[j].name))
					snprintf(part, sizeof part, "%s", kernels_tile_parts[j].part);
			kernels_append(buf, n, part, c->v[i].value);
		}
	}
}

static const char *kernels_want_value(const struct kernel_want *w, const struct kernel_dict *d, const char *name)
{
	for (int i = 0; i < w->nover; i++)
		if (!strcmp(w->over[i].name, name))
			return w->over[i].value;
	return kernels_dict_get(d, name);
}

/* The prelude of one file: a value for each constant it lists, or its own default. A
 * twin may also leave unset what the CUDA template (cu, NULL for the template itself)
 * defaults: tile sizes mean nothing on the CPU. */
static int kernels_fill_prelude(const struct kernel_file *f, const struct kernel_file *cu, const struct kernel_want *w,
				const struct kernel_dict *d, struct kernel_dict *out)
{
	int errors = 0;
	memset(out, 0, sizeof *out);
	for (int i = 0; i < f->nconst; i++) {
		const char *v = kernels_want_value(w, d, f->consts[i]);
		if (v) {
			kernels_dict_set(out, f->consts[i], v);
			continue;
		}
		if (kernels_has_default(f->src, f->consts[i]) || (cu && kernels_has_default(cu->src, f->consts[i])))
			continue;
		diag_at(DIAG_ERROR, f->src, f->const_line, f->const_col[i],
			"template %s needs constant %s, which has no value: moec sets the names in kernels/README.md "
			"(and DIM per instance); give %s a default in the template with #ifndef %s, or a value in compiler/kernels.c",
			f->tmpl, f->consts[i], f->consts[i], f->consts[i]);
		errors++;
	}
	return errors;
}

/* Loaded templates by name, so each file is read, parsed and reported once. */
#define KERNEL_MAX_TEMPLATES 128

struct kernel_files {
	char names[KERNEL_MAX_TEMPLATES][KERNEL_TEMPLATE_MAX];
	struct kernel_file *cu[KERNEL_MAX_TEMPLATES], *twin[KERNEL_MAX_TEMPLATES];
	int n;
};

/* Index of the loaded template, or -1 when it (or its twin) is missing or malformed. */
static int kernels_file_index(struct kernel_files *fs, const char *dir, const char *tmpl, const char *why)
{
	for (int i = 0; i < fs->n; i++)
		if (!strcmp(fs->names[i], tmpl))
			return fs->cu[i] && fs->twin[i] ? i : -1;
	if (fs->n == KERNEL_MAX_TEMPLATES)
		return -1;
	int i = fs->n++;
	snprintf(fs->names[i], sizeof fs->names[i], "%s", tmpl);
	fs->cu[i] = kernels_load_file(dir, tmpl, false, why);
	fs->twin[i] = fs->cu[i] ? kernels_load_file(dir, tmpl, true, why) : NULL;
	return fs->cu[i] && fs->twin[i] ? i : -1;
}

static void kernels_files_free(struct kernel_files *fs)
{
	for (int i = 0; i < fs->n; i++) {
		free(fs->cu[i]);
		free(fs->twin[i]);
	}
}

static bool kernels_dict_equal(const struct kernel_dict *a, const struct kernel_dict *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->v[i].name, b->v[i].name) || strcmp(a->v[i].value, b->v[i].value))
			return false;
	return true;
}

int kernels_find(const struct kernel_set *ks, const char *name)
{
	for (int i = 0; i < ks->n; i++)
		if (!strcmp(ks->v[i].name, name))
			return i;
	return -1;
}

/* Tile sizes for templates that take them from the emitter rather than from an #ifndef
 * default of their own. Each choice fits the template's static shared memory limit and,
 * checked with NVRTC 13.0 for sm_80 and sm_90a, does not spill: attention_fwd bf16 with
 * BLOCK_M 64 x BLOCK_N 64 (its header's suggestion for HD <= 64) spills at HD 32 on sm_90a,
 * 128 x 64 does not; attention_bwd bf16 at HD 128 spills with 64 x 64 (255 registers),
 * 64 x 32 does not (246). */
static void kernels_tiles(const struct kernel_want *w, const struct kernel_dict *d, struct kernel_want *out)
{
	*out = *w;
	const char *bf = kernels_dict_get(d, "ACT_BF16"), *hd = kernels_dict_get(d, "HD");
	bool bf16 = bf && strcmp(bf, "0");
	long head_dim = hd ? atol(hd) : 0;
	int64_t bm = 0, bn = 0;
	if (!strcmp(w->tmpl, "attention_fwd")) {
		bm = bf16 ? 128 : (head_dim <= 64 ? 64 : 16);
		bn = bf16 ? 64 : 32;
	} else if (!strcmp(w->tmpl, "attention_bwd")) {
		bm = bf16 ? 64 : 32;
		bn = bf16 ? (head_dim <= 64 ? 64 : 32) : 32;
	}
	if (bm && out->nover + 2 <= KERNEL_MAX_OVERRIDES) {
		snprintf(out->over[out->nover].name, KERNEL_CONST_NAME_MAX, "BLOCK_M");
		snprintf(out->over[out->nover++].value, KERNEL_CONST_VALUE_MAX, "%lld", (long long)bm);
		snprintf(out->over[out->nover].name, KERNEL_CONST_NAME_MAX, "BLOCK_N");
		snprintf(out->over[out->nover++].value, KERNEL_CONST_VALUE_MAX, "%lld", (long long)bn);
	}
}

/* ---- --kernel-const ---- */

int kernels_parse_user_const(const char *arg, struct kernel_user_consts *uc, char *err, size_t errlen)
{
	const char *colon = strchr(arg, ':'), *eq = colon ? strchr(colon, '=') : NULL;
	if (!colon || !eq || colon == arg || eq == colon + 1 || !eq[1]) {
		snprintf(err, errlen, "--kernel-const wants TEMPLATE:NAME=VALUE (e.g. 'moe_*:STAGES=4'), not '%s'", arg);
		return -1;
	}
	if (uc->n == KERNEL_MAX_USER_CONSTS) {
		snprintf(err, errlen, "too many --kernel-const options (at most %d)", KERNEL_MAX_USER_CONSTS);
		return -1;
	}
	struct kernel_user_const *c = &uc->v[uc->n];
	size_t gl = (size_t)(colon - arg), nl = (size_t)(eq - colon - 1);
	if (gl >= sizeof c->glob || nl >= sizeof c->name || strlen(eq + 1) >= sizeof c->value ||
	    strlen(arg) >= sizeof c->arg) {
		snprintf(err, errlen, "--kernel-const '%s': too long", arg);
		return -1;
	}
	/* tile sizes and stage counts: positive integers, spelled plainly (they name the instance) */
	char *end;
	long v = strtol(eq + 1, &end, 10);
	if (*end || eq[1] < '1' || eq[1] > '9' || v < 1 || v > 65536) {
		snprintf(err, errlen, "--kernel-const '%s': the value must be a positive integer (a tile size, a stage count)", arg);
		return -1;
	}
	snprintf(c->arg, sizeof c->arg, "%s", arg);
	snprintf(c->glob, sizeof c->glob, "%.*s", (int)gl, arg);
	snprintf(c->name, sizeof c->name, "%.*s", (int)nl, colon + 1);
	snprintf(c->value, sizeof c->value, "%ld", v);
	uc->n++;
	return 0;
}

static bool kernels_file_has_const(const struct kernel_file *f, const char *name)
{
	for (int i = 0; i < f->nconst; i++)
		if (!strcmp(f->consts[i], name))
			return true;
	return false;
}

/* Every --kernel-const must change something: its glob matches a template of this build, and
 * some matching template lists NAME (with a glob, the others are left alone: 'moe_*:STAGES=4'
 * sets the GEMMs' stages and passes over moe_permute). NAME must not be a spec-wide constant:
 * the trainer's step and buffers are written for the spec's shapes. */
static int kernels_check_user_consts(const struct kernel_user_consts *uc, const struct kernel_files *fs,
				     const struct kernel_dict *d)
{
	int errors = 0;
	for (int u = 0; uc && u < uc->n; u++) {
		const struct kernel_user_const *c = &uc->v[u];
		char used[1024] = "", lacking[1024] = "";
		int matched = 0, listing = 0;
		for (int i = 0; i < fs->n; i++) {
			if (!fs->cu[i])
				continue;
			size_t ul = strlen(used);
			snprintf(used + ul, sizeof used - ul, "%s%s", ul ? " " : "", fs->names[i]);
			if (fnmatch(c->glob, fs->names[i], 0))
				continue;
			matched++;
			if (kernels_file_has_const(fs->cu[i], c->name)) {
				listing++;
				continue;
			}
			size_t ll = strlen(lacking);
			snprintf(lacking + ll, sizeof lacking - ll, "%s%s (", ll ? "; " : "", fs->names[i]);
			for (int k = 0; k < fs->cu[i]->nconst; k++) {
				ll = strlen(lacking);
				snprintf(lacking + ll, sizeof lacking - ll, "%s%s", k ? " " : "", fs->cu[i]->consts[k]);
			}
			ll = strlen(lacking);
			snprintf(lacking + ll, sizeof lacking - ll, "%s)", fs->cu[i]->nconst ? "" : "none");
		}
		if (!matched) {
			diag_at(DIAG_ERROR, NULL, 0, 0, "--kernel-const %s: no template of this build matches '%s' (its templates: %s)",
				c->arg, c->glob, used);
			errors++;
		} else if (kernels_dict_get(d, c->name)) {
			diag_at(DIAG_ERROR, NULL, 0, 0,
				"--kernel-const %s: %s is a spec-wide constant (%s here), which the trainer's step is written for: "
				"change the spec instead (--set); --kernel-const sets a template's own constants (tile sizes)",
				c->arg, c->name, kernels_dict_get(d, c->name));
			errors++;
		} else if (!listing) {
			diag_at(DIAG_ERROR, NULL, 0, 0, "--kernel-const %s: no template matching '%s' has a constant %s: %s", c->arg,
				c->glob, c->name, lacking);
			errors++;
		}
	}
	return errors;
}

/* w's values plus the user's constants for its template (a later --kernel-const wins) */
static void kernels_apply_user_consts(const struct kernel_user_consts *uc, const struct kernel_file *cu, struct kernel_want *w)
{
	for (int u = 0; uc && u < uc->n; u++) {
		const struct kernel_user_const *c = &uc->v[u];
		if (fnmatch(c->glob, w->tmpl, 0) || !kernels_file_has_const(cu, c->name))
			continue;
		int at = 0;
		while (at < w->nover && strcmp(w->over[at].name, c->name))
			at++;
		if (at == KERNEL_MAX_OVERRIDES)
			continue; /* cannot happen: KERNEL_MAX_OVERRIDES leaves room for every tile constant */
		if (at == w->nover)
			w->nover++;
		snprintf(w->over[at].name, sizeof w->over[at].name, "%s", c->name);
		snprintf(w->over[at].value, sizeof w->over[at].value, "%s", c->value);
	}
}

/* Add one wanted instance, or merge it into an equal one already listed. */
static int kernels_add(struct kernel_set *ks, struct kernel_files *fs, const struct kernel_want *wanted,
		       const struct kernel_user_consts *uc)
{
	int fi = kernels_file_index(fs, ks->dir, wanted->tmpl, wanted->why);
	if (fi < 0)
		return 1;
	struct kernel_want tiled, *w = &tiled;
	kernels_tiles(wanted, &ks->dict, &tiled);
	kernels_apply_user_consts(uc, fs->cu[fi], &tiled);
	struct kernel_inst k;
	memset(&k, 0, sizeof k);
	int errors = kernels_fill_prelude(fs->cu[fi], NULL, w, &ks->dict, &k.consts);
	errors += kernels_fill_prelude(fs->twin[fi], fs->cu[fi], w, &ks->dict, &k.twin_consts);
	if (errors)
		return errors;
	snprintf(k.tmpl, sizeof k.tmpl, "%s", w->tmpl);
	snprintf(k.why, sizeof k.why, "%s", w->why);
	snprintf(k.launch, sizeof k.launch, "%s", fs->cu[fi]->launch);
	k.cu = fs->cu[fi]->src;
	k.twin = fs->twin[fi]->src;
	kernels_name_instance(w->tmpl, &k.consts, k.name, sizeof k.name);
	int at = kernels_find(ks, k.name);
	if (at >= 0) {
		struct kernel_inst *old = &ks->v[at];
		if (!kernels_dict_equal(&old->consts, &k.consts)) {
			diag_at(DIAG_ERROR, NULL, 0, 0, "internal: two instances named %s with different constants (compiler/kernels.c naming)", k.name);
			return 1;
		}
		if (!strstr(old->why, w->why)) {
			size_t len = strlen(old->why);
			snprintf(old->why + len, sizeof old->why - len, "; %s", w->why);
		}
		return 0;
	}
	struct kernel_inst *grown = realloc(ks->v, sizeof *ks->v * (size_t)(ks->n + 1));
	if (!grown) {
		diag_at(DIAG_ERROR, NULL, 0, 0, "out of memory selecting kernels");
		return 1;
	}
	ks->v = grown;
	ks->v[ks->n++] = k;
	return 0;
}

static int kernels_compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Templates in the dir that the step does not use (helpers of other configurations, or
 * new ones kernels_want_step does not know yet): listed under MOEC_DEBUG, never compiled,
 * since a template may only make sense for some specs (moe_capacity static_asserts a
 * capacity). tests/build checks that every template is used by some configuration. */
static void kernels_note_unused(const struct kernel_set *ks)
{
	const char *debug = getenv("MOEC_DEBUG");
	DIR *d = debug && atoi(debug) >= 1 ? opendir(ks->dir) : NULL;
	if (!d)
		return;
	char *names[KERNEL_MAX_TEMPLATES];
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) && n < KERNEL_MAX_TEMPLATES;) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 3, ".cu") || e->d_name[0] == '.')
			continue;
		bool used = false;
		for (int i = 0; i < ks->n && !used; i++)
			used = strlen(ks->v[i].tmpl) == len - 3 && !strncmp(ks->v[i].tmpl, e->d_name, len - 3);
		if (!used)
			names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof names[0], kernels_compare_names);
	for (int i = 0; i < n; i++) {
		fprintf(stderr, "moec: kernels: %s/%s is not used by this spec's step\n", ks->dir, names[i]);
		free(names[i]);
	}
}

int kernels_select(const struct spec *s, const struct ir *ir, const struct plan *p, const char *dir,
		   const struct kernel_user_consts *uc, struct kernel_set *ks)
{
	memset(ks, 0, sizeof *ks);
	snprintf(ks->dir, sizeof ks->dir, "%s", dir);
	kernels_fill_dict(s, ir, p, &ks->dict);
	int before = diag_error_count();
	kernels_check_supported(s);
	if (diag_error_count() > before)
		return diag_error_count() - before;
	kernels_check_expert_lora(s, ir);
	struct kernel_wants *w = calloc(1, sizeof *w);
	struct kernel_files *fs = calloc(1, sizeof *fs);
	int errors = 0;
	if (!w || !fs) {
		diag_at(DIAG_ERROR, NULL, 0, 0, "out of memory selecting kernels");
		errors = 1;
		goto out_free;
	}
	kernels_want_step(s, ir, p, w);
	if (uc && uc->n) { /* the step's templates first: what the user's constants may name */
		for (int i = 0; i < w->n; i++)
			kernels_file_index(fs, ks->dir, w->v[i].tmpl, w->v[i].why);
		errors += kernels_check_user_consts(uc, fs, &ks->dict);
	}
	const int user_errors = errors;
	for (int i = 0; i < w->n && !user_errors; i++) /* the user's constants wrong: no instances */
		errors += kernels_add(ks, fs, &w->v[i], uc);
	if (!errors)
		kernels_note_unused(ks);
	kernels_files_free(fs);
out_free:
	free(fs);
	free(w);
	return errors;
}

void kernels_free(struct kernel_set *ks)
{
	for (int i = 0; i < ks->n; i++) {
		free(ks->v[i].cu_text);
		free(ks->v[i].twin_text);
	}
	free(ks->v);
	ks->v = NULL;
	ks->n = 0;
}

/* hfconfig.c - a checked spec's model as a Hugging Face config.json. See hfconfig.h. */
#define _GNU_SOURCE
#include "hfconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files.h"
#include "schema.h"

/* ---- what transformers' Qwen3-MoE and Mixtral classes can express ---- */

/* Features of the spec language neither Qwen3MoeForCausalLM nor MixtralForCausalLM has:
 * loading such a checkpoint there would drop tensors or compute another function. */
static const char *hfconfig_common_unsupported(const struct spec *s)
{
	const struct model_spec *m = &s->model;
	const struct moe_spec *e = &s->moe;
	if (m->attention != ATTENTION_GQA)
		return "model.attention mla";
	if (m->attention_sinks)
		return "model.attention_sinks";
	if (m->sliding_window)
		return "model.sliding_window (moec alternates windowed layers as GPT-OSS does)";
	if (e->num_shared_experts || e->shared_expert_gate)
		return "shared experts";
	if (e->activation != ACTIVATION_SWIGLU)
		return "moe.activation swiglu_clamped";
	if (e->expert_bias || e->router_bias)
		return "expert or router biases";
	if (e->router != ROUTER_SOFTMAX_TOPK)
		return "moe.router sigmoid_topk";
	if (e->routed_scaling_factor != 1.0)
		return "moe.routed_scaling_factor other than 1";
	if (e->n_group > 1)
		return "group-limited routing (moe.n_group)";
	if (e->bias_update_rate > 0)
		return "aux-loss-free balancing (moe.bias_update_rate: its e_score_correction_bias tensors)";
	return NULL;
}

static const char *hfconfig_family_unsupported(const struct spec *s, const struct ir *ir)
{
	const struct model_spec *m = &s->model;
	if (m->family == FAMILY_QWEN3_MOE && !m->qk_norm)
		return "model.qk_norm false (Qwen3-MoE always has q_norm and k_norm)";
	if (m->family == FAMILY_MIXTRAL) {
		if (m->qk_norm)
			return "model.qk_norm";
		if (m->attention_bias)
			return "model.attention_bias";
		if (ir->n_dense_layers)
			return "dense MLP layers";
		if (!s->moe.norm_topk_prob)
			return "moe.norm_topk_prob false (Mixtral always renormalizes the top-k weights)";
	}
	return NULL;
}

const char *hfconfig_unsupported(const struct spec *s, const struct ir *ir, char *buf, size_t n)
{
	int family = s->model.family;
	if (family != FAMILY_QWEN3_MOE && family != FAMILY_MIXTRAL) {
		snprintf(buf, n, "family %s is not supported yet (config.json is written for qwen3_moe and mixtral)",
			 schema_enum_name(family_names, family));
		return buf;
	}
	const char *what = hfconfig_common_unsupported(s);
	if (!what)
		what = hfconfig_family_unsupported(s, ir);
	if (!what)
		return NULL;
	snprintf(buf, n, "family %s: transformers' %s has no %s", schema_enum_name(family_names, family),
		 family == FAMILY_MIXTRAL ? "MixtralForCausalLM" : "Qwen3MoeForCausalLM", what);
	return buf;
}

/* ---- key/value list, written sorted as transformers writes config.json ---- */

#define HFCONFIG_MAX_KEYS 48

struct hfconfig {
	struct {
		const char *key;
		char *val; /* JSON text of the value */
	} e[HFCONFIG_MAX_KEYS];
	int n;
	bool failed;
};

__attribute__((format(printf, 3, 4))) static void put(struct hfconfig *c, const char *key, const char *fmt, ...)
{
	va_list ap;
	char *v = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&v, fmt, ap);
	va_end(ap);
	if (r < 0 || c->n == HFCONFIG_MAX_KEYS) {
		free(r < 0 ? NULL : v);
		c->failed = true;
		return;
	}
	c->e[c->n].key = key;
	c->e[c->n++].val = v;
}

static void put_int(struct hfconfig *c, const char *key, int64_t v)
{
	put(c, key, "%lld", (long long)v);
}

static void put_bool(struct hfconfig *c, const char *key, bool v)
{
	put(c, key, "%s", v ? "true" : "false");
}

/* Callers pass fixed names only ("silu", "float32"), which need no JSON escapes. */
static void put_str(struct hfconfig *c, const char *key, const char *v)
{
	put(c, key, "\"%s\"", v);
}

/* The shortest text that reads back as exactly v, with ".0" on whole numbers as Python's
 * json writes floats (10000.0), so a float key stays a float in transformers. */
static void put_float(struct hfconfig *c, const char *key, double v)
{
	char buf[40];
	snprintf(buf, sizeof buf, "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof buf, "%.17g", v);
	if (!strpbrk(buf, ".eEn"))
		strcat(buf, ".0");
	put(c, key, "%s", buf);
}

/* Qwen3-MoE's rule for a sparse layer is "(i+1) % decoder_sparse_step == 0 and i not in
 * mlp_only_layers"; moec's also has first_k_dense. So every dense layer the step rule
 * alone would make sparse is listed: HF then builds exactly the IR's layer kinds. */
static void put_mlp_only_layers(struct hfconfig *c, const struct spec *s, const struct ir *ir)
{
	int64_t step = s->model.decoder_sparse_step > 0 ? s->model.decoder_sparse_step : 1;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f) {
		c->failed = true;
		return;
	}
	int listed = 0;
	fputc('[', f);
	for (int i = 0; i < ir->nlayers; i++)
		if (!ir->layers[i].moe && (i + 1) % step == 0)
			fprintf(f, "%s%d", listed++ ? ", " : "", i);
	fputc(']', f);
	if (fclose(f)) {
		free(text);
		c->failed = true;
		return;
	}
	put(c, "mlp_only_layers", "%s", text);
	free(text);
}

/* What both families spell the same way. */
static void put_common(struct hfconfig *c, const struct spec *s, const struct ir *ir, const char *torch_dtype)
{
	const struct ir_dims *d = &ir->dims;
	put_float(c, "attention_dropout", 0.0);
	put_int(c, "head_dim", d->head_dim);
	put_str(c, "hidden_act", "silu");
	put_int(c, "hidden_size", d->hidden);
	put_float(c, "initializer_range", 0.02);
	put_int(c, "max_position_embeddings", s->model.max_seq_len);
	put_int(c, "num_attention_heads", d->heads);
	put_int(c, "num_experts_per_tok", d->top_k);
	put_int(c, "num_hidden_layers", d->layers);
	put_int(c, "num_key_value_heads", d->kv_heads);
	put_bool(c, "output_router_logits", false);
	put_float(c, "rms_norm_eps", s->model.norm_eps);
	put_float(c, "rope_theta", s->model.rope_theta);
	put_float(c, "router_aux_loss_coef", s->moe.router_aux_loss_coef);
	put(c, "sliding_window", "null");
	put_bool(c, "tie_word_embeddings", d->tied);
	put_str(c, "torch_dtype", torch_dtype);
	put_int(c, "vocab_size", d->vocab);
}

static void put_qwen3_moe(struct hfconfig *c, const struct spec *s, const struct ir *ir)
{
	const struct ir_dims *d = &ir->dims;
	put(c, "architectures", "[\n    \"Qwen3MoeForCausalLM\"\n  ]");
	put_str(c, "model_type", "qwen3_moe");
	put_bool(c, "attention_bias", s->model.attention_bias);
	put_int(c, "decoder_sparse_step", s->model.decoder_sparse_step);
	/* HF requires the key even without dense layers; D when the spec names one. */
	put_int(c, "intermediate_size", d->dense_inter ? d->dense_inter : d->expert_inter);
	put_mlp_only_layers(c, s, ir);
	put_int(c, "moe_intermediate_size", d->expert_inter);
	put_bool(c, "norm_topk_prob", s->moe.norm_topk_prob);
	put_int(c, "num_experts", d->experts);
	put_bool(c, "use_sliding_window", false);
}

/* Mixtral's intermediate_size is the expert width: it has no dense layers. */
static void put_mixtral(struct hfconfig *c, const struct spec *s, const struct ir *ir)
{
	const struct ir_dims *d = &ir->dims;
	put(c, "architectures", "[\n    \"MixtralForCausalLM\"\n  ]");
	put_str(c, "model_type", "mixtral");
	put_int(c, "intermediate_size", d->expert_inter);
	put_int(c, "num_local_experts", d->experts);
}

static int key_order(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *hfconfig_text(struct hfconfig *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	qsort(c->e, (size_t)c->n, sizeof c->e[0], key_order);
	fputs("{\n", f);
	for (int i = 0; i < c->n; i++)
		fprintf(f, "  \"%s\": %s%s\n", c->e[i].key, c->e[i].val, i + 1 < c->n ? "," : "");
	fputs("}\n", f);
	if (fclose(f)) {
		free(text);
		return NULL;
	}
	return text;
}

char *hfconfig_json(const struct spec *s, const struct ir *ir, const char *torch_dtype, char *err, size_t errlen)
{
	if (hfconfig_unsupported(s, ir, err, errlen))
		return NULL;
	struct hfconfig c = {.n = 0};
	put_common(&c, s, ir, torch_dtype);
	if (s->model.family == FAMILY_MIXTRAL)
		put_mixtral(&c, s, ir);
	else
		put_qwen3_moe(&c, s, ir);
	char *text = c.failed ? NULL : hfconfig_text(&c);
	for (int i = 0; i < c.n; i++)
		free(c.e[i].val);
	if (!text)
		snprintf(err, errlen, "out of memory writing config.json");
	return text;
}

int hfconfig_write_build(const char *dir, const struct spec *s, const struct ir *ir)
{
	char path[4200], why[256];
	snprintf(path, sizeof path, "%s/config.json", dir);
	if (hfconfig_unsupported(s, ir, why, sizeof why)) {
		/* An older build's config.json must not describe this build's spec. */
		if (unlink(path) && errno != ENOENT)
			fprintf(stderr, "moec: warning: cannot remove the stale %s: %s\n", path, strerror(errno));
		printf("%s: no config.json: %s\n", dir, why);
		return 0;
	}
	char *json = hfconfig_json(s, ir, "float32", why, sizeof why);
	int rc = json ? file_write_atomic(path, json, strlen(json), true) : ENOMEM;
	free(json);
	if (rc) {
		fprintf(stderr, "moec: error: cannot write %s: %s\n", path, strerror(rc));
		unlink(path);
		return 1;
	}
	return 0;
}

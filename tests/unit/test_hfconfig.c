/* test_hfconfig.c - the config.json moec writes (compiler/hfconfig.c).
 *
 * Round trip: a spec's config.json, imported back through `model: {hf_config: ...}`,
 * must give the same model: the same IR (layer kinds, every tensor's name and shape) and
 * the same norms, RoPE base and routing; and writing the imported spec's config.json again
 * gives the same bytes. Against the real config.json files in tests/fixtures/hf, every key
 * both have must agree. Families and features transformers cannot express are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "check.h"
#include "diag.h"
#include "files.h"
#include "hfconfig.h"
#include "lower.h"
#include "parse.h"
#include "testing.h"

static char dir[64]; /* scratch directory for the config.json files */

struct model {
	struct spec s;
	struct ir *ir;
};

/* Parse (a spec file when text is NULL), check and lower; 0 or the error count. */
static int model_load(struct model *m, const char *file, const char *text)
{
	memset(m, 0, sizeof *m);
	int errors = text ? spec_parse_text(&m->s, "test.yaml", text, NULL) : spec_parse(&m->s, file, NULL);
	if (!errors)
		errors = spec_check(&m->s);
	if (!errors)
		m->ir = lower(&m->s);
	return errors ? errors : !m->ir;
}

static void model_free(struct model *m)
{
	if (m->ir)
		ir_free(m->ir);
	spec_free(&m->s);
}

/* The model's own tensors: LoRA adapters (appended after every layer) belong to the
 * training recipe, which config.json does not carry. */
static int model_tensors(const struct ir *ir)
{
	int n = 0;
	while (n < ir->ntensors && ir->tensors[n].role != IR_ROLE_LORA_A && ir->tensors[n].role != IR_ROLE_LORA_B)
		n++;
	return n;
}

/* Same architecture: every value config.json carries, and what lowering builds from them.
 * D counts only when some layer is dense (HF needs an intermediate_size regardless). */
static void expect_same_model(const struct model *a, const struct model *b)
{
	const struct ir_dims *x = &a->ir->dims, *y = &b->ir->dims;
	EXPECT_INT(b->s.model.family, a->s.model.family);
	EXPECT_INT(y->hidden, x->hidden);
	EXPECT_INT(y->layers, x->layers);
	EXPECT_INT(y->heads, x->heads);
	EXPECT_INT(y->kv_heads, x->kv_heads);
	EXPECT_INT(y->head_dim, x->head_dim);
	EXPECT_INT(y->vocab, x->vocab);
	EXPECT_INT(y->experts, x->experts);
	EXPECT_INT(y->top_k, x->top_k);
	EXPECT_INT(y->expert_inter, x->expert_inter);
	EXPECT_INT(y->tied, x->tied);
	if (a->ir->n_dense_layers)
		EXPECT_INT(y->dense_inter, x->dense_inter);
	EXPECT_INT(b->s.model.max_seq_len, a->s.model.max_seq_len);
	EXPECT(b->s.model.rope_theta == a->s.model.rope_theta);
	EXPECT(b->s.model.norm_eps == a->s.model.norm_eps);
	EXPECT_INT(b->s.model.qk_norm, a->s.model.qk_norm);
	EXPECT_INT(b->s.model.attention_bias, a->s.model.attention_bias);
	EXPECT_INT(b->s.moe.norm_topk_prob, a->s.moe.norm_topk_prob);
	EXPECT(b->s.moe.router_aux_loss_coef == a->s.moe.router_aux_loss_coef);
	EXPECT_INT(b->ir->nlayers, a->ir->nlayers);
	for (int i = 0; i < a->ir->nlayers && i < b->ir->nlayers; i++) {
		EXPECT_INT(b->ir->layers[i].moe, a->ir->layers[i].moe);
		EXPECT_INT(b->ir->layers[i].window, a->ir->layers[i].window);
	}
	EXPECT_INT(model_tensors(b->ir), model_tensors(a->ir));
	for (int i = 0; i < model_tensors(a->ir) && i < model_tensors(b->ir); i++) {
		const struct ir_tensor *s = &a->ir->tensors[i], *t = &b->ir->tensors[i];
		EXPECT_STR(t->name, s->name);
		EXPECT_INT(t->ndim, s->ndim);
		for (int d = 0; d < s->ndim; d++)
			EXPECT_INT(t->shape[d], s->shape[d]);
	}
}

/* Write a's config.json (as `moec build` does), import it, compare; returns the text. */
static char *round_trip(const struct model *a, const char *what)
{
	char path[128], spec[256], *text = NULL, err[256];
	size_t len;
	printf("round trip: %s\n", what);
	EXPECT_INT(hfconfig_write_build(dir, &a->s, a->ir), 0);
	snprintf(path, sizeof path, "%s/config.json", dir);
	EXPECT_INT(file_read_whole(path, &text, &len), 0);
	snprintf(spec, sizeof spec, "model:\n  hf_config: %s\n", path);
	struct model b;
	int errors = model_load(&b, NULL, spec);
	EXPECT_INT(errors, 0);
	if (!errors) {
		expect_same_model(a, &b);
		char *again = hfconfig_json(&b.s, b.ir, "float32", err, sizeof err);
		EXPECT_STR(again, text); /* a fixed point: the import loses nothing we write */
		free(again);
	}
	model_free(&b);
	diag_free_sources();
	return text;
}

static void test_round_trips(void)
{
	static const struct {
		const char *what, *file, *text;
	} cases[] = {
		{"the tiny example", "examples/tiny_qwen3_moe.yaml", NULL},
		{"Qwen3-30B-A3B", NULL, "include: qwen3_30b_a3b\n"},
		{"Qwen3-235B-A22B", NULL, "include: qwen3_235b_a22b\n"},
		{"Mixtral 8x7B", NULL, "include: mixtral_8x7b\n"},
		{"Qwen3, tied, no dense width", NULL,
		 "model:\n  family: qwen3_moe\n  hidden_size: 64\n  num_layers: 3\n  num_heads: 4\n  num_kv_heads: 1\n"
		 "  vocab_size: 300\n  qk_norm: true\n  tie_embeddings: true\n  rope_theta: 1.5e6\n  norm_eps: 1e-5\n"
		 "moe:\n  num_experts: 4\n  top_k: 1\n  moe_intermediate_size: 32\n  norm_topk_prob: false\n"
		 "  router_aux_loss_coef: 0.0123\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct model a;
		int errors = model_load(&a, cases[i].file, cases[i].text);
		EXPECT_INT(errors, 0);
		if (!errors)
			free(round_trip(&a, cases[i].what));
		model_free(&a);
		diag_free_sources();
	}
}

/* moec's first_k_dense has no Qwen3-MoE key: the dense layers the sparse step would not
 * make dense are listed in mlp_only_layers instead, so HF builds the same layer kinds. */
static void test_dense_layers(void)
{
	struct model a;
	int errors = model_load(&a, NULL,
				"model:\n  family: qwen3_moe\n  hidden_size: 64\n  num_layers: 6\n  num_heads: 4\n"
				"  vocab_size: 256\n  qk_norm: true\n  first_k_dense: 2\n  decoder_sparse_step: 2\n"
				"  mlp_only_layers: [3]\n  dense_intermediate_size: 96\n"
				"moe:\n  num_experts: 8\n  top_k: 2\n  moe_intermediate_size: 16\n");
	EXPECT_INT(errors, 0);
	if (!errors) {
		EXPECT_INT(a.ir->n_moe_layers, 1); /* 0, 1 first_k_dense; 0, 2, 4 by the step; 3 listed */
		char *text = round_trip(&a, "Qwen3 with first_k_dense, decoder_sparse_step, mlp_only_layers");
		EXPECT(text && strstr(text, "\"mlp_only_layers\": [1, 3],\n"));
		EXPECT(text && strstr(text, "\"decoder_sparse_step\": 2,\n"));
		EXPECT(text && strstr(text, "\"intermediate_size\": 96,\n"));
		free(text);
	}
	model_free(&a);
	diag_free_sources();
}

/* ---- agreement with the published config.json files ---- */

static yaml_node_t *json_get(yaml_document_t *d, yaml_node_t *map, const char *key)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(d, p->key);
		if (!strcmp((const char *)k->data.scalar.value, key))
			return yaml_document_get_node(d, p->value);
	}
	return NULL;
}

/* Scalars are equal as numbers when both are numbers (10000 == 10000.0), else as text. */
static int json_same(yaml_document_t *da, yaml_node_t *a, yaml_document_t *db, yaml_node_t *b)
{
	if (a->type != b->type)
		return 0;
	if (a->type == YAML_SEQUENCE_NODE) {
		yaml_node_item_t *i = a->data.sequence.items.start, *j = b->data.sequence.items.start;
		for (; i < a->data.sequence.items.top && j < b->data.sequence.items.top; i++, j++)
			if (!json_same(da, yaml_document_get_node(da, *i), db, yaml_document_get_node(db, *j)))
				return 0;
		return i == a->data.sequence.items.top && j == b->data.sequence.items.top;
	}
	if (a->type != YAML_SCALAR_NODE)
		return 0;
	const char *x = (const char *)a->data.scalar.value, *y = (const char *)b->data.scalar.value;
	char *ex, *ey;
	double vx = strtod(x, &ex), vy = strtod(y, &ey);
	if (*x && *y && !*ex && !*ey)
		return vx == vy;
	return !strcmp(x, y);
}

static int json_load(const char *text, size_t len, yaml_document_t *d)
{
	yaml_parser_t p;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	int ok = yaml_parser_load(&p, d);
	yaml_parser_delete(&p);
	return ok;
}

/* Import a published config.json, write ours, and compare every key both files have
 * (torch_dtype and output_router_logits are the checkpoint's and the run's, not the model's). */
static void test_fixture(const char *name)
{
	char path[256], spec[300], err[256], *theirs = NULL;
	size_t len;
	snprintf(path, sizeof path, "tests/fixtures/hf/%s/config.json", name);
	snprintf(spec, sizeof spec, "model:\n  hf_config: %s\n", path);
	struct model m;
	int errors = model_load(&m, NULL, spec);
	EXPECT_INT(errors, 0);
	char *ours = errors ? NULL : hfconfig_json(&m.s, m.ir, "float32", err, sizeof err);
	EXPECT(ours != NULL);
	EXPECT_INT(file_read_whole(path, &theirs, &len), 0);
	yaml_document_t a, b;
	if (ours && theirs && json_load(ours, strlen(ours), &a)) {
		EXPECT(json_load(theirs, len, &b));
		yaml_node_t *ra = yaml_document_get_root_node(&a), *rb = yaml_document_get_root_node(&b);
		int compared = 0;
		for (yaml_node_pair_t *p = ra->data.mapping.pairs.start; p < ra->data.mapping.pairs.top; p++) {
			const char *key = (const char *)yaml_document_get_node(&a, p->key)->data.scalar.value;
			yaml_node_t *other = json_get(&b, rb, key);
			if (!other || !strcmp(key, "torch_dtype") || !strcmp(key, "output_router_logits"))
				continue;
			compared++;
			if (!json_same(&a, yaml_document_get_node(&a, p->value), &b, other)) {
				testing_failed++;
				fprintf(stderr, "%s: key %s differs from ours\n", path, key);
			}
		}
		printf("%s: %d keys agree\n", path, compared);
		EXPECT(compared >= 18);
		yaml_document_delete(&a);
		yaml_document_delete(&b);
	}
	free(ours);
	free(theirs);
	model_free(&m);
	diag_free_sources();
}

/* ---- refused ---- */

static void expect_unsupported(const char *text, const char *why)
{
	struct model m;
	char err[256];
	int errors = model_load(&m, NULL, text);
	EXPECT_INT(errors, 0);
	if (!errors) {
		char *json = hfconfig_json(&m.s, m.ir, "float32", err, sizeof err);
		EXPECT(json == NULL);
		free(json);
		if (!strstr(err, why)) {
			testing_failed++;
			fprintf(stderr, "%s: error '%s' does not say '%s'\n", text, err, why);
		}
		/* `moec build` then leaves no config.json behind, not even an older build's. */
		char path[128];
		snprintf(path, sizeof path, "%s/config.json", dir);
		EXPECT_INT(file_write_atomic(path, "{}", 2, false), 0);
		EXPECT_INT(hfconfig_write_build(dir, &m.s, m.ir), 0);
		EXPECT(!file_exists(path));
	}
	model_free(&m);
	diag_free_sources();
}

static void test_unsupported(void)
{
	expect_unsupported("include: deepseek_v3\n", "family deepseek_v3 is not supported yet");
	expect_unsupported("include: gpt_oss_20b\n", "family gpt_oss is not supported yet");
	expect_unsupported("include: qwen3_30b_a3b\nmodel:\n  qk_norm: false\n", "qk_norm");
	expect_unsupported("include: qwen3_30b_a3b\nmoe:\n  num_shared_experts: 1\n", "shared experts");
	expect_unsupported("include: mixtral_8x7b\nmodel:\n  first_k_dense: 1\n  dense_intermediate_size: 1024\n",
			   "dense MLP layers");
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/moec_test_hfconfig_XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	test_round_trips();
	test_dense_layers();
	test_fixture("qwen3_30b_a3b");
	test_fixture("qwen3_moe_tiny");
	test_fixture("mixtral_8x7b");
	test_unsupported();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return testing_report();
}

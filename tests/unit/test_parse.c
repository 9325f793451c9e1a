/* test_parse.c - the spec front end: value priorities and origins, aliases, HF config.json
 * import, cluster files, --set, derived values and the spec hash. (Bad specs and their
 * exact messages are the tests/specs/bad suite.) */
#include <stdlib.h>

#include "check.h"
#include "diag.h"
#include "parse.h"
#include "schema.h"
#include "testing.h"

static const struct origin *origin(const struct spec *s, const char *path)
{
	return &s->origin[schema_index(schema_find(path))];
}

static int load(struct spec *s, const char *text, const char *const *sets, int nsets)
{
	struct parse_options opt = {.sets = sets, .nsets = nsets};
	int errors = spec_parse_text(s, "test.yaml", text, &opt);
	return errors ? errors : spec_check(s);
}

/* Preset < user file < --set, whatever the order in the file. */
static void test_priorities(void)
{
	struct spec s;
	const char *sets[] = {"train.lr=2e-5", "parallel={ep: 4, gpus_per_node: 4}"};
	int errors = load(&s,
	                  "moe:\n  top_k: 4\n"
	                  "include: qwen3_30b_a3b\n"
	                  "train:\n  mode: full\n  lr: 1e-4\n  seq_len: 2048\n",
	                  sets, 2);
	EXPECT_INT(errors, 0);
	EXPECT_INT(s.moe.top_k, 4);                  /* file beats preset */
	EXPECT_INT(origin(&s, "moe.top_k")->kind, ORIGIN_FILE);
	EXPECT_INT(origin(&s, "moe.top_k")->line, 2);
	EXPECT_INT(origin(&s, "moe.top_k")->col, 10);
	EXPECT_INT(s.moe.num_experts, 128);          /* from the preset */
	EXPECT_INT(origin(&s, "moe.num_experts")->kind, ORIGIN_PRESET);
	EXPECT_NEAR(s.train.lr, 2e-5, 1e-12);        /* --set beats the file */
	EXPECT_INT(origin(&s, "train.lr")->kind, ORIGIN_OVERRIDE);
	EXPECT_INT(s.parallel.ep, 4);
	EXPECT_INT(s.parallel.dp, 4);                /* derived: world 4 / tp 1 */
	EXPECT_INT(origin(&s, "parallel.dp")->kind, ORIGIN_DERIVED);
	EXPECT_INT(s.train.seq_len, 2048);
	EXPECT(s.train.train_router);                /* derived from mode full */
	spec_free(&s);
	diag_free_sources();
}

/* HF names are accepted as aliases in their section and in model:. */
static void test_aliases(void)
{
	struct spec s;
	int errors = load(&s,
	                  "model:\n  hidden_size: 64\n  num_hidden_layers: 2\n  num_attention_heads: 4\n"
	                  "  num_key_value_heads: 2\n  vocab_size: 256\n  num_experts: 8\n  num_experts_per_tok: 2\n"
	                  "  moe_intermediate_size: 32\n  rms_norm_eps: 1e-5\n"
	                  "train:\n  learning_rate: 0.01\n  gradient_accumulation_steps: 4\n  seq_len: 64\n"
	                  "parallel:\n  gpus_per_node: 2\n  ep_size: 2\n",
	                  NULL, 0);
	EXPECT_INT(errors, 0);
	EXPECT_INT(s.model.num_layers, 2);
	EXPECT_INT(s.model.num_kv_heads, 2);
	EXPECT_INT(s.moe.num_experts, 8);
	EXPECT_INT(s.moe.top_k, 2);
	EXPECT_INT(s.model.head_dim, 16); /* derived: 64 / 4 */
	EXPECT_NEAR(s.model.norm_eps, 1e-5, 1e-12);
	EXPECT_NEAR(s.train.lr, 0.01, 1e-12);
	EXPECT_INT(s.train.grad_accum, 4);
	EXPECT_INT(s.parallel.ep, 2);
	spec_free(&s);
	diag_free_sources();
}

/* Importing a real config.json yields the same model as the hand-written preset. */
static void test_hf_config(void)
{
	struct spec hf, preset;
	int e1 = load(&hf, "model:\n  hf_config: tests/fixtures/hf/qwen3_30b_a3b/config.json\n", NULL, 0);
	int e2 = load(&preset, "include: qwen3_30b_a3b\n", NULL, 0);
	EXPECT_INT(e1, 0);
	EXPECT_INT(e2, 0);
	EXPECT_INT(hf.model.family, FAMILY_QWEN3_MOE);
	EXPECT(hf.model.qk_norm); /* implied by model_type qwen3_moe */
	EXPECT_INT(origin(&hf, "model.hidden_size")->kind, ORIGIN_HF_CONFIG);
	EXPECT_INT(hf.model.hidden_size, preset.model.hidden_size);
	EXPECT_INT(hf.model.num_layers, preset.model.num_layers);
	EXPECT_INT(hf.model.num_heads, preset.model.num_heads);
	EXPECT_INT(hf.model.num_kv_heads, preset.model.num_kv_heads);
	EXPECT_INT(hf.model.head_dim, preset.model.head_dim);
	EXPECT_INT(hf.model.vocab_size, preset.model.vocab_size);
	EXPECT_NEAR(hf.model.rope_theta, preset.model.rope_theta, 1e-12);
	EXPECT_INT(hf.moe.num_experts, preset.moe.num_experts);
	EXPECT_INT(hf.moe.top_k, preset.moe.top_k);
	EXPECT_INT(hf.moe.moe_intermediate_size, preset.moe.moe_intermediate_size);
	EXPECT_INT(hf.moe.norm_topk_prob, preset.moe.norm_topk_prob);
	EXPECT_INT(hf.model.sliding_window, 0);
	spec_free(&hf);
	spec_free(&preset);
	diag_free_sources();

	/* Mixtral's intermediate_size is its expert width. */
	struct spec mx;
	EXPECT_INT(load(&mx, "model:\n  hf_config: tests/fixtures/hf/mixtral_8x7b/config.json\n", NULL, 0), 0);
	EXPECT_INT(mx.model.family, FAMILY_MIXTRAL);
	EXPECT_INT(mx.moe.moe_intermediate_size, 14336);
	EXPECT_INT(mx.moe.num_experts, 8);
	EXPECT_INT(mx.moe.top_k, 2);
	EXPECT_INT(mx.model.dense_intermediate_size, 0);
	spec_free(&mx);
	diag_free_sources();

	/* DeepSeek-V3: MLA, sigmoid router, groups, dense first layers. */
	struct spec ds;
	EXPECT_INT(load(&ds, "model:\n  hf_config: tests/fixtures/hf/deepseek_v3/config.json\n", NULL, 0), 0);
	EXPECT_INT(ds.model.attention, ATTENTION_MLA);
	EXPECT_INT(ds.moe.router, ROUTER_SIGMOID_TOPK);
	EXPECT_INT(ds.moe.num_experts, 256);
	EXPECT_INT(ds.moe.num_shared_experts, 1);
	EXPECT_INT(ds.moe.n_group, 8);
	EXPECT_INT(ds.moe.topk_group, 4);
	EXPECT_INT(ds.model.first_k_dense, 3);
	EXPECT_INT(ds.model.kv_lora_rank, 512);
	EXPECT_NEAR(ds.moe.routed_scaling_factor, 2.5, 1e-12);
	spec_free(&ds);
	diag_free_sources();
}

/* A cluster file fills cluster.* but never overrides the user's own parallel keys. */
static void test_cluster(void)
{
	struct spec s;
	int errors = load(&s,
	                  "include: qwen3_235b_a22b\n"
	                  "parallel:\n  nodes: 2\n  gpus_per_node: 8\n  gpu: h200\n  ep: 8\n  tp: 2\n"
	                  "  cluster: clusters/h200_2node.yaml\n",
	                  NULL, 0);
	EXPECT_INT(errors, 0);
	EXPECT_INT(s.cluster.nvlink_domain, 8);
	EXPECT_INT(origin(&s, "cluster.nvlink_domain")->kind, ORIGIN_CLUSTER);
	EXPECT_INT(s.parallel.gpu, GPU_H200);
	EXPECT_INT(origin(&s, "parallel.gpu")->kind, ORIGIN_FILE);
	EXPECT_INT(s.parallel.dp, 8);
	spec_free(&s);
	diag_free_sources();
}

/* The hash names the resolved job: equal for equal values, different otherwise. */
static void test_hash(void)
{
	struct spec a, b, c;
	const char *sets[] = {"moe.top_k=4"};
	EXPECT_INT(load(&a, "include: qwen3_30b_a3b\n", NULL, 0), 0);
	EXPECT_INT(load(&b, "include: qwen3_30b_a3b\nmodel:\n  hidden_size: 2048\n", NULL, 0), 0);
	EXPECT_INT(load(&c, "include: qwen3_30b_a3b\n", sets, 1), 0);
	EXPECT(a.hash == b.hash);
	EXPECT(a.hash != c.hash);
	spec_free(&a);
	spec_free(&b);
	spec_free(&c);
	diag_free_sources();
}

/* Errors are counted and reported, one per problem, and do not stop at the first. */
static void test_error_count(void)
{
	struct spec s;
	FILE *sink = fopen("/dev/null", "w");
	diag_set_stream(sink);
	diag_reset_counts();
	int errors = spec_parse_text(&s, "t.yaml", "model:\n  hidden_size: x\n  num_layers: -1\n  bogus: 1\n", NULL);
	EXPECT_INT(errors, 3);
	spec_free(&s);
	diag_free_sources();
	diag_set_stream(NULL);
	fclose(sink);
	diag_reset_counts();
}

int main(void)
{
	test_priorities();
	test_aliases();
	test_hf_config();
	test_cluster();
	test_hash();
	test_error_count();
	return testing_report();
}

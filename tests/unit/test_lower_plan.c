/* test_lower_plan.c - lower (spec -> IR), plan (layout, params, memory, FLOPs, comm) and
 * report (valid JSON with stable keys).
 *
 * Specs are built by hand in C so the test depends on nothing but lower/plan/report and
 * schema.c. The tiny spec's figures are computed by hand in the comments; the published
 * models are checked against their published parameter counts within 1%.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "lower.h"
#include "plan.h"
#include "report.h"
#include "schema.h"
#include "spec.h"

static int n_pass, n_fail;

static void check_i64(const char *file, int line, const char *expr, int64_t exp, int64_t got)
{
	if (exp == got) {
		n_pass++;
		return;
	}
	n_fail++;
	fprintf(stderr, "%s:%d: %s: expected %lld, got %lld\n", file, line, expr, (long long)exp, (long long)got);
}

static void check_rel(const char *file, int line, const char *expr, double exp, double got, double tol)
{
	if (fabs(got - exp) <= tol * fabs(exp)) {
		n_pass++;
		return;
	}
	n_fail++;
	fprintf(stderr, "%s:%d: %s: expected %.6g within %.2g%%, got %.6g\n", file, line, expr, exp, tol * 100, got);
}

static void check_true(const char *file, int line, const char *expr, int ok)
{
	if (ok) {
		n_pass++;
		return;
	}
	n_fail++;
	fprintf(stderr, "%s:%d: expected true: %s\n", file, line, expr);
}

#define CHECK_EQ(exp, got) check_i64(__FILE__, __LINE__, #got, (int64_t)(exp), (int64_t)(got))
#define CHECK_NEAR(exp, got, tol) check_rel(__FILE__, __LINE__, #got, (double)(exp), (double)(got), tol)
#define CHECK(cond) check_true(__FILE__, __LINE__, #cond, (cond) != 0)

/* A published figure "3.3B" is rounded or truncated to its last digit (ulp), so it came
 * from a value in [published - ulp/2, published + ulp): accept that, or within 1%. */
static void check_published(const char *file, int line, const char *expr, double pub, double ulp, double got)
{
	if (fabs(got - pub) <= 0.01 * pub || (got >= pub - ulp / 2 && got < pub + ulp)) {
		n_pass++;
		return;
	}
	n_fail++;
	fprintf(stderr, "%s:%d: %s: expected %.6g (within 1%% or [-ulp/2, +ulp) of its last digit %.3g), got %.6g\n", file, line, expr, pub, ulp, got);
}
#define CHECK_PUBLISHED(pub, ulp, got) check_published(__FILE__, __LINE__, #got, pub, ulp, (double)(got))

/* ---- spec builders: every field lower.c and plan.c read, set explicitly ---- */

static void spec_base(struct spec *s)
{
	memset(s, 0, sizeof *s);
	s->model.family = FAMILY_QWEN3_MOE;
	s->model.attention = ATTENTION_GQA;
	s->model.decoder_sparse_step = 1;
	s->moe.norm_topk_prob = true;
	s->moe.routed_scaling_factor = 1.0;
	s->moe.n_group = 1;
	s->moe.topk_group = 1;
	s->moe.router_dtype = DTYPE_FP32;
	s->parallel.nodes = 1;
	s->parallel.gpus_per_node = 1;
	s->parallel.gpu = GPU_H100;
	s->parallel.tp = 1;
	s->parallel.ep = 1;
	s->parallel.pp = 1;
	s->train.mode = TRAIN_FULL;
	s->train.lora.rank = 16;
	s->train.lora.alpha = 32;
	s->train.train_router = true;
	s->train.precision = DTYPE_BF16;
	s->train.base_dtype = DTYPE_BF16;
	s->train.seq_len = 4096;
	s->train.micro_batch = 1;
	s->train.grad_accum = 1;
	s->train.recompute = RECOMPUTE_SELECTIVE;
}

/* The tiny test model: H 64, 2 layers, 4 heads, 2 kv heads, head_dim 16, V 512,
 * 8 experts top-2, I 128, untied, qk_norm. */
static void spec_tiny(struct spec *s)
{
	spec_base(s);
	s->model.hidden_size = 64;
	s->model.num_layers = 2;
	s->model.num_heads = 4;
	s->model.num_kv_heads = 2;
	s->model.head_dim = 16;
	s->model.vocab_size = 512;
	s->model.qk_norm = true;
	s->moe.num_experts = 8;
	s->moe.top_k = 2;
	s->moe.moe_intermediate_size = 128;
	s->train.seq_len = 128;
	s->train.micro_batch = 2;
}

static void spec_qwen3_30b(struct spec *s)
{
	spec_base(s);
	s->model.hidden_size = 2048;
	s->model.num_layers = 48;
	s->model.num_heads = 32;
	s->model.num_kv_heads = 4;
	s->model.head_dim = 128;
	s->model.vocab_size = 151936;
	s->model.qk_norm = true;
	s->model.dense_intermediate_size = 6144;
	s->moe.num_experts = 128;
	s->moe.top_k = 8;
	s->moe.moe_intermediate_size = 768;
}

static void spec_qwen3_235b(struct spec *s)
{
	spec_base(s);
	s->model.hidden_size = 4096;
	s->model.num_layers = 94;
	s->model.num_heads = 64;
	s->model.num_kv_heads = 4;
	s->model.head_dim = 128;
	s->model.vocab_size = 151936;
	s->model.qk_norm = true;
	s->model.dense_intermediate_size = 12288;
	s->moe.num_experts = 128;
	s->moe.top_k = 8;
	s->moe.moe_intermediate_size = 1536;
}

static void spec_mixtral(struct spec *s)
{
	spec_base(s);
	s->model.family = FAMILY_MIXTRAL;
	s->model.hidden_size = 4096;
	s->model.num_layers = 32;
	s->model.num_heads = 32;
	s->model.num_kv_heads = 8;
	s->model.vocab_size = 32000; /* head_dim left 0: derived H / NH = 128 */
	s->moe.num_experts = 8;
	s->moe.top_k = 2;
	s->moe.moe_intermediate_size = 14336;
}

static void spec_deepseek_v3(struct spec *s)
{
	spec_base(s);
	s->model.family = FAMILY_DEEPSEEK_V3;
	s->model.attention = ATTENTION_MLA;
	s->model.hidden_size = 7168;
	s->model.num_layers = 61;
	s->model.num_heads = 128;
	s->model.num_kv_heads = 128;
	s->model.vocab_size = 129280;
	s->model.first_k_dense = 3;
	s->model.dense_intermediate_size = 18432;
	s->model.q_lora_rank = 1536;
	s->model.kv_lora_rank = 512;
	s->model.qk_nope_head_dim = 128;
	s->model.qk_rope_head_dim = 64;
	s->model.v_head_dim = 128;
	s->moe.num_experts = 256;
	s->moe.top_k = 8;
	s->moe.moe_intermediate_size = 2048;
	s->moe.num_shared_experts = 1;
	s->moe.router = ROUTER_SIGMOID_TOPK;
	s->moe.routed_scaling_factor = 2.5;
	s->moe.n_group = 8;
	s->moe.topk_group = 4;
}

static void spec_gpt_oss_120b(struct spec *s)
{
	spec_base(s);
	s->model.family = FAMILY_GPT_OSS;
	s->model.hidden_size = 2880;
	s->model.num_layers = 36;
	s->model.num_heads = 64;
	s->model.num_kv_heads = 8;
	s->model.head_dim = 64;
	s->model.vocab_size = 201088;
	s->model.attention_bias = true;
	s->model.attention_sinks = true;
	s->model.sliding_window = 128;
	s->moe.num_experts = 128;
	s->moe.top_k = 4;
	s->moe.moe_intermediate_size = 2880;
	s->moe.activation = ACTIVATION_SWIGLU_CLAMPED;
	s->moe.expert_bias = true;
	s->moe.router_bias = true;
}

/* ---- a minimal JSON validator (RFC 8259 grammar, no semantics) ---- */

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *json_value(const char *p);

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
						return NULL;
				p += 4;
			} else if (!*p || !strchr("\"\\/bfnrt", *p)) {
				return NULL;
			}
		}
		p++;
	}
	return *p == '"' ? p + 1 : NULL;
}

static const char *json_number(const char *p)
{
	char *end;
	if (*p != '-' && (*p < '0' || *p > '9'))
		return NULL;
	strtod(p, &end);
	return end > p ? end : NULL;
}

static const char *json_seq(const char *p, char close, int object)
{
	p = json_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			p = json_string(json_ws(p));
			if (!p || *(p = json_ws(p)) != ':')
				return NULL;
			p++;
		}
		p = json_value(p);
		if (!p)
			return NULL;
		p = json_ws(p);
		if (*p == close)
			return p + 1;
		if (*p != ',')
			return NULL;
		p++;
	}
}

static const char *json_value(const char *p)
{
	p = json_ws(p);
	if (*p == '{')
		return json_seq(p, '}', 1);
	if (*p == '[')
		return json_seq(p, ']', 0);
	if (*p == '"')
		return json_string(p);
	if (!strncmp(p, "true", 4))
		return p + 4;
	if (!strncmp(p, "false", 5))
		return p + 5;
	if (!strncmp(p, "null", 4))
		return p + 4;
	return json_number(p);
}

static int json_valid(const char *text)
{
	const char *end = json_value(text);
	return end && *json_ws(end) == 0;
}

/* Capture a report into a malloc'd string. */
static char *report_capture(const struct spec *s, const struct ir *ir, const struct plan *p, int json)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return NULL;
	if (json)
		report_plan_json(f, s, ir, p);
	else
		report_plan_text(f, s, ir, p, 4);
	fclose(f);
	return buf;
}

/* ---- tests ---- */

static const struct ir_tensor *need(const struct ir *ir, const char *name)
{
	const struct ir_tensor *t = ir_find(ir, name);
	if (!t) {
		n_fail++;
		fprintf(stderr, "missing tensor %s\n", name);
	}
	return t;
}

/* Hand count for the tiny spec (H 64, NH 4, NKV 2, HD 16, V 512, E 8, K 2, I 128):
 *   embed 512*64 = 32768, lm_head 32768, final norm 64                 -> 65600 global
 *   per layer: norms 2*64 = 128; q 64*64 = 4096, k 32*64 = 2048, v 2048, o 4096 = 12288;
 *   q_norm + k_norm 16 + 16 = 32; router 8*64 = 512; experts 8 * 3 * 128*64 = 196608
 *   -> 209568 per layer, 419136 for 2 layers; total 484736.
 *   active per layer: 128 + 12288 + 32 + 512 + 2 * 24576 = 62112 -> 124224 + 65600 = 189824;
 *   without the input embedding: 189824 - 32768 = 157056. */
static void test_tiny_params(void)
{
	struct spec s;
	spec_tiny(&s);
	struct ir *ir = lower(&s);
	CHECK(ir != NULL);
	if (!ir)
		return;
	CHECK_EQ(2, ir->nlayers);
	CHECK_EQ(2, ir->n_moe_layers);
	/* 3 global + per layer: 2 norms, q k v o, q/k norm, router, 3 experts = 12 */
	CHECK_EQ(3 + 2 * 12, ir->ntensors);
	const struct ir_tensor *t = need(ir, "model.layers.1.mlp.experts.{e}.down_proj.weight");
	if (t) {
		CHECK_EQ(3, t->ndim);
		CHECK_EQ(8, t->shape[0]);
		CHECK_EQ(64, t->shape[1]);
		CHECK_EQ(128, t->shape[2]);
		CHECK_EQ(IR_SHARD_EP, t->shard);
		CHECK(t->routed && t->stacked);
		char name[IR_NAME_MAX];
		ir_expert_name(t, 7, name, sizeof name);
		CHECK(strcmp(name, "model.layers.1.mlp.experts.7.down_proj.weight") == 0);
	}
	t = need(ir, "model.layers.0.self_attn.k_proj.weight");
	if (t) {
		CHECK_EQ(32, t->shape[0]);
		CHECK_EQ(IR_SHARD_TP_COLUMN, t->shard);
	}
	t = need(ir, "model.layers.0.self_attn.o_proj.weight");
	if (t)
		CHECK_EQ(IR_SHARD_TP_ROW, t->shard);
	t = need(ir, "model.layers.0.mlp.gate.weight");
	if (t)
		CHECK_EQ(IR_TRAIN_ROUTER, t->train);
	need(ir, "model.layers.0.self_attn.q_norm.weight");
	need(ir, "lm_head.weight");
	need(ir, "model.norm.weight");
	struct plan *p = plan_build(&s, ir);
	CHECK(p != NULL);
	if (p) {
		CHECK_EQ(484736, p->params.total);
		CHECK_EQ(189824, p->params.active);
		CHECK_EQ(157056, p->params.active_no_embed);
		CHECK_EQ(484736, p->params.trainable);
		CHECK_EQ(32768, p->params.embedding);
		CHECK_EQ(2 * 196608, p->params.routed);
	}
	plan_free(p);
	ir_free(ir);
}

/* Tiny spec on one H100, full training, bf16, selective recompute, micro-batch 2 x 128:
 *   T = 256 tokens, routed rows (dropless, balanced) T*K = 512, b = 2 bytes.
 *   weights 484736 * 2 = 969472; grads 484736 * 4 = 1938944; master the same;
 *   AdamW 484736 * 8 = 3877888.
 *   saved per token: global tokens 4 + labels 4 + final_resid 128 + rstd 4 + final_norm_out
 *   128 + ce_lse 4 = 272; attention per layer resid_in 128 + rstd 4 + q_proj_out 128 +
 *   k_proj_out 64 + qk rstd (4+2)*4 = 24 + v 64 + attn_out 128 + lse 16 + resid_mid 128 +
 *   rstd 4 = 688; MoE per layer logits 32 + ids 8 + weights 8 = 48; per routed row
 *   expert_in 128 + gate_up 512 + expert_out 128 = 768 (the SwiGLU output is rebuilt from
 *   gate_up).
 *   saved = 256 * (272 + 2 * (688 + 48)) + 2 * 512 * 768 = 446464 + 786432 = 1232896.
 *   working set (one layer rebuilt): attn_norm_out 128 + q_rope 128 + k_rope 64 +
 *   mlp_norm_out 128 = 448 per token -> 114688; expert_act 256 per row * 512 = 131072;
 *   residual gradients 2 * 256 * 128 = 65536 -> 311296. activations = 1544192.
 *   expert buffers: worst rows min(K, E/ep) * T * ep = 2 * 256 = 512; one rank (ep 1):
 *   gate_up, act and d(gate_up), row 3*128 + 2*128 = 640 elements -> 512 * 640 * 2 =
 *   655360; a2a buffers: the permuted rows' gradients only, 512 * 64 * 2 = 65536.
 *   workspace: CE chunk rows next_pow2(ceil(256 / ceil(512/64))) = 32, 32 * 512 * (4 + 2)
 *   = 98304; + 32 MiB + 1 GiB. */
static void test_tiny_memory(void)
{
	struct spec s;
	spec_tiny(&s);
	struct ir *ir = lower(&s);
	struct plan *p = ir ? plan_build(&s, ir) : NULL;
	CHECK(p != NULL);
	if (!p) {
		ir_free(ir);
		return;
	}
	const struct plan_memory *m = &p->memory;
	CHECK_EQ(969472, m->item[PLAN_MEM_WEIGHTS]);
	CHECK_EQ(1938944, m->item[PLAN_MEM_GRADS]);
	CHECK_EQ(1938944, m->item[PLAN_MEM_MASTER]);
	CHECK_EQ(3877888, m->item[PLAN_MEM_OPTIMIZER]);
	CHECK_EQ(1232896, m->act_saved);
	CHECK_EQ(311296, m->act_working);
	CHECK_EQ(1544192, m->item[PLAN_MEM_ACTIVATIONS]);
	CHECK_EQ(512, m->rows_worst);
	CHECK_EQ(655360, m->item[PLAN_MEM_EXPERT_BUFFERS]);
	CHECK_EQ(65536, m->item[PLAN_MEM_A2A_BUFFERS]);
	CHECK_EQ(32, m->ce_chunk_rows);
	CHECK_EQ(98304, m->ws_ce_chunk);
	CHECK_EQ(98304 + (32 << 20) + (1 << 30), m->item[PLAN_MEM_WORKSPACE]);
	CHECK_EQ(969472 + 1938944 + 1938944 + 3877888 + 1544192 + 655360 + 65536 + 98304 + (32 << 20) + (1 << 30), m->total);
	CHECK(m->fits);
	/* FLOPs per token: active matmul weights q,k,v,o 12288 + router 512 + 2 experts 49152
	 * = 61952 per layer, x2 + lm_head 32768 = 156672, all trained: 6x = 940032.
	 * Attention: 2 * NH 4 * (16 + 16) * (128 + 1) / 2 keys = 16512 per layer fwd, 2
	 * layers, 3x for fwd+bwd = 99072. */
	CHECK_NEAR(940032, p->compute.matmul_flops_per_token, 1e-12);
	CHECK_NEAR(99072, p->compute.attn_flops_per_token, 1e-12);
	/* Selective recompute reruns no GEMM (the SwiGLU output comes from the kept gate_up):
	 * the hardware does the model's FLOPs. */
	CHECK_NEAR(940032 + 99072, p->compute.hw_flops_per_token, 1e-12);
	CHECK_EQ(256, p->compute.tokens_per_step);
	/* Recompute full keeps only each layer's input: saved = 256 * (tokens 4 + labels 4 +
	 * final_resid 128 + ce_lse 4 + 2 * resid_in 128) = 256 * 396 = 101376. */
	s.train.recompute = RECOMPUTE_FULL;
	struct plan *pf = plan_build(&s, ir);
	CHECK(pf != NULL);
	if (pf)
		CHECK_EQ(101376, pf->memory.act_saved);
	plan_free(pf);
	/* Capacity factor 1.0: per expert ceil(1.0 * 256 * 1 * 2 / 8) = 64 rows, 8 local
	 * experts -> 512 rows, bounded. */
	s.train.recompute = RECOMPUTE_SELECTIVE;
	s.moe.capacity_factor = 1.0;
	struct plan *pc = plan_build(&s, ir);
	if (pc) {
		CHECK_EQ(512, pc->memory.rows_worst);
		CHECK(pc->memory.rows_bounded);
	}
	plan_free(pc);
	plan_free(p);
	ir_free(ir);
}

/* LoRA r=4 on q_proj, v_proj and the experts' gate_proj, base in nf4, router frozen. */
static void test_tiny_lora(void)
{
	struct spec s;
	spec_tiny(&s);
	char *targets[] = {"q_proj", "v_proj", "gate_proj"};
	s.train.mode = TRAIN_LORA;
	s.train.lora.rank = 4;
	s.train.lora.target_modules = (struct str_list){3, targets};
	s.train.train_router = false;
	s.train.base_dtype = DTYPE_NF4;
	struct ir *ir = lower(&s);
	CHECK(ir != NULL);
	if (!ir)
		return;
	const struct ir_tensor *a = need(ir, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
	const struct ir_tensor *b = need(ir, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
	const struct ir_tensor *ea = need(ir, "base_model.model.model.layers.1.mlp.experts.{e}.gate_proj.lora_A.weight");
	const struct ir_tensor *eb = need(ir, "base_model.model.model.layers.1.mlp.experts.{e}.gate_proj.lora_B.weight");
	if (a && b && ea && eb) {
		CHECK_EQ(4, a->shape[0]);
		CHECK_EQ(64, a->shape[1]);
		CHECK_EQ(32, b->shape[0]);
		CHECK_EQ(4, b->shape[1]);
		CHECK_EQ(IR_SHARD_TP_COLUMN, b->shard);
		CHECK_EQ(IR_SHARD_REPLICATED, a->shard);
		CHECK_EQ(8, ea->shape[0]);
		CHECK_EQ(4, ea->shape[1]);
		CHECK_EQ(64, ea->shape[2]);
		CHECK_EQ(128, eb->shape[1]);
		CHECK(ea->routed && eb->shard == IR_SHARD_EP);
	}
	const struct ir_tensor *q = need(ir, "model.layers.0.self_attn.q_proj.weight");
	const struct ir_tensor *k = need(ir, "model.layers.0.self_attn.k_proj.weight");
	const struct ir_tensor *r = need(ir, "model.layers.0.mlp.gate.weight");
	if (q && k && r) {
		CHECK_EQ(IR_TRAIN_LORA_BASE, q->train);
		CHECK_EQ(DTYPE_NF4, q->dtype);
		CHECK_EQ(IR_TRAIN_FROZEN, k->train);
		CHECK_EQ(DTYPE_NF4, k->dtype);
		CHECK_EQ(IR_TRAIN_FROZEN, r->train);
		CHECK_EQ(DTYPE_BF16, r->dtype);
		/* nf4: 4096 elements -> 2048 bytes + 64 blocks * 4 bytes absmax = 2304 */
		CHECK_EQ(2304, ir_dtype_bytes(q->dtype, ir_tensor_numel(q)));
	}
	struct plan *p = plan_build(&s, ir);
	if (p) {
		/* per layer: q A 4*64 + B 64*4 = 512; v A 256 + B 32*4 = 384;
		 * experts gate A 8*4*64 = 2048 + B 8*128*4 = 4096 -> 7040; 2 layers = 14080 */
		CHECK_EQ(14080, p->params.adapters);
		CHECK_EQ(14080, p->params.trainable);
		CHECK_EQ(484736, p->params.total);
		CHECK_EQ(14080 * 4, p->memory.item[PLAN_MEM_GRADS]);
		CHECK_EQ(14080 * 8, p->memory.item[PLAN_MEM_OPTIMIZER]);
	}
	plan_free(p);
	ir_free(ir);
}

/* Layer kinds: mlp_only_layers and decoder_sparse_step (Qwen), first_k_dense (DeepSeek). */
static void test_layer_kinds(void)
{
	struct spec s;
	spec_tiny(&s);
	int64_t only[] = {1};
	s.model.num_layers = 4;
	s.model.dense_intermediate_size = 96;
	s.model.decoder_sparse_step = 2; /* layers 1 and 3 are MoE by step ... */
	s.model.mlp_only_layers = (struct int_list){1, only}; /* ... but 1 is forced dense */
	struct ir *ir = lower(&s);
	if (ir) {
		CHECK(!ir->layers[0].moe && !ir->layers[1].moe && !ir->layers[2].moe && ir->layers[3].moe);
		CHECK_EQ(1, ir->n_moe_layers);
		const struct ir_tensor *t = need(ir, "model.layers.2.mlp.down_proj.weight");
		if (t) {
			CHECK_EQ(64, t->shape[0]);
			CHECK_EQ(96, t->shape[1]);
		}
	}
	ir_free(ir);
}

struct preset {
	const char *name;
	void (*fill)(struct spec *s);
	double total, total_ulp;   /* published total and its last digit */
	double active, active_ulp; /* published active per token (0 = not asserted) */
	int active_no_embed;       /* the published active figure excludes the input embedding */
};

static void print_counts(const char *name, const struct plan *p)
{
	printf("  %-16s total %8.3f B  active %7.3f B  active w/o embedding %7.3f B  trainable %8.3f B\n", name,
	       p->params.total / 1e9, p->params.active / 1e9, p->params.active_no_embed / 1e9, p->params.trainable / 1e9);
}

/* Published totals and active counts. DeepSeek-V3's 671B excludes the 14B MTP module,
 * which moec does not model. */
static void test_presets(void)
{
	static const struct preset presets[] = {
		/* Qwen's "3.3B activated" truncates the exact 3.353B (embedding + LM head + 48 *
		 * 56889600): within 1% fails, truncation holds. */
		{"Qwen3-30B-A3B", spec_qwen3_30b, 30.5e9, 0.1e9, 3.3e9, 0.1e9, 0},
		{"Qwen3-235B-A22B", spec_qwen3_235b, 235e9, 1e9, 22e9, 1e9, 0},
		{"Mixtral-8x7B", spec_mixtral, 46.7e9, 0.1e9, 12.9e9, 0.1e9, 0},
		/* DeepSeek's 37B matches the count without the input embedding (36.6B rounds to
		 * 37B; with it, 37.55B would round to 38B). */
		{"DeepSeek-V3", spec_deepseek_v3, 671e9, 1e9, 37e9, 1e9, 1},
		/* OpenAI's 5.1B active excludes the embedding, counts the unembedding. */
		{"GPT-OSS-120b", spec_gpt_oss_120b, 116.8e9, 0.1e9, 5.1e9, 0.1e9, 1},
	};
	printf("presets:\n");
	for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
		struct spec s;
		presets[i].fill(&s);
		struct ir *ir = lower(&s);
		struct plan *p = ir ? plan_build(&s, ir) : NULL;
		CHECK(p != NULL);
		if (p) {
			print_counts(presets[i].name, p);
			const struct preset *pr = &presets[i];
			CHECK_PUBLISHED(pr->total, pr->total_ulp, p->params.total);
			CHECK_PUBLISHED(pr->active, pr->active_ulp, pr->active_no_embed ? p->params.active_no_embed : p->params.active);
			CHECK_EQ(p->params.total, p->params.trainable);
		}
		plan_free(p);
		ir_free(ir);
	}
}

/* Family-specific names and shapes. */
static void test_family_names(void)
{
	struct spec s;
	spec_deepseek_v3(&s);
	struct ir *ir = lower(&s);
	if (ir) {
		const struct ir_tensor *t;
		CHECK_EQ(3, ir->n_dense_layers);
		if ((t = need(ir, "model.layers.0.mlp.gate_proj.weight")))
			CHECK_EQ(18432, t->shape[0]);
		if ((t = need(ir, "model.layers.3.self_attn.q_b_proj.weight")))
			CHECK_EQ(128 * 192, t->shape[0]);
		if ((t = need(ir, "model.layers.3.self_attn.kv_a_proj_with_mqa.weight")))
			CHECK_EQ(512 + 64, t->shape[0]);
		if ((t = need(ir, "model.layers.3.self_attn.kv_b_proj.weight")))
			CHECK_EQ(128 * (128 + 128), t->shape[0]);
		if ((t = need(ir, "model.layers.3.mlp.gate.e_score_correction_bias")))
			CHECK_EQ(IR_TRAIN_BUFFER, t->train);
		if ((t = need(ir, "model.layers.60.mlp.shared_experts.down_proj.weight")))
			CHECK_EQ(2048, t->shape[1]);
		need(ir, "model.layers.3.self_attn.q_a_layernorm.weight");
		need(ir, "model.layers.3.self_attn.kv_a_layernorm.weight");
		need(ir, "model.layers.3.mlp.experts.{e}.up_proj.weight");
		CHECK(ir_find(ir, "model.layers.2.mlp.gate.weight") == NULL);
	}
	ir_free(ir);
	s.model.q_lora_rank = 0;
	ir = lower(&s);
	if (ir)
		need(ir, "model.layers.0.self_attn.q_proj.weight");
	ir_free(ir);

	spec_mixtral(&s);
	ir = lower(&s);
	if (ir) {
		const struct ir_tensor *t = need(ir, "model.layers.31.block_sparse_moe.experts.{e}.w2.weight");
		if (t) {
			CHECK_EQ(4096, t->shape[1]);
			CHECK_EQ(14336, t->shape[2]);
		}
		need(ir, "model.layers.0.block_sparse_moe.gate.weight");
		need(ir, "model.layers.0.block_sparse_moe.experts.{e}.w1.weight");
		need(ir, "model.layers.0.block_sparse_moe.experts.{e}.w3.weight");
	}
	ir_free(ir);

	spec_gpt_oss_120b(&s);
	ir = lower(&s);
	if (ir) {
		const struct ir_tensor *t = need(ir, "model.layers.0.mlp.experts.gate_up_proj");
		if (t) {
			CHECK_EQ(128, t->shape[0]);
			CHECK_EQ(2880, t->shape[1]);
			CHECK_EQ(5760, t->shape[2]);
			CHECK(t->transposed && t->shard == IR_SHARD_EP);
		}
		if ((t = need(ir, "model.layers.0.mlp.experts.down_proj_bias")))
			CHECK(t->routed);
		if ((t = need(ir, "model.layers.0.self_attn.sinks")))
			CHECK_EQ(64, t->shape[0]);
		need(ir, "model.layers.0.mlp.router.weight");
		need(ir, "model.layers.0.mlp.router.bias");
		need(ir, "model.layers.0.self_attn.o_proj.bias");
		need(ir, "model.layers.35.mlp.experts.gate_up_proj_bias");
		CHECK_EQ(128, ir->layers[0].window);
		CHECK_EQ(0, ir->layers[1].window);
	}
	ir_free(ir);
}

/* 2 nodes x 8 GPUs, tp 2, ep 8 (Qwen3-30B-A3B, 128 experts): attention TP pairs, dp 8;
 * experts EP 8 inside each node (16 experts per rank), EDP 2 across nodes. */
static void test_layout_16(void)
{
	struct spec s;
	spec_qwen3_30b(&s);
	s.parallel.nodes = 2;
	s.parallel.gpus_per_node = 8;
	s.parallel.tp = 2;
	s.parallel.ep = 8;
	struct ir *ir = lower(&s);
	struct plan *p = ir ? plan_build(&s, ir) : NULL;
	CHECK(p != NULL);
	if (!p) {
		ir_free(ir);
		return;
	}
	const struct plan_layout *l = &p->layout;
	CHECK_EQ(16, l->world);
	CHECK_EQ(8, l->dp);
	CHECK_EQ(2, l->edp);
	CHECK_EQ(16, l->experts_per_rank);
	const struct plan_rank *r5 = &l->ranks[5], *r13 = &l->ranks[13];
	CHECK_EQ(0, r5->node);
	CHECK_EQ(5, r5->local_gpu);
	CHECK_EQ(1, r5->tp);
	CHECK_EQ(2, r5->dp);
	CHECK_EQ(5, r5->ep);
	CHECK_EQ(0, r5->edp);
	CHECK_EQ(80, r5->expert_first);
	CHECK_EQ(95, r5->expert_last);
	CHECK_EQ(1, r13->node);
	CHECK_EQ(5, r13->local_gpu);
	CHECK_EQ(6, r13->dp);
	CHECK_EQ(5, r13->ep);
	CHECK_EQ(1, r13->edp);
	CHECK_EQ(80, r13->expert_first);
	CHECK_EQ(0, l->ranks[8].expert_first);
	CHECK_EQ(127, l->ranks[15].expert_last);
	/* groups: tp {6,7}; dp {1,3,...,15}; ep {8..15}; edp {3,11} */
	CHECK_EQ(8, l->tp_groups.count);
	CHECK_EQ(6, l->tp_groups.ranks[3 * 2 + 0]);
	CHECK_EQ(7, l->tp_groups.ranks[3 * 2 + 1]);
	CHECK_EQ(2, l->dp_groups.count);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(2 * i + 1, l->dp_groups.ranks[1 * 8 + i]);
	CHECK_EQ(2, l->ep_groups.count);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(8 + i, l->ep_groups.ranks[1 * 8 + i]);
	CHECK_EQ(8, l->edp_groups.count);
	CHECK_EQ(3, l->edp_groups.ranks[3 * 2 + 0]);
	CHECK_EQ(11, l->edp_groups.ranks[3 * 2 + 1]);
	CHECK(l->tp_groups.all_in_domain);
	CHECK(l->ep_groups.all_in_domain);
	CHECK(!l->dp_groups.all_in_domain);
	CHECK(!l->edp_groups.all_in_domain);
	CHECK(p->comm.a2a_in_domain);
	CHECK(p->comm.edp_bytes > 0 && p->comm.tp_bytes > 0 && p->comm.a2a_bytes > 0);

	/* JSON is valid and carries the keys tools read; text carries the verdict. */
	char *json = report_capture(&s, ir, p, 1);
	CHECK(json && json_valid(json));
	CHECK(json && strstr(json, "\"layout\":{\"world\":16,"));
	CHECK(json && strstr(json, "\"experts\":[0,15]"));
	CHECK(json && strstr(json, "\"active_no_embed\":"));
	CHECK(json && strstr(json, "\"fits\":"));
	free(json);
	char *text = report_capture(&s, ir, p, 0);
	CHECK(text && strstr(text, "verdict"));
	CHECK(text && strstr(text, "... 12 more ranks"));
	free(text);

	/* ep 16 spans both nodes: EP groups leave the NVLink domain. */
	s.parallel.ep = 16;
	struct plan *p16 = plan_build(&s, ir);
	if (p16)
		CHECK(!p16->layout.ep_groups.all_in_domain && !p16->comm.a2a_in_domain);
	plan_free(p16);
	/* impossible layouts are refused */
	s.parallel.ep = 3;
	CHECK(plan_build(&s, ir) == NULL);
	plan_free(p);
	ir_free(ir);
}

/* The figure the lead asked for: Qwen3-30B-A3B, full training, 8 x H100, EP 8, seq 4096,
 * micro-batch 1. Printed (and sanity-checked) with and without shard_optimizer. */
static void test_qwen3_30b_8xh100(void)
{
	for (int shard = 0; shard <= 1; shard++) {
		struct spec s;
		spec_qwen3_30b(&s);
		s.parallel.gpus_per_node = 8;
		s.parallel.ep = 8;
		s.parallel.shard_optimizer = shard;
		struct ir *ir = lower(&s);
		struct plan *p = ir ? plan_build(&s, ir) : NULL;
		CHECK(p != NULL);
		if (p) {
			printf("\nQwen3-30B-A3B full, 8xH100, ep 8, shard_optimizer %s:\n", shard ? "true" : "false");
			report_plan_text(stdout, &s, ir, p, 0);
			/* a JSON dump with no rank list is valid too */
			char *json = report_capture(&s, ir, p, 1);
			CHECK(json && json_valid(json));
			free(json);
			CHECK(p->memory.item[PLAN_MEM_WEIGHTS] > 0);
		}
		plan_free(p);
		ir_free(ir);
	}
}

/* report_verdict: quiet and true when it fits, an error and false when it does not;
 * every report tolerates a NULL plan. */
static void test_verdict(void)
{
	struct spec s;
	spec_tiny(&s);
	struct ir *ir = lower(&s);
	struct plan *p = ir ? plan_build(&s, ir) : NULL;
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	diag_set_stream(f);
	CHECK(report_verdict(&s, p));
	fflush(f);
	CHECK_EQ(0, n);
	plan_free(p);
	ir_free(ir);

	spec_qwen3_30b(&s); /* full training on 8 x H100: does not fit (see the printout) */
	s.parallel.gpus_per_node = 8;
	s.parallel.ep = 8;
	ir = lower(&s);
	p = ir ? plan_build(&s, ir) : NULL;
	CHECK(!report_verdict(&s, p));
	CHECK(!report_verdict(&s, NULL));
	report_plan_text(f, &s, ir, NULL, 4);
	diag_set_stream(NULL);
	diag_reset_counts();
	fclose(f);
	CHECK(buf && strstr(buf, "does not fit") && strstr(buf, "moec: note: "));
	free(buf);
	buf = NULL;
	f = open_memstream(&buf, &n);
	report_plan_json(f, &s, ir, NULL);
	fclose(f);
	CHECK(buf && strcmp(buf, "null") == 0);
	free(buf);
	plan_free(p);
	ir_free(ir);
}

/* The largest sizes the schema allows: figures saturate at INT64_MAX, nothing overflows
 * (run under -fsanitize=undefined to see it). */
static void test_extremes(void)
{
	struct spec s;
	spec_tiny(&s);
	s.model.hidden_size = 1 << 20;
	s.model.num_layers = 64;
	s.model.num_heads = 4096;
	s.model.num_kv_heads = 4096;
	s.model.head_dim = 4096;
	s.model.vocab_size = 1 << 24;
	s.moe.num_experts = 1 << 16;
	s.moe.top_k = 1 << 16;
	s.moe.moe_intermediate_size = 1 << 24;
	s.train.seq_len = 1 << 24;
	s.train.micro_batch = 1 << 20;
	s.train.grad_accum = 1 << 20;
	struct ir *ir = lower(&s);
	struct plan *p = ir ? plan_build(&s, ir) : NULL;
	CHECK(p != NULL);
	if (p) {
		CHECK_EQ(INT64_MAX, p->memory.total);
		CHECK(!p->memory.fits);
		char *json = report_capture(&s, ir, p, 1);
		CHECK(json && json_valid(json));
		free(json);
	}
	plan_free(p);
	ir_free(ir);
}

int main(void)
{
	test_tiny_params();
	test_tiny_memory();
	test_tiny_lora();
	test_layer_kinds();
	test_presets();
	test_family_names();
	test_layout_16();
	test_qwen3_30b_8xh100();
	test_verdict();
	test_extremes();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}

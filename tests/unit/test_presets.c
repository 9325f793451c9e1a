/* test_presets.c - the presets in models/, loaded the way users load them (spec_parse),
 * against (1) parameter counts computed here from the config numbers alone, independently
 * of lower.c's tensor list, and (2) the vendors' published totals and active counts.
 *
 * Published figures are rounded: "3.3B" stands for some value in [3.25, 3.4). Where the
 * exact count is more than 1% from the printed figure only because of that rounding
 * (Qwen3-30B-A3B's 3.353B active, DeepSeek-V3's 36.63B), the test accepts the published
 * digit's rounding interval and says so. Conventions differ too: Qwen and Mistral count
 * the input embedding in "active", OpenAI (GPT-OSS) and DeepSeek do not.
 */
#include <stdlib.h>

#include "check.h"
#include "diag.h"
#include "lower.h"
#include "parse.h"
#include "plan.h"
#include "testing.h"

struct counts {
	double total, active, active_no_embed;
};

/* Parameters of one GQA attention block (+ its two norms). */
static double gqa_attention(const struct spec *s)
{
	const struct model_spec *m = &s->model;
	double q = (double)m->num_heads * m->head_dim, kv = (double)m->num_kv_heads * m->head_dim, h = (double)m->hidden_size;
	double n = 2 * h * q + 2 * h * kv + 2 * h;     /* q, o, k, v weights; input + post norms */
	if (m->qk_norm)
		n += 2.0 * m->head_dim;
	if (m->attention_bias)
		n += q + 2 * kv + h;
	if (m->attention_sinks)
		n += (double)m->num_heads;
	return n;
}

static double mla_attention(const struct spec *s)
{
	const struct model_spec *m = &s->model;
	double h = (double)m->hidden_size, nh = (double)m->num_heads;
	double ql = (double)m->q_lora_rank, kvl = (double)m->kv_lora_rank;
	double nope = (double)m->qk_nope_head_dim, rope = (double)m->qk_rope_head_dim, vhd = (double)m->v_head_dim;
	return h * ql + ql + ql * nh * (nope + rope)   /* q_a, q_a_layernorm, q_b */
	       + h * (kvl + rope) + kvl                /* kv_a_proj_with_mqa, kv_a_layernorm */
	       + kvl * nh * (nope + vhd)               /* kv_b */
	       + nh * vhd * h + 2 * h;                 /* o, input + post norms */
}

static struct counts expected(const struct spec *s)
{
	const struct model_spec *m = &s->model;
	const struct moe_spec *e = &s->moe;
	double h = (double)m->hidden_size, v = (double)m->vocab_size, E = (double)e->num_experts, I = (double)e->moe_intermediate_size;
	double attn = m->attention == ATTENTION_MLA ? mla_attention(s) : gqa_attention(s);
	double expert = 3 * h * I + (e->expert_bias ? 2 * I + h : 0);
	double router = E * h + (e->router_bias ? E : 0);
	double shared = 3 * h * (double)(e->num_shared_experts * e->shared_expert_intermediate_size);
	double dense_mlp = 3 * h * (double)m->dense_intermediate_size;
	double dense_layers = (double)m->first_k_dense, moe_layers = (double)(m->num_layers - m->first_k_dense);
	double embed = v * h, head = m->tie_embeddings ? 0 : v * h;
	struct counts c;
	c.total = embed + head + h + dense_layers * (attn + dense_mlp) + moe_layers * (attn + router + shared + E * expert);
	c.active = embed + head + h + dense_layers * (attn + dense_mlp) + moe_layers * (attn + router + shared + (double)e->top_k * expert);
	c.active_no_embed = c.active - embed + (m->tie_embeddings ? v * h : 0);
	return c;
}

/* |got - pub| <= 1%, or got lies in the rounding interval of pub's last digit. */
static int near_published(double got, double pub, double ulp)
{
	return fabs(got - pub) <= 0.01 * pub || (got >= pub - ulp / 2 && got < pub + ulp);
}

struct case_ {
	const char *file;
	double total, total_ulp, active, active_ulp;
	int active_excludes_embedding;
};

int main(void)
{
	static const struct case_ cases[] = {
		{"models/qwen3_30b_a3b.yaml", 30.5e9, 0.1e9, 3.3e9, 0.1e9, 0},
		{"models/qwen3_235b_a22b.yaml", 235e9, 1e9, 22e9, 1e9, 0},
		{"models/mixtral_8x7b.yaml", 46.7e9, 0.1e9, 12.9e9, 0.1e9, 0},
		{"models/deepseek_v3.yaml", 671e9, 1e9, 37e9, 1e9, 1},
		{"models/gpt_oss_120b.yaml", 116.8e9, 0.1e9, 5.1e9, 0.1e9, 1},
		{"models/gpt_oss_20b.yaml", 20.9e9, 0.1e9, 3.6e9, 0.1e9, 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct case_ *c = &cases[i];
		struct spec s;
		int errors = spec_parse(&s, c->file, NULL);
		if (!errors)
			errors = spec_check(&s);
		EXPECT_INT(errors, 0);
		if (errors)
			continue;
		struct ir *ir = lower(&s);
		struct plan *p = ir ? plan_build(&s, ir) : NULL;
		EXPECT(p != NULL);
		if (p) {
			struct counts want = expected(&s);
			double active = c->active_excludes_embedding ? (double)p->params.active_no_embed : (double)p->params.active;
			printf("%-30s total %10.3f B (published %.1f)  active %7.3f B (published %.1f)\n", c->file,
			       p->params.total / 1e9, c->total / 1e9, active / 1e9, c->active / 1e9);
			EXPECT_NEAR(p->params.total, want.total, 1e-12);
			EXPECT_NEAR(p->params.active, want.active, 1e-12);
			EXPECT_NEAR(p->params.active_no_embed, want.active_no_embed, 1e-12);
			EXPECT(near_published((double)p->params.total, c->total, c->total_ulp));
			EXPECT(near_published(active, c->active, c->active_ulp));
		}
		plan_free(p);
		ir_free(ir);
		spec_free(&s);
		diag_free_sources();
	}
	return testing_report();
}

/* test_attention_bf16.c - the bf16 attention twins (attention_fwd, attention_bwd_pre,
 * attention_bwd; ACT_BF16=1) against the double-precision reference in attention_ref.h,
 * evaluated on the same bf16-rounded inputs, and against central finite differences of it.
 * The bf16 twins compute in fp32 (they convert each head first), so they differ from the
 * fp32 twins only by the rounding of what they store; same shapes and cases as
 * test_attention_f32.c. */
#include "attention_ref.h"

#define ACT_BF16 1
#define BLOCK_M 64 /* GPU tile sizes: part of every instance's constants, unused by twins */
#define BLOCK_N 64

#include "attention_instances.h"

/* Tolerances, bf16 twins against double math on the same (bf16) inputs. out, dq, dk, dv
 * are stored in bf16 (8 significant bits): round to nearest even is within 2^-8 relative,
 * on top of the fp32 error (~1e-6, see test_attention_f32.c); lse stays fp32. dq, dk, dv
 * also inherit delta = rowsum(dout * out) taken from the bf16-rounded out (as on the GPU),
 * an error of up to ~2^-8 |delta| in every dS term, absorbed by the absolute term. */
static const struct attn_tols attn_tols = {
	.o_atol = 1e-4, .o_rtol = 8e-3,    /* 2^-7: twice the bf16 unit roundoff */
	.lse_atol = 4e-6, .lse_rtol = 1e-6, /* fp32, as in test_attention_f32.c */
	.grad_atol = 8e-3, .grad_rtol = 8e-3,
};

#include "attention_twin_cases.h"

static const struct attn_inst insts[] = {
	{"bf16_h2_kv2_d16", 2, 2, 16, attn_fwd_h2_kv2_d16, attn_pre_h2_kv2_d16, attn_bwd_h2_kv2_d16},
	{"bf16_h4_kv2_d32", 4, 2, 32, attn_fwd_h4_kv2_d32, attn_pre_h4_kv2_d32, attn_bwd_h4_kv2_d32},
	{"bf16_h4_kv1_d64", 4, 1, 64, attn_fwd_h4_kv1_d64, attn_pre_h4_kv1_d64, attn_bwd_h4_kv1_d64},
	{"bf16_h8_kv2_d16", 8, 2, 16, attn_fwd_h8_kv2_d16, attn_pre_h8_kv2_d16, attn_bwd_h8_kv2_d16},
};

int main(void)
{
	const struct attn_inst *r1 = &insts[0], *tiny = &insts[1], *r4 = &insts[2], *r4s = &insts[3];
	static const int lens_a[] = {30, 1, 45, 24};
	static const int lens_b[] = {64, 64, 72};
	static const int lens_c[] = {1};

	/* forward + backward against the analytic double reference; finite differences
	 * (0: every element, n: n sampled elements per tensor) */
	attn_case(r1, 1, 1, 8, NULL, 0, 1.0, 0, 1);
	attn_case(r1, 37, 37, 37, NULL, 0, 1.0, 0, 2);        /* one document, every gradient by FD */
	attn_case(r4s, 24, 24, 6, NULL, 0, 1.5, 0, 3);        /* GQA 4, random documents, every gradient by FD */
	attn_case(tiny, 100, 100, 0, lens_a, 4, 1.0, 48, 4);  /* a one-token document among others */
	attn_case(tiny, 130, 65, 40, NULL, 0, 2.0, 48, 5);    /* peaky softmax, two packed rows */
	attn_case(r4, 77, 77, 20, NULL, 0, 1.0, 32, 6);       /* GQA 4, HD 64 */
	attn_case(r4s, 200, 200, 0, lens_b, 3, 1.0, 32, 7);   /* boundaries on block edges */
	attn_case(r1, 50, 50, 0, lens_c, 1, 1.0, 32, 8);      /* every token its own document */
	attn_case(tiny, 300, 300, 0, (const int[]){300}, 1, 1.0, 6, 9); /* T > the CPU block, one document */
	attn_case(r4, 129, 129, 129, NULL, 0, 1.0, 16, 10);
	attn_empty(tiny);

	/* the tiny example: 4 rows of 256 packed with documents */
	attn_case(tiny, 1024, 256, 120, NULL, 0, 1.0, 16, 11);
	attn_time(tiny, 1024, 256, 120, 20);
	attn_time(tiny, 1024, 256, 100000, 20); /* one document per row */
	return testing_report();
}

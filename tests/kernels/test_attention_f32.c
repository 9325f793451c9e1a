/* test_attention_f32.c - the fp32 attention twins (attention_fwd, attention_bwd_pre,
 * attention_bwd; ACT_BF16=0) against the double-precision reference in attention_ref.h and
 * central finite differences of it: GQA ratios 1, 2, 4; HD 16, 32, 64; T not a multiple of
 * the CPU block (64) nor of the GPU tiles; one token; one document, many, one-token
 * documents, boundaries on and off block edges; and the tiny example's shape (T = 1024 =
 * 4 x 256 packed, NH 4, NKV 2, HD 32), timed. */
#include <time.h>

#include "attention_ref.h"

#define ACT_BF16 0
#define BLOCK_M 64 /* GPU tile sizes: part of every instance's constants, unused by twins */
#define BLOCK_N 32

#include "attention_instances.h"

/* Tolerances, fp32 twins against double math. The scores are fp32 dot products of length
 * HD <= 64 (relative rounding ~ sqrt(HD) * 2^-24 ~ 5e-7 of sum |q_d k_d|), the softmax
 * sums at most T fp32 terms in [0, 1], and every output is a convex (forward) or short
 * (backward) combination of those, so errors stay near 1e-6 of the tensor's scale (measured:
 * <= 4e-7 forward, <= 1e-6 backward); the bounds leave room for another BLAS's summation
 * order. The finite differences (double, step 1e-4) are accurate to ~1e-8 relative. */
static const struct attn_tols attn_tols = {
	.o_atol = 4e-6, .o_rtol = 4e-6,       /* of max |o| */
	.lse_atol = 4e-6, .lse_rtol = 1e-6,   /* lse ~ log(document length) + max score */
	.grad_atol = 2e-5, .grad_rtol = 2e-5, /* of max |grad|: dS sums up to T products */
};

#include "attention_twin_cases.h"

static const struct attn_inst insts[] = {
	{"h2_kv2_d16", 2, 2, 16, attn_fwd_h2_kv2_d16, attn_pre_h2_kv2_d16, attn_bwd_h2_kv2_d16},
	{"h4_kv2_d32", 4, 2, 32, attn_fwd_h4_kv2_d32, attn_pre_h4_kv2_d32, attn_bwd_h4_kv2_d32},
	{"h4_kv1_d64", 4, 1, 64, attn_fwd_h4_kv1_d64, attn_pre_h4_kv1_d64, attn_bwd_h4_kv1_d64},
	{"h8_kv2_d16", 8, 2, 16, attn_fwd_h8_kv2_d16, attn_pre_h8_kv2_d16, attn_bwd_h8_kv2_d16},
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

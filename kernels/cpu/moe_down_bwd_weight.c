/* moe_down_bwd_weight.c - CPU twin of moe_down_bwd_weight.cu: dw_down[e] += dy_e^T h_e (fp32).
 * moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES
 *
 * E = E_LOCAL experts, rows = rows of the permuted buffer; TILE_* / STAGES unused here.
 * Shapes: dy [rows, H] act_t, h [rows, I] act_t, offsets [E+1] int,
 *         dw_down [E, H, I] float, accumulated into (an expert with no rows is untouched).
 * One cblas_sgemm (beta = 1) per non-empty expert; bf16 converts dy_e and h_e first.
 * Scratch (bf16 only): max_e(rows_e) * (H + I) floats. */
#include "moec_host.h"
#include "moe_gemm_host.h"

_Static_assert(E_LOCAL > 0 && H > 0 && I > 0, "moe_down_bwd_weight: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *dy, const act_t *h, const int *offsets, float *dw_down, int rows)
{
	const int maxr = moe_host_max_rows(offsets, E_LOCAL, rows);
	if (maxr == 0)
		return;
	float *db = NULL, *hb = NULL;
#if ACT_BF16
	db = moe_host_alloc(sizeof(float) * (size_t)maxr * H, "moe_down_bwd_weight");
	hb = moe_host_alloc(sizeof(float) * (size_t)maxr * I, "moe_down_bwd_weight");
#endif
	for (int e = 0; e < E_LOCAL; e++) {
		int r0, r1;
		const int n = moe_host_range(offsets, e, rows, &r0, &r1);
		if (n == 0)
			continue;
		const float *da = moe_host_f32(dy + (size_t)r0 * H, (size_t)n * H, db);
		const float *ha = moe_host_f32(h + (size_t)r0 * I, (size_t)n * I, hb);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, I, n, 1.f, da, H, ha, I, 1.f,
		            dw_down + (size_t)e * H * I, I);
	}
	free(db);
	free(hb);
}

/* moe_down_bwd_weight.c - CPU twin of moe_down_bwd_weight.cu: dw_down[e] (+)= dy_e^T h_e (fp32).
 * moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES
 *
 * E = E_LOCAL experts, rows = rows of the permuted buffer; TILE_* / STAGES unused here.
 * Shapes: dy [rows, H] act_t, h [rows, I] act_t, offsets [E+1] int,
 *         dw_down [E, H, I] float: added to when accumulate != 0 (an expert with no rows
 *         untouched), overwritten when accumulate == 0 (an expert with no rows writes zeros).
 * One cblas_sgemm per non-empty expert (beta = 1 adding, 0 overwriting: moe_host_weight_grad);
 * bf16 converts the expert's rows first.
 * Scratch (bf16 only): max_e(rows_e) * (H + I) floats. */
#include "moec_host.h"
#include "moe_gemm_host.h"

_Static_assert(E_LOCAL > 0 && H > 0 && I > 0, "moe_down_bwd_weight: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *dy, const act_t *h, const int *offsets, float *dw_down, int rows, int accumulate)
{
	const int maxr = moe_host_max_rows(offsets, E_LOCAL, rows);
	if (maxr == 0 && accumulate) /* nothing to add; overwriting writes zeros */
		return;
	float *db = NULL, *hb = NULL;
#if ACT_BF16
	db = moe_host_alloc(sizeof(float) * (size_t)maxr * H, "moe_down_bwd_weight");
	hb = moe_host_alloc(sizeof(float) * (size_t)maxr * I, "moe_down_bwd_weight");
#endif
	for (int e = 0; e < E_LOCAL; e++) {
		int r0, r1;
		const int n = moe_host_range(offsets, e, rows, &r0, &r1);
		const float *da = moe_host_f32(dy + (size_t)r0 * H, (size_t)n * H, db);
		const float *ha = moe_host_f32(h + (size_t)r0 * I, (size_t)n * I, hb);
		moe_host_weight_grad(H, I, n, da, ha, dw_down + (size_t)e * H * I, accumulate);
	}
	free(db);
	free(hb);
}

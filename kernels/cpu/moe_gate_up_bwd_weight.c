/* moe_gate_up_bwd_weight.c - CPU twin of moe_gate_up_bwd_weight.cu: dw_gate_up[e] (+)= dgu_e^T x_e (fp32).
 * moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES
 *
 * E = E_LOCAL experts, rows = rows of the permuted buffer; TILE_* / STAGES unused here.
 * Shapes: dgu [rows, 2I] act_t, x [rows, H] act_t, offsets [E+1] int,
 *         dw_gate_up [E, 2I, H] float: added to when accumulate != 0 (an expert with no rows
 *         untouched), overwritten when accumulate == 0 (an expert with no rows writes zeros).
 * One cblas_sgemm per non-empty expert (beta = 1 adding, 0 overwriting: moe_host_weight_grad);
 * bf16 converts the expert's rows first.
 * Scratch (bf16 only): max_e(rows_e) * (2I + H) floats. */
#include "moec_host.h"
#include "moe_gemm_host.h"

_Static_assert(E_LOCAL > 0 && H > 0 && I > 0, "moe_gate_up_bwd_weight: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *dgu, const act_t *x, const int *offsets, float *dw_gate_up, int rows, int accumulate)
{
	const int maxr = moe_host_max_rows(offsets, E_LOCAL, rows);
	if (maxr == 0 && accumulate) /* nothing to add; overwriting writes zeros */
		return;
	float *gb = NULL, *xb = NULL;
#if ACT_BF16
	gb = moe_host_alloc(sizeof(float) * (size_t)maxr * 2 * I, "moe_gate_up_bwd_weight");
	xb = moe_host_alloc(sizeof(float) * (size_t)maxr * H, "moe_gate_up_bwd_weight");
#endif
	for (int e = 0; e < E_LOCAL; e++) {
		int r0, r1;
		const int n = moe_host_range(offsets, e, rows, &r0, &r1);
		const float *ga = moe_host_f32(dgu + (size_t)r0 * 2 * I, (size_t)n * 2 * I, gb);
		const float *xa = moe_host_f32(x + (size_t)r0 * H, (size_t)n * H, xb);
		moe_host_weight_grad(2 * I, H, n, ga, xa, dw_gate_up + (size_t)e * 2 * I * H, accumulate);
	}
	free(gb);
	free(xb);
}

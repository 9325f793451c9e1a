/* moe_gate_up_bwd_data.c - CPU twin of moe_gate_up_bwd_data.cu: per expert dx_e = dgu_e w_gate_up[e].
 * moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES
 *
 * E = E_LOCAL experts, rows = rows of the permuted buffer; TILE_* / STAGES unused here.
 * Shapes: dgu [rows, 2I] act_t, w_gate_up [E, 2I, H] act_t, offsets [E+1] int, dx [rows, H] act_t.
 * One cblas_sgemm per non-empty expert (K = 2I), straight into dx on the fp32 path; bf16
 * converts dgu_e and w_gate_up[e] to fp32 and rounds dx once.
 * Scratch (bf16 only): max_e(rows_e) * (2I + H) + 2I * H floats. */
#include "moec_host.h"
#include "moe_gemm_host.h"

_Static_assert(E_LOCAL > 0 && H > 0 && I > 0, "moe_gate_up_bwd_data: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *dgu, const act_t *w_gate_up, const int *offsets, act_t *dx, int rows)
{
	const int maxr = moe_host_max_rows(offsets, E_LOCAL, rows);
	if (maxr == 0)
		return;
	float *gb = NULL, *wb = NULL, *xb = NULL;
#if ACT_BF16
	gb = moe_host_alloc(sizeof(float) * (size_t)maxr * 2 * I, "moe_gate_up_bwd_data");
	wb = moe_host_alloc(sizeof(float) * (size_t)2 * I * H, "moe_gate_up_bwd_data");
	xb = moe_host_alloc(sizeof(float) * (size_t)maxr * H, "moe_gate_up_bwd_data");
#endif
	for (int e = 0; e < E_LOCAL; e++) {
		int r0, r1;
		const int n = moe_host_range(offsets, e, rows, &r0, &r1);
		if (n == 0)
			continue;
		const float *ga = moe_host_f32(dgu + (size_t)r0 * 2 * I, (size_t)n * 2 * I, gb);
		const float *wa = moe_host_f32(w_gate_up + (size_t)e * 2 * I * H, (size_t)2 * I * H, wb);
#if ACT_BF16
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H, 2 * I, 1.f, ga, 2 * I, wa, H, 0.f, xb, H);
		moe_host_store(dx + (size_t)r0 * H, xb, (size_t)n * H);
#else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H, 2 * I, 1.f, ga, 2 * I, wa, H, 0.f,
		            dx + (size_t)r0 * H, H);
#endif
	}
	free(gb);
	free(wb);
	free(xb);
}

/* moe_down_fwd.c - CPU twin of moe_down_fwd.cu: per expert y_e = h_e w_down[e]^T.
 * moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES
 *
 * E = E_LOCAL experts, rows = rows of the permuted buffer; TILE_* / STAGES unused here.
 * Shapes: h [rows, I] act_t, w_down [E, H, I] act_t, offsets [E+1] int, y [rows, H] act_t.
 * One cblas_sgemm per non-empty expert, straight into y on the fp32 path; the bf16 path
 * converts h_e and w_down[e] to fp32 and rounds y once.
 * Scratch (bf16 only): max_e(rows_e) * (I + H) + H * I floats. */
#include "moec_host.h"
#include "moe_gemm_host.h"

_Static_assert(E_LOCAL > 0 && H > 0 && I > 0, "moe_down_fwd: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *h, const act_t *w_down, const int *offsets, act_t *y, int rows)
{
	const int maxr = moe_host_max_rows(offsets, E_LOCAL, rows);
	if (maxr == 0)
		return;
	float *hb = NULL, *wb = NULL, *yb = NULL;
#if ACT_BF16
	hb = moe_host_alloc(sizeof(float) * (size_t)maxr * I, "moe_down_fwd");
	wb = moe_host_alloc(sizeof(float) * (size_t)H * I, "moe_down_fwd");
	yb = moe_host_alloc(sizeof(float) * (size_t)maxr * H, "moe_down_fwd");
#endif
	for (int e = 0; e < E_LOCAL; e++) {
		int r0, r1;
		const int n = moe_host_range(offsets, e, rows, &r0, &r1);
		if (n == 0)
			continue;
		const float *ha = moe_host_f32(h + (size_t)r0 * I, (size_t)n * I, hb);
		const float *wa = moe_host_f32(w_down + (size_t)e * H * I, (size_t)H * I, wb);
#if ACT_BF16
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, I, 1.f, ha, I, wa, I, 0.f, yb, H);
		moe_host_store(y + (size_t)r0 * H, yb, (size_t)n * H);
#else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, I, 1.f, ha, I, wa, I, 0.f, y + (size_t)r0 * H, H);
#endif
	}
	free(hb);
	free(wb);
	free(yb);
}

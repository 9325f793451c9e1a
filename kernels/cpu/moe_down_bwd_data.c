/* moe_down_bwd_data.c - CPU twin of moe_down_bwd_data.cu: dh_e = dy_e w_down[e], then SwiGLU backward into dgu.
 * moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES
 *
 * E = E_LOCAL experts, rows = rows of the permuted buffer; TILE_* / STAGES unused here.
 * Shapes: dy [rows, H] act_t, w_down [E, H, I] act_t, gu [rows, 2I] act_t (gate | up),
 *         offsets [E+1] int, dgu [rows, 2I] act_t (dgate | dup).
 * With s = sigmoid(gate): dgate = dh * up * s * (1 + gate * (1 - s)), dup = dh * gate * s,
 * dh in fp32 (never rounded, as in the kernel's fused epilogue). One cblas_sgemm per
 * non-empty expert into an fp32 [rows_e, I] scratch; bf16 converts dy_e and w_down[e] first.
 * Scratch: max_e(rows_e) * I floats (+ bf16: max_e(rows_e) * H + H * I floats). */
#include "moec_host.h"
#include "moe_gemm_host.h"

_Static_assert(E_LOCAL > 0 && H > 0 && I > 0, "moe_down_bwd_data: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *dy, const act_t *w_down, const act_t *gu, const int *offsets, act_t *dgu, int rows)
{
	const int maxr = moe_host_max_rows(offsets, E_LOCAL, rows);
	if (maxr == 0)
		return;
	float *dh = moe_host_alloc(sizeof(float) * (size_t)maxr * I, "moe_down_bwd_data");
	float *db = NULL, *wb = NULL;
#if ACT_BF16
	db = moe_host_alloc(sizeof(float) * (size_t)maxr * H, "moe_down_bwd_data");
	wb = moe_host_alloc(sizeof(float) * (size_t)H * I, "moe_down_bwd_data");
#endif
	for (int e = 0; e < E_LOCAL; e++) {
		int r0, r1;
		const int n = moe_host_range(offsets, e, rows, &r0, &r1);
		if (n == 0)
			continue;
		const float *da = moe_host_f32(dy + (size_t)r0 * H, (size_t)n * H, db);
		const float *wa = moe_host_f32(w_down + (size_t)e * H * I, (size_t)H * I, wb);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, I, H, 1.f, da, H, wa, I, 0.f, dh, I);
		for (int r = 0; r < n; r++) {
			const act_t *gr = gu + (size_t)(r0 + r) * 2 * I;
			act_t *dr = dgu + (size_t)(r0 + r) * 2 * I;
			const float *dhr = dh + (size_t)r * I;
			for (int j = 0; j < I; j++) {
				const float g = act_load(gr + j), u = act_load(gr + I + j), s = moe_host_sigmoid(g);
				act_store(dr + j, dhr[j] * u * s * (1.f + g * (1.f - s)));
				act_store(dr + I + j, dhr[j] * g * s);
			}
		}
	}
	free(dh);
	free(db);
	free(wb);
}

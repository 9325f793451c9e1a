/* moe_gate_up_fwd.c - CPU twin of moe_gate_up_fwd.cu: per expert gu = x_e w_gate_up[e]^T, h = silu(gate) * up.
 * moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES
 *
 * E = E_LOCAL experts, rows = rows of the permuted buffer; the TILE_* / STAGES constants
 * are the GPU tiling and unused here.
 * Shapes: x [rows, H] act_t (expert e owns rows offsets[e]..offsets[e+1]),
 *         w_gate_up [E, 2I, H] act_t (rows 0..I-1 gate, I..2I-1 up), offsets [E+1] int,
 *         h [rows, I] act_t, gu [rows, 2I] act_t (may be NULL: not stored).
 * One cblas_sgemm per non-empty expert into an fp32 [rows_e, 2I] scratch, then SwiGLU from
 * gate/up rounded to act_t (swiglu_host.h, as the kernel's epilogue does: h is a function of
 * gu, which swiglu_fwd rebuilds it from); gu rounded once. The
 * bf16 path converts x_e and w_gate_up[e] to fp32 first.
 * Scratch: max_e(rows_e) * 2I floats (+ bf16: max_e(rows_e) * H + 2I * H floats). */
#include "moec_host.h"
#include "moe_gemm_host.h"

_Static_assert(E_LOCAL > 0 && H > 0 && I > 0, "moe_gate_up_fwd: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *x, const act_t *w_gate_up, const int *offsets, act_t *h, act_t *gu, int rows)
{
	const int maxr = moe_host_max_rows(offsets, E_LOCAL, rows);
	if (maxr == 0)
		return;
	float *acc = moe_host_alloc(sizeof(float) * (size_t)maxr * 2 * I, "moe_gate_up_fwd");
	float *xb = NULL, *wb = NULL;
#if ACT_BF16
	xb = moe_host_alloc(sizeof(float) * (size_t)maxr * H, "moe_gate_up_fwd");
	wb = moe_host_alloc(sizeof(float) * (size_t)2 * I * H, "moe_gate_up_fwd");
#endif
	for (int e = 0; e < E_LOCAL; e++) {
		int r0, r1;
		const int n = moe_host_range(offsets, e, rows, &r0, &r1);
		if (n == 0)
			continue;
		const float *xa = moe_host_f32(x + (size_t)r0 * H, (size_t)n * H, xb);
		const float *wa = moe_host_f32(w_gate_up + (size_t)e * 2 * I * H, (size_t)2 * I * H, wb);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 2 * I, H, 1.f, xa, H, wa, H, 0.f, acc, 2 * I);
		for (int r = 0; r < n; r++) {
			const float *ar = acc + (size_t)r * 2 * I;
			act_t *hr = h + (size_t)(r0 + r) * I;
			for (int j = 0; j < I; j++) {
				act_store(hr + j, swiglu_host(ar[j], ar[I + j]));
			}
			if (gu)
				moe_host_store(gu + (size_t)(r0 + r) * 2 * I, ar, (size_t)2 * I);
		}
	}
	free(acc);
	free(xb);
	free(wb);
}

/* rmsnorm_bwd.c - CPU twin of rmsnorm_bwd.cu: dx = rstd * (g - xhat * mean(g * xhat)),
 * g = w * dy, xhat = x * rstd; dw += sum over rows of dy * xhat (all fp32).
 * moec: constants DIM ACT_BF16
 *
 * Shapes (rows = runtime row count): dx [rows, DIM] act_t (written, or added to when
 * accumulate != 0), dw [DIM] float (+=), ws/count: the kernel's scratch, unused here,
 * dy [rows, DIM] act_t, x [rows, DIM] act_t, w [DIM] float, rstd [rows] float.
 * Rows are folded into dw in row order. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(act_t *dx, float *dw, float *ws, unsigned int *count, const act_t *dy, const act_t *x,
                     const float *w, const float *rstd, int rows, int accumulate)
{
	(void)ws;
	(void)count;
	for (long r = 0; r < rows; r++) {
		const act_t *xr = x + r * DIM, *dyr = dy + r * DIM;
		act_t *dxr = dx + r * DIM;
		const float rs = rstd[r];
		float part[8] = {0};
		int c = 0;
		for (; c + 8 <= DIM; c += 8)
			for (int l = 0; l < 8; l++)
				part[l] += (w[c + l] * act_load(dyr + c + l)) * (act_load(xr + c + l) * rs);
		for (; c < DIM; c++)
			part[0] += (w[c] * act_load(dyr + c)) * (act_load(xr + c) * rs);
		const float dot = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
		const float mdot = dot * (1.0f / DIM);
		for (c = 0; c < DIM; c++) {
			const float g = act_load(dyr + c);
			const float xh = act_load(xr + c) * rs;
			const float d = rs * (w[c] * g - xh * mdot);
			act_store(dxr + c, accumulate ? act_load(dxr + c) + d : d);
			dw[c] += g * xh;
		}
	}
}

/* rmsnorm_fwd.c - CPU twin of rmsnorm_fwd.cu: y = w * (x * rsqrt(mean(x^2) + EPS)) in fp32.
 * moec: constants DIM EPS ACT_BF16
 *
 * Shapes (rows = runtime row count): y [rows, DIM] act_t (may alias x), rstd [rows] float
 * (may be NULL), x [rows, DIM] act_t, w [DIM] float. Same math as the kernel; the sum of
 * squares runs over 8 interleaved fp32 partial sums (vectorizable, and close to the
 * kernel's tree order). */
#include "moec_host.h"

void MOEC_KERNEL_CPU(act_t *y, float *rstd, const act_t *x, const float *w, int rows)
{
	for (long r = 0; r < rows; r++) {
		const act_t *xr = x + r * DIM;
		act_t *yr = y + r * DIM;
		float part[8] = {0};
		int c = 0;
		for (; c + 8 <= DIM; c += 8)
			for (int l = 0; l < 8; l++) {
				const float v = act_load(xr + c + l);
				part[l] += v * v;
			}
		for (; c < DIM; c++) {
			const float v = act_load(xr + c);
			part[0] += v * v;
		}
		const float ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
		const float rs = 1.0f / sqrtf(ss * (1.0f / DIM) + EPS);
		if (rstd)
			rstd[r] = rs;
		for (c = 0; c < DIM; c++)
			act_store(yr + c, w[c] * (act_load(xr + c) * rs));
	}
}

/* cast_bf16_f32.c - CPU twin of cast_bf16_f32.cu: bf16 -> fp32 (exact).
 * moec: constants none
 *
 * Shapes (n = runtime): y [n] float, x [n] bf16. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float *y, const bf16 *x, long n)
{
	for (long i = 0; i < n; i++)
		y[i] = bf16_to_float(x[i]);
}

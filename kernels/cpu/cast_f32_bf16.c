/* cast_f32_bf16.c - CPU twin of cast_f32_bf16.cu: fp32 -> bf16, round to nearest even.
 * moec: constants none
 *
 * Shapes (n = runtime): y [n] bf16, x [n] float. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(bf16 *y, const float *x, long n)
{
	for (long i = 0; i < n; i++)
		y[i] = float_to_bf16(x[i]);
}

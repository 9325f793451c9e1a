/* grad_sumsq.c - CPU twin of grad_sumsq.cu: sumsq += sum over tensors of sum of x^2.
 * moec: constants none
 *
 * Shapes: sumsq [1] float (+=), ws/count: the kernel's scratch, unused here,
 * x [n_tensors] -> float [size_k], offsets [n_tensors + 1] long.
 * fp32 squares, summed in fp32 over blocks of 8 (8 independent lanes, vectorizable), then
 * in double: the same precision class as the kernel, not the same order. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float *sumsq, double *ws, unsigned int *count, float **x, const long *offsets, int n_tensors)
{
	(void)ws;
	(void)count;
	double acc = 0.0;
	for (int k = 0; k < n_tensors; k++) {
		const float *p = x[k];
		const long n = offsets[k + 1] - offsets[k];
		long j = 0;
		for (; j + 8 <= n; j += 8) {
			float lane[8];
			for (int l = 0; l < 8; l++)
				lane[l] = p[j + l] * p[j + l];
			acc += (double)(((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])));
		}
		for (; j < n; j++)
			acc += (double)(p[j] * p[j]);
	}
	*sumsq = (float)((double)*sumsq + acc);
}

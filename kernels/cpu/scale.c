/* scale.c - CPU twin of scale.cu: x *= s * coef over a list of fp32 tensors, where coef is
 * clip_grad_norm_'s min(max_norm / (sqrt(*sumsq) + 1e-6), 1) when sumsq != NULL and
 * max_norm > 0, else 1.
 * moec: constants none
 *
 * Shapes: x [n_tensors] -> float [size_k], offsets [n_tensors + 1] long, sumsq [1] or NULL. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float **x, const long *offsets, int n_tensors, float s, const float *sumsq, float max_norm)
{
	float c = s;
	if (sumsq && max_norm > 0.0f)
		c = c * fminf(max_norm / (sqrtf(*sumsq) + 1e-6f), 1.0f);
	for (int k = 0; k < n_tensors; k++) {
		float *p = x[k];
		const long n = offsets[k + 1] - offsets[k];
		for (long j = 0; j < n; j++)
			p[j] *= c;
	}
}

/* adamw.c - CPU twin of adamw.cu: one torch.optim.AdamW step over a list of fp32 tensors.
 * moec: constants none
 *
 * Shapes: params/grads/m/v [n_tensors] -> float [size_k], params_bf16 [n_tensors] -> bf16
 * [size_k] (array or entries may be NULL), offsets [n_tensors + 1] long (prefix sums of the
 * sizes), decay [n_tensors] int, sumsq [1] float or NULL (clip by max_norm when > 0).
 * The operations, their order and their fusion (fmaf) are the kernel's, which are torch's
 * foreach AdamW on CUDA; see adamw.cu. No expression here contains a separate multiply and
 * add that a compiler could contract into an fma, and the one such scalar (1 - lr*wd) goes
 * through a volatile, so -ffp-contract cannot change the result. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float **params, float **grads, float **m, float **v, bf16 **params_bf16, const long *offsets,
                     const int *decay, int n_tensors, double lr, double beta1, double beta2, double eps,
                     double weight_decay, int step, const float *sumsq, float max_norm)
{
	volatile double lr_wd = lr * weight_decay;
	const float hdecay = (float)(1.0 - lr_wd);
	const float w1 = (float)(1.0 - beta1), w1c = 1.0f - w1;
	const float b2 = (float)beta2, w2 = (float)(1.0 - beta2);
	const float neg_step = (float)(-(lr / (1.0 - pow(beta1, (double)step))));
	const float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step));
	const float feps = (float)eps;
	float gscale = 1.0f;
	if (sumsq && max_norm > 0.0f)
		gscale = fminf(max_norm / (sqrtf(*sumsq) + 1e-6f), 1.0f);

	for (int k = 0; k < n_tensors; k++) {
		float *p = params[k], *mk = m[k], *vk = v[k];
		const float *g = grads[k];
		bf16 *pb = params_bf16 ? params_bf16[k] : NULL;
		const int dk = decay[k] != 0;
		const long n = offsets[k + 1] - offsets[k];
		for (long j = 0; j < n; j++) {
			const float gj = g[j] * gscale;
			float pj = dk ? p[j] * hdecay : p[j];
			const float d = gj - mk[j];
			const float mj = w1 < 0.5f ? fmaf(w1, d, mk[j]) : fmaf(-d, w1c, gj);
			const float vj = fmaf(w2, gj * gj, vk[j] * b2);
			const float denom = sqrtf(vj) / bc2_sqrt + feps;
			pj = fmaf(neg_step, mj / denom, pj);
			p[j] = pj, mk[j] = mj, vk[j] = vj;
			if (pb)
				pb[j] = float_to_bf16(pj);
		}
	}
}

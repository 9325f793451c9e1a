// adamw.cu - one AdamW step over a list of fp32 tensors in one launch, as torch.optim.AdamW does it.
// moec: constants none
// moec: launch grid=(max(1, min(ceil(total/2048), 1024))) block=(256)
//
// Shapes (n_tensors = runtime; tensor k has offsets[k+1] - offsets[k] elements;
// total = offsets[n_tensors]); the pointer arrays live in device memory (built once: the
// tensors never move):
//   params      [n_tensors] -> float [size_k]   fp32 master weights, updated in place
//   grads       [n_tensors] -> float [size_k]   read only (clipping is applied on the fly)
//   m, v        [n_tensors] -> float [size_k]   first/second moments, updated in place
//   params_bf16 [n_tensors] -> bf16  [size_k]   bf16 compute copy written after the update;
//                                               the array or any entry may be NULL (none)
//   offsets     [n_tensors + 1] long            exclusive prefix sums of the sizes
//   decay       [n_tensors] int                 1: apply weight decay to tensor k
//   lr, beta1, beta2, eps, weight_decay         double, as the Python floats torch uses
//   step                                        1-based step count (after the increment)
//   sumsq       [1] float or NULL               global sum of squared gradients (grad_sumsq,
//                                               all-reduced); with max_norm > 0 the grads
//                                               are scaled by the clip coefficient below
//
// Math: torch.optim.AdamW's default path on CUDA (foreach, not capturable, no amsgrad),
// op by op in fp32. The scalars are formed in double as Python does, then used as fp32:
//   coef = min(max_norm / (sqrt(sumsq) + 1e-6), 1)        clip_grad_norm_ (g.mul_(coef))
//   g = g * coef
//   p = p * (1 - lr*wd)                                    only where decay[k]
//   m = lerp(m, g, 1 - beta1)                              exp_avg.lerp_
//   v = v * beta2;  v = v + (1 - beta2) * (g*g)            mul_ + addcmul_
//   p = p + (-lr / (1 - beta1^step)) * (m / (sqrt(v) / sqrt(1 - beta2^step) + eps))
// Where torch's CUDA build fuses a*b+c into an fma (lerp, addcmul, addcdiv), so does this
// kernel, with explicit fmaf; no other multiply-add is fused, and divisions and square roots
// are IEEE (__fdiv_rn, __fsqrt_rn) whatever NVRTC's flags. The CPU twin does the same
// operations, so the two agree bitwise (up to the double pow of the bias corrections: CUDA's
// is within 2 ulp in double, far below what the fp32 rounding of the scalars can see).
//
// Geometry: the tensors are laid end to end in one index space [0, total); a block takes
// ADAMW_CHUNK = 2048 consecutive indices a step (grid-stride), finds their tensor by binary
// search over offsets, and updates each piece with 16-byte accesses when the pointers allow
// (a scalar head until 16-byte aligned, float4 body, scalar tail; scalar throughout if the
// pieces are misaligned relative to each other). Any grid >= 1 is correct.
#include "moec_device.cuh"

#define ADAMW_CHUNK 2048

struct adamw_hp {
	float decay;     // 1 - lr*wd
	float w1;        // 1 - beta1 (lerp weight)
	float b2, w2;    // beta2, 1 - beta2
	float neg_step;  // -lr / (1 - beta1^step)
	float bc2_sqrt;  // sqrt(1 - beta2^step)
	float eps;
	float gscale;    // clip coefficient (1 when not clipping)
};

__device__ __forceinline__ float adamw_update(float p, float g, float &m, float &v, bool decay,
                                              const adamw_hp &h)
{
	g = __fmul_rn(g, h.gscale);
	if (decay)
		p = __fmul_rn(p, h.decay);
	// at::native::lerp: weight < 0.5 ? self + w*(end - self) : end - (end - self)*(1 - w)
	const float d = __fsub_rn(g, m);
	m = h.w1 < 0.5f ? __fmaf_rn(h.w1, d, m) : __fmaf_rn(-d, __fsub_rn(1.0f, h.w1), g);
	v = __fmaf_rn(h.w2, __fmul_rn(g, g), __fmul_rn(v, h.b2));
	const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), h.bc2_sqrt), h.eps);
	return __fmaf_rn(h.neg_step, __fdiv_rn(m, denom), p);
}

// Largest k < n with offsets[k] <= i (skips empty tensors sharing an offset).
__device__ __forceinline__ int find_tensor(const long *offsets, int n, long i)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		const int mid = (lo + hi + 1) / 2;
		if (offsets[mid] <= i)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

// Elements [j0, j1) of tensor k, by all threads of the block.
__device__ __forceinline__ void adamw_piece(float *p, const float *g, float *m, float *v, bf16 *pb,
                                           bool decay, long j0, long j1, const adamw_hp &h)
{
	// Element residue mod 4 of each pointer at j0: a float4 body needs them all equal (and
	// bf16 needs its 4-element group 8-byte aligned at the same place).
	const unsigned int r = (unsigned int)(((unsigned long long)(p + j0) / 4) & 3);
	bool vec = ((unsigned long long)p & 3) == 0 &&
	           (((unsigned long long)(g + j0) / 4) & 3) == r && (((unsigned long long)g & 3) == 0) &&
	           (((unsigned long long)(m + j0) / 4) & 3) == r && (((unsigned long long)m & 3) == 0) &&
	           (((unsigned long long)(v + j0) / 4) & 3) == r && (((unsigned long long)v & 3) == 0);
	if (pb)
		vec = vec && (((unsigned long long)(pb + j0) / 2) & 3) == r && ((unsigned long long)pb & 1) == 0;
	long head = vec ? (4 - r) & 3 : j1 - j0;
	if (head > j1 - j0)
		head = j1 - j0;
	const long nv = vec ? (j1 - j0 - head) / 4 : 0;
	const long jb = j0 + head, jt = jb + nv * 4;

	for (long j = j0 + threadIdx.x; j < jb; j += blockDim.x) {
		float mj = m[j], vj = v[j];
		const float pj = adamw_update(p[j], g[j], mj, vj, decay, h);
		p[j] = pj, m[j] = mj, v[j] = vj;
		if (pb)
			pb[j] = __float2bfloat16_rn(pj);
	}
	for (long q = threadIdx.x; q < nv; q += blockDim.x) {
		const long j = jb + q * 4;
		float4 P = *reinterpret_cast<const float4 *>(p + j);
		const float4 G = __ldg(reinterpret_cast<const float4 *>(g + j));
		float4 M = *reinterpret_cast<const float4 *>(m + j);
		float4 Vv = *reinterpret_cast<const float4 *>(v + j);
		P.x = adamw_update(P.x, G.x, M.x, Vv.x, decay, h);
		P.y = adamw_update(P.y, G.y, M.y, Vv.y, decay, h);
		P.z = adamw_update(P.z, G.z, M.z, Vv.z, decay, h);
		P.w = adamw_update(P.w, G.w, M.w, Vv.w, decay, h);
		*reinterpret_cast<float4 *>(p + j) = P;
		*reinterpret_cast<float4 *>(m + j) = M;
		*reinterpret_cast<float4 *>(v + j) = Vv;
		if (pb) {
			__nv_bfloat162 b[2] = {__floats2bfloat162_rn(P.x, P.y), __floats2bfloat162_rn(P.z, P.w)};
			*reinterpret_cast<uint2 *>(pb + j) = *reinterpret_cast<uint2 *>(b);
		}
	}
	for (long j = jt + threadIdx.x; j < j1; j += blockDim.x) {
		float mj = m[j], vj = v[j];
		const float pj = adamw_update(p[j], g[j], mj, vj, decay, h);
		p[j] = pj, m[j] = mj, v[j] = vj;
		if (pb)
			pb[j] = __float2bfloat16_rn(pj);
	}
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(float **params, float **grads, float **m, float **v, bf16 **params_bf16, const long *offsets,
            const int *decay, int n_tensors, double lr, double beta1, double beta2, double eps,
            double weight_decay, int step, const float *sumsq, float max_norm)
{
	if (n_tensors <= 0)
		return;
	adamw_hp h;
	h.decay = (float)__dsub_rn(1.0, __dmul_rn(lr, weight_decay)); // no fma: Python rounds lr*wd
	h.w1 = (float)(1.0 - beta1);
	h.b2 = (float)beta2;
	h.w2 = (float)(1.0 - beta2);
	h.neg_step = (float)(-(lr / (1.0 - pow(beta1, (double)step))));
	h.bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step));
	h.eps = (float)eps;
	h.gscale = 1.0f;
	if (sumsq && max_norm > 0.0f)
		h.gscale = fminf(__fdiv_rn(max_norm, __fadd_rn(__fsqrt_rn(*sumsq), 1e-6f)), 1.0f);

	const long total = offsets[n_tensors];
	for (long cs = (long)blockIdx.x * ADAMW_CHUNK; cs < total; cs += (long)gridDim.x * ADAMW_CHUNK) {
		const long ce = cs + ADAMW_CHUNK < total ? cs + ADAMW_CHUNK : total;
		int k = find_tensor(offsets, n_tensors, cs);
		for (long s0 = cs; s0 < ce && k < n_tensors; k++) {
			const long tb = offsets[k], te = offsets[k + 1];
			const long s1 = te < ce ? te : ce;
			if (s1 > s0) // an empty tensor sharing the offset has s1 == s0
				adamw_piece(params[k], grads[k], m[k], v[k], params_bf16 ? params_bf16[k] : nullptr,
				            decay[k] != 0, s0 - tb, s1 - tb, h);
			s0 = s1;
		}
	}
}

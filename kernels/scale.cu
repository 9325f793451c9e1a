// scale.cu - x *= c over a list of fp32 tensors, c = s times (optionally) the clip coefficient.
// moec: constants none
// moec: launch grid=(max(1, min(ceil(total/2048), 1024))) block=(256)
//
// Shapes (n_tensors = runtime; tensor k has offsets[k+1] - offsets[k] elements,
// total = offsets[n_tensors]; the pointer array lives in device memory):
//   x       [n_tensors] -> float [size_k]   scaled in place
//   offsets [n_tensors + 1] long            exclusive prefix sums of the sizes
//   s       float                           plain factor (1 for clipping alone)
//   sumsq   [1] float or NULL               with max_norm > 0: also multiply by
//                                           coef = min(max_norm / (sqrt(sumsq) + 1e-6), 1),
//                                           torch's clip_grad_norm_, read on the device so
//                                           the host never waits for the norm
// c = s * coef is formed once, in fp32; each element is one fp32 multiply (torch's mul_).
// adamw.cu can apply the same clip coefficient itself, which saves this pass.
// Geometry: as adamw.cu (SCALE_CHUNK = 2048 indices a block step, float4 where aligned).
#include "moec_device.cuh"

#define SCALE_CHUNK 2048

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

__device__ __forceinline__ void piece_scale(float *x, long j0, long j1, float c)
{
	const long head0 = (long)((4 - (((unsigned long long)(x + j0) / 4) & 3)) & 3);
	const long head = head0 < j1 - j0 ? head0 : j1 - j0;
	const long nv = (j1 - j0 - head) / 4, jb = j0 + head, jt = jb + nv * 4;
	for (long j = j0 + threadIdx.x; j < jb; j += blockDim.x)
		x[j] = __fmul_rn(x[j], c);
	for (long q = threadIdx.x; q < nv; q += blockDim.x) {
		float4 *p = reinterpret_cast<float4 *>(x + jb) + q;
		float4 a = *p;
		a.x = __fmul_rn(a.x, c), a.y = __fmul_rn(a.y, c), a.z = __fmul_rn(a.z, c), a.w = __fmul_rn(a.w, c);
		*p = a;
	}
	for (long j = jt + threadIdx.x; j < j1; j += blockDim.x)
		x[j] = __fmul_rn(x[j], c);
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(float **x, const long *offsets, int n_tensors, float s, const float *sumsq, float max_norm)
{
	if (n_tensors <= 0)
		return;
	float c = s;
	if (sumsq && max_norm > 0.0f)
		c = __fmul_rn(c, fminf(__fdiv_rn(max_norm, __fadd_rn(__fsqrt_rn(*sumsq), 1e-6f)), 1.0f));
	const long total = offsets[n_tensors];
	for (long cs = (long)blockIdx.x * SCALE_CHUNK; cs < total; cs += (long)gridDim.x * SCALE_CHUNK) {
		const long ce = cs + SCALE_CHUNK < total ? cs + SCALE_CHUNK : total;
		int k = find_tensor(offsets, n_tensors, cs);
		for (long s0 = cs; s0 < ce && k < n_tensors; k++) {
			const long tb = offsets[k], te = offsets[k + 1];
			const long s1 = te < ce ? te : ce;
			if (s1 > s0)
				piece_scale(x[k], s0 - tb, s1 - tb, c);
			s0 = s1;
		}
	}
}

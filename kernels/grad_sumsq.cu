// grad_sumsq.cu - sum of squares over a list of fp32 tensors (the global gradient norm), deterministic.
// moec: constants none
// moec: launch grid=(max(1, min(ceil(total/2048), 1024))) block=(256)
//
// Shapes (n_tensors = runtime; tensor k has offsets[k+1] - offsets[k] elements,
// total = offsets[n_tensors]; the pointer array lives in device memory):
//   sumsq   [1]           float    accumulated into: sumsq += sum_k sum_j x_k[j]^2 (the host
//                                  zeroes it, may call several times, e.g. dense and expert
//                                  gradients, then all-reduces it across ranks)
//   ws      [nblk]        double   scratch: one partial sum per block (nblk = gridDim.x)
//   count   [1]           uint     zero before the first launch; every launch leaves it zero
//   x       [n_tensors] -> float [size_k]
//   offsets [n_tensors + 1] long   exclusive prefix sums of the sizes
// Squares are fp32 (as torch's fp32 norms), summed in fp32 over a thread's few elements of
// a 2048-element step, then in double: the total keeps fp32-level relative accuracy (~1e-7)
// however many elements there are, where one fp32 running sum over 1e10 squares would not.
// Deterministic for a given grid: blocks write partials, the last block to finish (integer
// ticket) sums them in a fixed order.
// Geometry: as adamw.cu, blocks take SUMSQ_CHUNK = 2048 consecutive indices of the tensors
// laid end to end, float4 loads where aligned; any grid >= 1 is correct.
#include "moec_device.cuh"

#define SUMSQ_CHUNK 2048

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

// Sum of squares of x[j0, j1) owned by this thread (block-strided).
__device__ __forceinline__ float piece_sumsq(const float *x, long j0, long j1)
{
	const long head0 = (long)((4 - (((unsigned long long)(x + j0) / 4) & 3)) & 3);
	const long head = head0 < j1 - j0 ? head0 : j1 - j0;
	const long nv = (j1 - j0 - head) / 4, jb = j0 + head, jt = jb + nv * 4;
	float s = 0.0f;
	for (long j = j0 + threadIdx.x; j < jb; j += blockDim.x)
		s += x[j] * x[j];
	for (long q = threadIdx.x; q < nv; q += blockDim.x) {
		const float4 a = __ldg(reinterpret_cast<const float4 *>(x + jb) + q);
		s += (a.x * a.x + a.y * a.y) + (a.z * a.z + a.w * a.w);
	}
	for (long j = jt + threadIdx.x; j < j1; j += blockDim.x)
		s += x[j] * x[j];
	return s;
}

__device__ __forceinline__ double block_sum(double v, double *s_red)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	if (threadIdx.x % 32 == 0)
		s_red[threadIdx.x / 32] = v;
	__syncthreads();
	v = 0.0;
	for (int w = 0; w < 8; w++)
		v += s_red[w];
	__syncthreads();
	return v;
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(float *sumsq, double *ws, unsigned int *count, float **x, const long *offsets, int n_tensors)
{
	__shared__ double s_red[8];
	__shared__ bool s_last;
	double acc = 0.0;
	const long total = n_tensors > 0 ? offsets[n_tensors] : 0;
	for (long cs = (long)blockIdx.x * SUMSQ_CHUNK; cs < total; cs += (long)gridDim.x * SUMSQ_CHUNK) {
		const long ce = cs + SUMSQ_CHUNK < total ? cs + SUMSQ_CHUNK : total;
		int k = find_tensor(offsets, n_tensors, cs);
		for (long s0 = cs; s0 < ce && k < n_tensors; k++) {
			const long tb = offsets[k], te = offsets[k + 1];
			const long s1 = te < ce ? te : ce;
			if (s1 > s0)
				acc += (double)piece_sumsq(x[k], s0 - tb, s1 - tb);
			s0 = s1;
		}
	}
	acc = block_sum(acc, s_red);
	if (threadIdx.x == 0)
		ws[blockIdx.x] = acc;
	__threadfence();
	__syncthreads();
	if (threadIdx.x == 0)
		s_last = atomicAdd(count, 1u) == gridDim.x - 1;
	__syncthreads();
	if (!s_last)
		return;
	__threadfence();
	double t = 0.0;
	for (unsigned int b = threadIdx.x; b < gridDim.x; b += blockDim.x)
		t += __ldcg(ws + b);
	t = block_sum(t, s_red);
	if (threadIdx.x == 0) {
		*sumsq = (float)((double)*sumsq + t);
		*count = 0;
	}
}

// add.cu - elementwise sum of two activation tensors (the residual adds): y = a + b.
// moec: constants ACT_BF16
// moec: launch grid=(max(1, ceil(n/2048))) block=(256)
//
// Shapes (n = runtime element count, e.g. T*H):
//   y [n] act_t   may alias a or b (in place: y += b is add(y, y, b))
//   a [n] act_t
//   b [n] act_t
// The sum is taken in fp32 and rounded once (bf16: as torch's bf16 add does).
// Geometry: grid-stride over 16-byte slots (8 bf16 / 4 fp32) when all three pointers are
// 16-byte aligned, else over elements; the n % slot tail is done element-wise. Any grid
// >= 1 is correct; the one above gives each thread 8 elements.
#include "moec_device.cuh"

#if ACT_BF16
#define ADD_VEC 8
#else
#define ADD_VEC 4
#endif

__device__ __forceinline__ uint4 add_slot(uint4 a, uint4 b)
{
#if ACT_BF16
	const unsigned int wa[4] = {a.x, a.y, a.z, a.w}, wb[4] = {b.x, b.y, b.z, b.w};
	unsigned int w[4];
#pragma unroll
	for (int i = 0; i < 4; i++) {
		const float lo = __uint_as_float(wa[i] << 16) + __uint_as_float(wb[i] << 16);
		const float hi = __uint_as_float(wa[i] & 0xffff0000u) + __uint_as_float(wb[i] & 0xffff0000u);
		__nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
		w[i] = *reinterpret_cast<unsigned int *>(&h);
	}
	return make_uint4(w[0], w[1], w[2], w[3]);
#else
	return make_uint4(__float_as_uint(__uint_as_float(a.x) + __uint_as_float(b.x)),
	                  __float_as_uint(__uint_as_float(a.y) + __uint_as_float(b.y)),
	                  __float_as_uint(__uint_as_float(a.z) + __uint_as_float(b.z)),
	                  __float_as_uint(__uint_as_float(a.w) + __uint_as_float(b.w)));
#endif
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(act_t *y, const act_t *a, const act_t *b, long n)
{
	const long start = (long)blockIdx.x * blockDim.x + threadIdx.x, stride = (long)gridDim.x * blockDim.x;
	long done = 0;
	if ((((unsigned long long)y | (unsigned long long)a | (unsigned long long)b) & 15) == 0) {
		const long nv = n / ADD_VEC;
		const uint4 *av = reinterpret_cast<const uint4 *>(a), *bv = reinterpret_cast<const uint4 *>(b);
		uint4 *yv = reinterpret_cast<uint4 *>(y);
		for (long i = start; i < nv; i += stride)
			yv[i] = add_slot(av[i], bv[i]);
		done = nv * ADD_VEC;
	}
	for (long i = done + start; i < n; i += stride)
		act_store(y + i, act_load(a + i) + act_load(b + i));
}

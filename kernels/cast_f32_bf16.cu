// cast_f32_bf16.cu - fp32 -> bf16, round to nearest even (master weights -> compute copy, ...).
// moec: constants none
// moec: launch grid=(max(1, ceil(n/2048))) block=(256)
//
// Shapes (n = runtime element count): y [n] bf16, x [n] float. NaN stays NaN.
// Geometry: grid-stride over 8-element slots (two 16-byte loads, one 16-byte store) when
// both pointers are 16-byte aligned, else over elements; the n % 8 tail element-wise.
#include "moec_device.cuh"

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(bf16 *y, const float *x, long n)
{
	const long start = (long)blockIdx.x * blockDim.x + threadIdx.x, stride = (long)gridDim.x * blockDim.x;
	long done = 0;
	if ((((unsigned long long)y | (unsigned long long)x) & 15) == 0) {
		const long nv = n / 8;
		const float4 *xv = reinterpret_cast<const float4 *>(x);
		uint4 *yv = reinterpret_cast<uint4 *>(y);
		for (long i = start; i < nv; i += stride) {
			const float4 p = xv[2 * i], q = xv[2 * i + 1];
			__nv_bfloat162 h[4] = {__floats2bfloat162_rn(p.x, p.y), __floats2bfloat162_rn(p.z, p.w),
			                       __floats2bfloat162_rn(q.x, q.y), __floats2bfloat162_rn(q.z, q.w)};
			yv[i] = *reinterpret_cast<uint4 *>(h);
		}
		done = nv * 8;
	}
	for (long i = done + start; i < n; i += stride)
		y[i] = __float2bfloat16_rn(x[i]);
}

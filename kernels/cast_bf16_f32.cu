// cast_bf16_f32.cu - bf16 -> fp32 (exact).
// moec: constants none
// moec: launch grid=(max(1, ceil(n/2048))) block=(256)
//
// Shapes (n = runtime element count): y [n] float, x [n] bf16.
// Geometry: grid-stride over 8-element slots (one 16-byte load, two 16-byte stores) when
// both pointers are 16-byte aligned, else over elements; the n % 8 tail element-wise.
#include "moec_device.cuh"

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(float *y, const bf16 *x, long n)
{
	const long start = (long)blockIdx.x * blockDim.x + threadIdx.x, stride = (long)gridDim.x * blockDim.x;
	long done = 0;
	if ((((unsigned long long)y | (unsigned long long)x) & 15) == 0) {
		const long nv = n / 8;
		const uint4 *xv = reinterpret_cast<const uint4 *>(x);
		float4 *yv = reinterpret_cast<float4 *>(y);
		for (long i = start; i < nv; i += stride) {
			const uint4 u = xv[i];
			yv[2 * i] = make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
			                        __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
			yv[2 * i + 1] = make_float4(__uint_as_float(u.z << 16), __uint_as_float(u.z & 0xffff0000u),
			                            __uint_as_float(u.w << 16), __uint_as_float(u.w & 0xffff0000u));
		}
		done = nv * 8;
	}
	for (long i = done + start; i < n; i += stride)
		y[i] = __bfloat162float(x[i]);
}

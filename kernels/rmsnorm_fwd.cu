// rmsnorm_fwd.cu - RMSNorm forward: y = w * (x * rsqrt(mean(x^2) + EPS)) in fp32, rstd saved.
// moec: constants DIM EPS ACT_BF16
// moec: launch grid=(max(1, min(rows, 1024))) block=(256)
//
// DIM = normalized size: H for the layer norms, HD for Qwen3's q/k norms (rows = T*heads).
// Shapes (rows = runtime row count):
//   y    [rows, DIM] act_t   output; may alias x (in place)
//   rstd [rows]      float   1/sqrt(mean(x^2) + EPS), for the backward; may be NULL
//   x    [rows, DIM] act_t
//   w    [DIM]       float
// Semantics: HF Qwen3MoeRMSNorm with every step in fp32: xhat = x * rstd, y = w * xhat,
// mean(x^2) = sum(x^2) * (1/DIM). (HF in bf16 rounds xhat to bf16 before multiplying by a
// bf16 weight; moec keeps w in fp32 and rounds once, at the store.)
//
// Geometry: a group of RMS_G consecutive threads owns one row and holds it in registers
// (16-byte slots of RMS_VEC elements, at most 8 slots a thread up to DIM = 2048 in bf16),
// so x is read once. RMS_G is a power of two: the slot count when a row has <= 32 slots
// (q/k norms: HD=128 bf16 -> 16 threads a row), else one warp up to 256 slots, then 64,
// 128, 256. RMS_ROWS = 256 / RMS_G rows per block and step. The grid is persistent-sized
// (at most 1024 blocks, ~8 per SM) and the blocks stride over the rows, so any grid >= 1 is
// correct; blocks past the last row (small inputs) return at once.
#include "moec_device.cuh"
#include "vec.cuh"

#define RMS_VEC SLOT_ACT // act_t per 16-byte slot (vec.cuh)
#define RMS_NV ((DIM + RMS_VEC - 1) / RMS_VEC) // 16-byte slots per row (last may be partial)
#define RMS_G                                                                                   \
	(RMS_NV <= 1 ? 1 : RMS_NV <= 2 ? 2 : RMS_NV <= 4 ? 4 : RMS_NV <= 8 ? 8 : RMS_NV <= 16 ? 16 \
	 : RMS_NV <= 256 ? 32 : RMS_NV <= 512 ? 64 : RMS_NV <= 1024 ? 128 : 256)
#define RMS_ROWS (256 / RMS_G)                       // rows per block
#define RMS_NPT ((RMS_NV + RMS_G - 1) / RMS_G)       // slots per thread
#define RMS_WARPS_PER_ROW (RMS_G > 32 ? RMS_G / 32 : 1)

// Sum over the RMS_G threads of a row. Every thread of the block calls it (the row loop is
// block-uniform), so the barriers of the multi-warp case are safe.
__device__ __forceinline__ float row_sum(float v, float *s_red)
{
#pragma unroll
	for (int o = (RMS_G < 32 ? RMS_G : 32) / 2; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
#if RMS_G > 32
	if (threadIdx.x % 32 == 0)
		s_red[threadIdx.x / 32] = v;
	__syncthreads();
	const int first = threadIdx.x / RMS_G * RMS_WARPS_PER_ROW;
	v = 0.0f;
#pragma unroll
	for (int i = 0; i < RMS_WARPS_PER_ROW; i++)
		v += s_red[first + i];
	__syncthreads();
#endif
	return v;
}

// ---- kernel ----

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(act_t *y, float *rstd, const act_t *x, const float *w, int rows)
{
	__shared__ float s_red[8];
	const int g = threadIdx.x / RMS_G, lane = threadIdx.x % RMS_G;
	const bool vec = DIM % RMS_VEC == 0 &&
	                 (((unsigned long long)x | (unsigned long long)y | (unsigned long long)w) & 15) == 0;

	for (long base = (long)blockIdx.x * RMS_ROWS; base < rows; base += (long)gridDim.x * RMS_ROWS) {
		const long r = base + g;
		const bool live = r < rows;
		const act_t *xr = x + r * DIM;
		uint4 raw[RMS_NPT];
		float ss = 0.0f;
#pragma unroll
		for (int i = 0; i < RMS_NPT; i++) {
			const int s = lane + i * RMS_G;
			raw[i] = make_uint4(0, 0, 0, 0);
			if (live && (RMS_NV % RMS_G == 0 || s < RMS_NV))
				raw[i] = slot_load(xr, s, vec, DIM);
			float f[RMS_VEC];
			slot_unpack(raw[i], f);
#pragma unroll
			for (int e = 0; e < RMS_VEC; e++)
				ss += f[e] * f[e];
		}
		ss = row_sum(ss, s_red);
		const float rs = rsqrtf(ss * (1.0f / DIM) + EPS);
		if (!live)
			continue;
		if (rstd && lane == 0)
			rstd[r] = rs;
		act_t *yr = y + r * DIM;
#pragma unroll
		for (int i = 0; i < RMS_NPT; i++) {
			const int s = lane + i * RMS_G;
			if (RMS_NV % RMS_G != 0 && s >= RMS_NV)
				break;
			float f[RMS_VEC], wf[RMS_VEC];
			slot_unpack(raw[i], f);
			slot_ldg_f32(w, s, vec, DIM, wf);
#pragma unroll
			for (int e = 0; e < RMS_VEC; e++)
				f[e] = wf[e] * (f[e] * rs);
			slot_store(yr, s, f, vec, DIM);
		}
	}
}

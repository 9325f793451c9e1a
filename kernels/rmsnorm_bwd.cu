// rmsnorm_bwd.cu - RMSNorm backward: dx from dy and the saved rstd; dw accumulated, deterministically.
// moec: constants DIM ACT_BF16
// moec: launch grid=(max(1, min(rows, 256))) block=(256)
//
// DIM = normalized size (H, or HD for the q/k norms with rows = T*heads).
// Shapes (rows = runtime row count, nblk = gridDim.x, ngrp = ceil(nblk/16)):
//   dx    [rows, DIM]        act_t  written, or added to when accumulate != 0 (the residual
//                                   stream's gradient, so the pre-norm block needs no extra add)
//   dw    [DIM]              float  accumulated into (+=): the host zeroes it once per step
//   ws    [nblk + ngrp, DIM] float  scratch (16-byte aligned): partial dw rows
//   count [1 + ngrp]         uint   zero before the first launch; every launch leaves it zero
//   dy    [rows, DIM]        act_t
//   x     [rows, DIM]        act_t  the forward's input
//   w     [DIM]              float
//   rstd  [rows]             float  from rmsnorm_fwd
// Math, with xhat = x * rstd and g = w * dy (all fp32):
//   dx = rstd * (g - xhat * mean(g * xhat)),   dw += sum over rows of dy * xhat.
//
// Geometry: as rmsnorm_fwd (a group of RMS_G threads per row, the row in registers, rows
// grid-stride), but at most 4 slots a thread since x, dy and the dw partials all live in
// registers. The grid is persistent-sized (at most 256 blocks) so that the dw partials stay
// few. dw is deterministic without float atomics: each block folds its rows' dw in
// registers, reduces its groups through shared memory in a fixed order and writes one
// partial row to ws; the last block to finish in each group of 16 blocks (an integer ticket
// on count[1 + group]) sums that group's rows in block order into ws row nblk + group; the
// last group to finish (ticket on count[0]) sums the group rows in order and adds them to
// dw. Two levels keep the serial tail short: no block reads more than 16 rows of DIM. For a
// given grid the result is bitwise reproducible. One ws/count pair per launch in flight
// (launches on one stream may share them).
#include "moec_device.cuh"
#include "vec.cuh"

#define RMS_VEC SLOT_ACT // act_t per 16-byte slot (vec.cuh)
#define RMS_NV ((DIM + RMS_VEC - 1) / RMS_VEC)
#define RMS_G                                                                                   \
	(RMS_NV <= 1 ? 1 : RMS_NV <= 2 ? 2 : RMS_NV <= 4 ? 4 : RMS_NV <= 8 ? 8 : RMS_NV <= 16 ? 16 \
	 : RMS_NV <= 128 ? 32 : RMS_NV <= 256 ? 64 : RMS_NV <= 512 ? 128 : 256)
#define RMS_ROWS (256 / RMS_G)
#define RMS_NPT ((RMS_NV + RMS_G - 1) / RMS_G)
#define RMS_WARPS_PER_ROW (RMS_G > 32 ? RMS_G / 32 : 1)
#define RMS_GROUP 16 // blocks per first-level group of the dw reduction

// The groups of a block reduce their dw through [RMS_ROWS, DIM] floats of shared memory:
// at most 256 * 4 slots * RMS_VEC floats = 32 KB by the choice of RMS_G above.
static_assert(RMS_ROWS == 1 || RMS_ROWS * DIM * 4 <= 32768, "rmsnorm_bwd: dw staging exceeds 32 KB");

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

// dst (+)= the sum of n rows of src ([n, DIM], row-major), rows added in order. Columns are
// spread over the block; a thread keeps up to 16 independent row loads in flight, so the
// serial part is short. Reads bypass L1 (__ldcg): the rows were written by other blocks.
__device__ __forceinline__ void sum_rows(const float *src, int n, float *dst, bool add, bool vec)
{
	if (vec) {
		for (int c = threadIdx.x; c < DIM / 4; c += blockDim.x) {
			float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 16
			for (int r = 0; r < n; r++) {
				const float4 v = __ldcg(reinterpret_cast<const float4 *>(src + (long)r * DIM) + c);
				acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
			}
			float4 *d = reinterpret_cast<float4 *>(dst) + c;
			if (add) {
				const float4 o = *d;
				acc.x += o.x, acc.y += o.y, acc.z += o.z, acc.w += o.w;
			}
			*d = acc;
		}
		return;
	}
	for (int c = threadIdx.x; c < DIM; c += blockDim.x) {
		float acc = 0.0f;
#pragma unroll 16
		for (int r = 0; r < n; r++)
			acc += __ldcg(src + (long)r * DIM + c);
		dst[c] = add ? dst[c] + acc : acc;
	}
}

// ---- kernel ----

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(act_t *dx, float *dw, float *ws, unsigned int *count, const act_t *dy, const act_t *x,
            const float *w, const float *rstd, int rows, int accumulate)
{
	__shared__ float s_red[8];
#if RMS_ROWS > 1
	__shared__ __align__(16) float s_dw[RMS_ROWS * DIM];
#endif
	__shared__ bool s_last;
	const int g = threadIdx.x / RMS_G, lane = threadIdx.x % RMS_G;
	const bool vec = DIM % RMS_VEC == 0 &&
	                 (((unsigned long long)dx | (unsigned long long)dy | (unsigned long long)x |
	                   (unsigned long long)w) & 15) == 0;

	float dwacc[RMS_NPT][RMS_VEC];
#pragma unroll
	for (int i = 0; i < RMS_NPT; i++)
#pragma unroll
		for (int e = 0; e < RMS_VEC; e++)
			dwacc[i][e] = 0.0f;

	for (long base = (long)blockIdx.x * RMS_ROWS; base < rows; base += (long)gridDim.x * RMS_ROWS) {
		const long r = base + g;
		const bool live = r < rows;
		const float rs = live ? rstd[r] : 0.0f;
		uint4 rx[RMS_NPT], rdy[RMS_NPT];
		float dot = 0.0f;
#pragma unroll
		for (int i = 0; i < RMS_NPT; i++) {
			const int s = lane + i * RMS_G;
			rx[i] = rdy[i] = make_uint4(0, 0, 0, 0);
			if (live && (RMS_NV % RMS_G == 0 || s < RMS_NV)) {
				rx[i] = slot_load(x + r * DIM, s, vec, DIM);
				rdy[i] = slot_load(dy + r * DIM, s, vec, DIM);
				float fx[RMS_VEC], fdy[RMS_VEC], wf[RMS_VEC];
				slot_unpack(rx[i], fx);
				slot_unpack(rdy[i], fdy);
				slot_ldg_f32(w, s, vec, DIM, wf);
#pragma unroll
				for (int e = 0; e < RMS_VEC; e++)
					dot += (wf[e] * fdy[e]) * (fx[e] * rs);
			}
		}
		const float mdot = row_sum(dot, s_red) * (1.0f / DIM);
		if (!live)
			continue;
		act_t *dxr = dx + r * DIM;
#pragma unroll
		for (int i = 0; i < RMS_NPT; i++) {
			const int s = lane + i * RMS_G;
			if (RMS_NV % RMS_G != 0 && s >= RMS_NV)
				break;
			float fx[RMS_VEC], fdy[RMS_VEC], wf[RMS_VEC], o[RMS_VEC];
			slot_unpack(rx[i], fx);
			slot_unpack(rdy[i], fdy);
			slot_ldg_f32(w, s, vec, DIM, wf);
			if (accumulate) {
				uint4 old = slot_load(dxr, s, vec, DIM);
				slot_unpack(old, o);
			}
#pragma unroll
			for (int e = 0; e < RMS_VEC; e++) {
				const float xh = fx[e] * rs;
				const float d = rs * (wf[e] * fdy[e] - xh * mdot);
				o[e] = accumulate ? o[e] + d : d;
				dwacc[i][e] += fdy[e] * xh;
			}
			slot_store(dxr, s, o, vec, DIM);
		}
	}

	// Block partial of dw -> ws[blockIdx.x]: groups stage their partials in shared memory,
	// column c of the block sums them in group order.
	float *wsb = ws + (long)blockIdx.x * DIM;
#if RMS_ROWS > 1
#pragma unroll
	for (int i = 0; i < RMS_NPT; i++) {
		const int s = lane + i * RMS_G;
		if (RMS_NV % RMS_G != 0 && s >= RMS_NV)
			break;
#if DIM % RMS_VEC == 0
		// 16-byte stores: consecutive threads write consecutive slots (<= 2-way conflicts)
#pragma unroll
		for (int q = 0; q < RMS_VEC / 4; q++)
			reinterpret_cast<float4 *>(s_dw + g * DIM + s * RMS_VEC)[q] =
				make_float4(dwacc[i][4 * q], dwacc[i][4 * q + 1], dwacc[i][4 * q + 2], dwacc[i][4 * q + 3]);
#else
#pragma unroll
		for (int e = 0; e < RMS_VEC; e++)
			if (s * RMS_VEC + e < DIM)
				s_dw[g * DIM + s * RMS_VEC + e] = dwacc[i][e];
#endif
	}
	__syncthreads();
	for (int c = threadIdx.x; c < DIM; c += 256) {
		float acc = 0.0f;
#pragma unroll
		for (int k = 0; k < RMS_ROWS; k++)
			acc += s_dw[k * DIM + c];
		wsb[c] = acc;
	}
#else
#pragma unroll
	for (int i = 0; i < RMS_NPT; i++) {
		const int s = lane + i * RMS_G;
		if (RMS_NV % RMS_G == 0 || s < RMS_NV)
#pragma unroll
			for (int e = 0; e < RMS_VEC; e++)
				if (DIM % RMS_VEC == 0 || s * RMS_VEC + e < DIM)
					wsb[s * RMS_VEC + e] = dwacc[i][e];
	}
#endif

	// Two-level, fixed-order reduction of the block partials (see the header).
	const unsigned int nblk = gridDim.x, ngrp = (nblk + RMS_GROUP - 1) / RMS_GROUP, grp = blockIdx.x / RMS_GROUP;
	const unsigned int gsize = nblk - grp * RMS_GROUP < RMS_GROUP ? nblk - grp * RMS_GROUP : RMS_GROUP;
	const bool vws = DIM % 4 == 0 && ((unsigned long long)ws & 15) == 0;
	__threadfence();
	__syncthreads();
	if (threadIdx.x == 0)
		s_last = atomicAdd(count + 1 + grp, 1u) == gsize - 1;
	__syncthreads();
	if (!s_last)
		return;
	__threadfence();
	if (threadIdx.x == 0)
		count[1 + grp] = 0;
	sum_rows(ws + (long)grp * RMS_GROUP * DIM, (int)gsize, ws + (long)(nblk + grp) * DIM, false, vws);
	__threadfence();
	__syncthreads();
	if (threadIdx.x == 0)
		s_last = atomicAdd(count, 1u) == ngrp - 1;
	__syncthreads();
	if (!s_last)
		return;
	__threadfence();
	if (threadIdx.x == 0)
		*count = 0;
	sum_rows(ws + (long)nblk * DIM, (int)ngrp, dw, true, vws && ((unsigned long long)dw & 15) == 0);
}

// embedding_bwd.cu - embedding gradient: dtable[ids[t], :] += dout[t, :], deterministic, no float atomics.
// moec: constants H ACT_BF16
// moec: launch grid=(max(1, tokens)) block=(256)
//
// Shapes (tokens, v0, vocab = runtime):
//   dtable [vocab, H]  float   accumulated into (+=): rows v0 .. v0+vocab-1 of the fp32
//                              embedding gradient (the host zeroes it once per step; a
//                              tied one the LM head's weight-gradient GEMM wrote first)
//   dout   [tokens, H] act_t
//   ids    [tokens]    int     ids outside [v0, v0+vocab) contribute nothing
//
// Determinism without sorting: block t looks for the first token with the same id (scanning
// ids in order, 1024 a step, all threads comparing). If that is not t itself, the block is
// done; otherwise it owns the row and, continuing the scan, adds dout of every token with
// that id to the row in token order: acc = dtable[id]; acc += dout[t1]; acc += dout[t2]...
// Every row has exactly one writer and a fixed summation order, so the result is bitwise
// reproducible and bitwise equal to the CPU twin (sequential += over tokens). Cost: an
// owner scans all `tokens` ids (L2-resident: 128 KB at T = 32k), a non-owner stops at the
// first occurrence; a frequent id is summed by one block, which is fine at T*H sizes
// (the whole op is well under a millisecond at T = 32k, H = 4096).
#include "moec_device.cuh"
#include "vec.cuh"

#define EMB_VEC SLOT_ACT // act_t per 16-byte slot (vec.cuh)
#define EMB_NV ((H + EMB_VEC - 1) / EMB_VEC)   // 16-byte slots of dout per row
#define EMB_NPT ((EMB_NV + 255) / 256)         // slots per thread
#define EMB_SCAN 1024                          // ids compared per step (4 per thread)

// Slot s of a dout row as floats: raw bits unpacked when aligned (vec), else element loads
// with zeros past H.
__device__ __forceinline__ void emb_slot_load(const act_t *row, int s, bool vec, float *f)
{
	if (vec) {
		slot_unpack(*reinterpret_cast<const uint4 *>(row + s * EMB_VEC), f);
		return;
	}
#pragma unroll
	for (int e = 0; e < EMB_VEC; e++)
		f[e] = s * EMB_VEC + e < H ? act_load(row + s * EMB_VEC + e) : 0.0f;
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(float *dtable, const act_t *dout, const int *ids, int tokens, int v0, int vocab)
{
	__shared__ int s_list[EMB_SCAN]; // matching token indices of this step, in token order
	__shared__ int s_cnt[4 * 8];     // matches per (sub-step k, warp)
	const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
	const bool vec = H % EMB_VEC == 0 && (((unsigned long long)dout | (unsigned long long)dtable) & 15) == 0;

	for (long t = blockIdx.x; t < tokens; t += gridDim.x) {
		const int idt = ids[t];
		const long id = (long)idt - v0;
		if (id < 0 || id >= vocab)
			continue; // block-uniform
		float *drow = dtable + id * H;
		float acc[EMB_NPT][EMB_VEC];
		bool seen = false; // has a step with matches been seen (and ownership decided)?
		bool owner = false;
		for (long base = 0; base < tokens; base += EMB_SCAN) {
			unsigned int m = 0;
#pragma unroll
			for (int k = 0; k < 4; k++) {
				const long j = base + k * 256 + tid;
				if (j < tokens && ids[j] == idt)
					m |= 1u << k;
			}
			if (!__syncthreads_or(m))
				continue;
			// Compact the matches in token order: j = base + k*256 + tid orders by (k, warp, lane).
			unsigned int bal[4];
#pragma unroll
			for (int k = 0; k < 4; k++) {
				bal[k] = __ballot_sync(0xffffffffu, (m >> k) & 1u);
				if (lane == 0)
					s_cnt[k * 8 + warp] = __popc(bal[k]);
			}
			__syncthreads();
			int n = 0, before[4];
#pragma unroll
			for (int k = 0; k < 4; k++) {
				before[k] = n + __popc(bal[k] & ((1u << lane) - 1u));
				for (int w = 0; w < 8; w++) {
					const int c = s_cnt[k * 8 + w];
					n += c;
					if (w < warp)
						before[k] += c;
				}
			}
#pragma unroll
			for (int k = 0; k < 4; k++)
				if ((m >> k) & 1u)
					s_list[before[k]] = (int)(base + k * 256 + tid);
			__syncthreads();
			if (!seen) {
				seen = true;
				owner = s_list[0] == t; // the first occurrence owns the row
				if (!owner)
					break;
#pragma unroll
				for (int i = 0; i < EMB_NPT; i++) {
					const int s = tid + i * 256;
					const bool live = EMB_NV % 256 == 0 || s < EMB_NV;
					if (vec && live) {
#pragma unroll
						for (int q = 0; q < EMB_VEC / 4; q++) {
							const float4 v = reinterpret_cast<const float4 *>(drow + s * EMB_VEC)[q];
							acc[i][4 * q] = v.x, acc[i][4 * q + 1] = v.y;
							acc[i][4 * q + 2] = v.z, acc[i][4 * q + 3] = v.w;
						}
					} else {
#pragma unroll
						for (int e = 0; e < EMB_VEC; e++)
							acc[i][e] = live && s * EMB_VEC + e < H ? drow[s * EMB_VEC + e] : 0.0f;
					}
				}
			}
#pragma unroll 4
			for (int q = 0; q < n; q++) { // loads of 4 rows in flight; sums stay in token order
				const act_t *src = dout + (long)s_list[q] * H;
#pragma unroll
				for (int i = 0; i < EMB_NPT; i++) {
					const int s = tid + i * 256;
					if (EMB_NV % 256 == 0 || s < EMB_NV) {
						float f[EMB_VEC];
						emb_slot_load(src, s, vec, f);
#pragma unroll
						for (int e = 0; e < EMB_VEC; e++)
							acc[i][e] += f[e];
					}
				}
			}
			__syncthreads(); // s_list and s_cnt are rewritten by the next step
		}
		if (!owner)
			continue;
#pragma unroll
		for (int i = 0; i < EMB_NPT; i++) {
			const int s = tid + i * 256;
			if (!(EMB_NV % 256 == 0 || s < EMB_NV))
				continue;
			if (vec) {
#pragma unroll
				for (int q = 0; q < EMB_VEC / 4; q++)
					reinterpret_cast<float4 *>(drow + s * EMB_VEC)[q] =
						make_float4(acc[i][4 * q], acc[i][4 * q + 1], acc[i][4 * q + 2], acc[i][4 * q + 3]);
			} else {
#pragma unroll
				for (int e = 0; e < EMB_VEC; e++)
					if (s * EMB_VEC + e < H)
						drow[s * EMB_VEC + e] = acc[i][e];
			}
		}
	}
}

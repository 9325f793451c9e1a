// moe_permute.cu - gather tokens into the expert-contiguous buffer: x_perm[dest[t, k]] = x[t]
// (step 4 of the dispatch, see moe_count.cu).
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// T = rows, H = hidden, K = top-k
// Shapes: x [T, H] act_t, dest [T, K] int (from moe_route / moe_capacity; -1 = dropped),
// x_perm [offsets[E], H] act_t (only rows that some pair maps to are written: all of them).
//
// One warp per token, driven from the token side: each 16-byte piece of x[t] is read once and
// stored to its K rows, so x is read once and x_perm written once, both coalesced. A pure copy
// (bit-exact in bf16). H not a multiple of 16 bytes falls back to element copies.
#include "moec_device.cuh"

#define MP_VEC (16 / (int)sizeof(act_t))  // elements per 16-byte piece

static_assert(K >= 1 && K <= 32 && H >= 1, "moe_permute: need 1 <= K <= 32");

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const act_t *x, const int *dest, act_t *x_perm, int rows)
{
	const int lane = threadIdx.x & 31;
	const int t = blockIdx.x * 8 + (threadIdx.x >> 5);
	if (t >= rows)
		return;  // the whole warp
	const int my_d = lane < K ? dest[(size_t)t * K + lane] : -1;
	int d[K];
#pragma unroll
	for (int k = 0; k < K; k++)
		d[k] = __shfl_sync(0xffffffffu, my_d, k);

	if (H % MP_VEC == 0) {
		const uint4 *src = (const uint4 *)(x + (size_t)t * H);
#pragma unroll 2
		for (int v = lane; v < H / MP_VEC; v += 32) {
			const uint4 u = src[v];
#pragma unroll
			for (int k = 0; k < K; k++)
				if (d[k] >= 0)
					((uint4 *)(x_perm + (size_t)d[k] * H))[v] = u;
		}
	} else {
		for (int h = lane; h < H; h += 32) {
			const act_t u = x[(size_t)t * H + h];
#pragma unroll
			for (int k = 0; k < K; k++)
				if (d[k] >= 0)
					x_perm[(size_t)d[k] * H + h] = u;
		}
	}
}

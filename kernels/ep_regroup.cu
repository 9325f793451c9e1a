// ep_regroup.cu - expert parallelism: move received rows between arrival order [source rank]
// [local expert] and expert-major order [local expert][source rank], one launch per regroup.
// moec: constants E H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// E = blocks = ep x E_LOCAL (the whole model's experts: one block per (source rank, local
// expert)), H = hidden, rows = rows received (runtime/ep.h's rt->rows).
// Shapes: src [rows, H] act_t, table [2E + 1] int, dst [rows, H] act_t (no aliasing).
// table[0..E]: the blocks' first destination rows in destination order, table[E] = rows
// (block b holds table[b + 1] - table[b] rows, zero allowed); table[E + 1 + b]: block b's
// first source row. runtime/ep.c builds one table per direction from the route, O(E) on the
// host, so the kernel does the ep x E_LOCAL copies of the old per-block memcpy loop at once.
//
// One warp per destination row: its block is the last b with table[b] <= row (a binary
// search over E + 1 ints every lane makes alike, so each load is one broadcast; the table
// stays in L1), then the row moves in 16-byte pieces, coalesced on both sides. A pure copy
// (bit-exact); rows whose bytes are not a multiple of 16, or unaligned pointers, fall back to
// element copies.
#include "moec_device.cuh"

#define ER_VEC (16 / (int)sizeof(act_t))  // elements per 16-byte piece

static_assert(E >= 1 && H >= 1, "ep_regroup: need E >= 1 and H >= 1");

// The block holding destination row `row`: empty blocks share their start with the next
// block, so the last start <= row is always a non-empty one.
__device__ __forceinline__ int er_block(const int *table, int row)
{
	int lo = 0, hi = E;  // table[lo] <= row < table[hi]
	while (hi - lo > 1) {
		const int mid = (lo + hi) >> 1;
		if (__ldg(table + mid) <= row)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const act_t *src, const int *table, act_t *dst, int rows)
{
	const int lane = threadIdx.x & 31;
	const int row = blockIdx.x * 8 + (threadIdx.x >> 5);
	if (row >= rows)
		return;  // the whole warp
	const int b = er_block(table, row);
	const int from = __ldg(table + E + 1 + b) + (row - __ldg(table + b));
	const act_t *s = src + (size_t)from * H;
	act_t *d = dst + (size_t)row * H;
	const bool vec = H % ER_VEC == 0 && (((size_t)src | (size_t)dst) & 15) == 0;
	if (vec) {
#pragma unroll 4
		for (int v = lane; v < H / ER_VEC; v += 32)
			((uint4 *)d)[v] = ((const uint4 *)s)[v];
	} else {
		for (int h = lane; h < H; h += 32)
			d[h] = s[h];
	}
}

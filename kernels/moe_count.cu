// moe_count.cu - per-block expert histograms of the (token, k) routing pairs: step 1 of the
// deterministic counting sort that lays tokens out expert by expert.
// moec: constants E K
// moec: launch grid=(ceil(rows/256)) block=(256)
//
// T = rows, E = routed experts (all of them: the permutation is built on the token's own
// rank, before any all-to-all), K = top-k, nblk = ceil(T/256)
// Shapes: topk_ids [T, K] int, blk_count [nblk, E] int (overwritten).
//
// The dispatch pipeline (each step one kernel; all integer, so bitwise deterministic, and
// every CPU twin computes exactly the same integers):
//   1. moe_count:    blk_count[b, e] = pairs of tokens [256b, 256b + 256) routed to e
//   2. moe_scan:     blk_count -> per-block base ranks (in place), counts, offsets, n_dropped
//   3. moe_route:    dest [T, K] (row of x_perm for each pair, -1 when dropped) and row_src
//   3b. moe_capacity (only CAPACITY > 0 with DROP_POLICY 1, low_prob): picks the kept pairs
//   4. moe_permute:  x [T, H] -> x_perm [rows_perm, H]
// Within an expert, rows are in token order (a token's K ids are distinct, so k never ties).
// An id outside [0, E) (e.g. -1 for a masked token) is no pair: not counted, dest -1.
#include "moec_device.cuh"

static_assert(K >= 1 && E >= 1, "moe_count: bad E/K");

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const int *topk_ids, int *blk_count, int rows)
{
	__shared__ int s_cnt[E];
	const int tid = threadIdx.x;
	for (int e = tid; e < E; e += blockDim.x)
		s_cnt[e] = 0;
	__syncthreads();

	// The block's pairs are contiguous in topk_ids: read them coalesced.
	const int p0 = blockIdx.x * 256 * K;
	const int p1 = min(rows * K, p0 + 256 * K);
	for (int p = p0 + tid; p < p1; p += blockDim.x) {
		const int e = topk_ids[p];
		if ((unsigned int)e < (unsigned int)E)
			atomicAdd(&s_cnt[e], 1);
	}
	__syncthreads();
	for (int e = tid; e < E; e += blockDim.x)
		blk_count[(size_t)blockIdx.x * E + e] = s_cnt[e];
}

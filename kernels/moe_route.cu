// moe_route.cu - the permutation: for each (token, k) pair its row in the expert-contiguous
// buffer (capacity drops applied), and the inverse map: step 3 of the dispatch (moe_count.cu).
// moec: constants E K CAPACITY DROP_POLICY
// moec: launch grid=(ceil(rows/256)) block=(256)
//
// T = rows, E = routed experts, K = top-k, nblk = ceil(T/256), P = T*K pairs, pair p = t*K + k
// Shapes: topk_ids [T, K] int; blk_base [nblk, E] int and counts [E], offsets [E+1] int from
// moe_scan; dest [T, K] int (row of x_perm, -1 = dropped or invalid id); row_src [offsets[E]]
// int (pair held by each row of x_perm: token = row_src / K; lets a grouped GEMM gather its A
// rows straight from x); pair_scratch [P] int (DROP_POLICY 1 only, else unused, may be NULL).
//
// A pair's rank r inside its expert = pairs of that expert from earlier tokens. Computed
// without ordering atomics: every warp sets bit `lane` of s_bits[warp][e] for each of its
// tokens' experts, so r = block base (moe_scan) + popcount of earlier warps' masks + popcount
// of the lanes below in the own warp.
// Capacity (CAPACITY > 0; CAPACITY = ceil(capacity_factor * T * K / E) on this rank):
//   DROP_POLICY 2, late_tokens: keep r < CAPACITY (the earliest tokens); row = offsets[e] + r.
//   DROP_POLICY 1, low_prob: which pairs survive depends on all of the expert's weights, so
//     this kernel only writes each pair's dropless slot, pair_scratch[start_e + r] (start_e =
//     sum of counts before e), and moe_capacity (grid E) selects and writes dest and row_src.
#include "moec_device.cuh"

#define MR_LOW_PROB (CAPACITY > 0 && DROP_POLICY == 1)

static_assert(K >= 1 && E >= 1 && CAPACITY >= 0, "moe_route: bad E/K/CAPACITY");
static_assert(9 * E * 4 <= 48 * 1024, "moe_route: static smem 9 * E * 4 bytes over 48 KB (E <= 1365)");
static_assert(CAPACITY == 0 || DROP_POLICY == 1 || DROP_POLICY == 2,
	      "moe_route: CAPACITY > 0 needs DROP_POLICY 1 (low_prob) or 2 (late_tokens)");

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const int *topk_ids, const int *blk_base, const int *counts, const int *offsets, int *dest,
	    int *row_src, int *pair_scratch, int rows)
{
	__shared__ unsigned int s_bits[8][E];
#if MR_LOW_PROB
	__shared__ int s_start[E];
#endif
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	for (int i = tid; i < 8 * E; i += blockDim.x)
		(&s_bits[0][0])[i] = 0u;
#if MR_LOW_PROB
	if (warp == 0) {  // s_start = exclusive scan of counts, lanes own contiguous runs
		const int per = (E + 31) / 32, e0 = lane * per;
		int sum = 0;
		for (int e = e0; e < min(E, e0 + per); e++)
			sum += counts[e];
		int inc = sum;
#pragma unroll
		for (int o = 1; o < 32; o <<= 1) {
			const int n = __shfl_up_sync(0xffffffffu, inc, o);
			if (lane >= o)
				inc += n;
		}
		int run = inc - sum;
		for (int e = e0; e < min(E, e0 + per); e++) {
			s_start[e] = run;
			run += counts[e];
		}
	}
#else
	(void)counts;
	(void)pair_scratch;
#endif
	__syncthreads();

	const int t = blockIdx.x * 256 + tid;
	const bool live = t < rows;
	int ids[K];
#pragma unroll
	for (int k = 0; k < K; k++) {
		ids[k] = live ? topk_ids[(size_t)t * K + k] : -1;
		if ((unsigned int)ids[k] < (unsigned int)E)
			atomicOr(&s_bits[warp][ids[k]], 1u << lane);
	}
	__syncthreads();
	if (!live)
		return;

	const unsigned int below = (1u << lane) - 1u;
	const int *base = blk_base + (size_t)blockIdx.x * E;
#pragma unroll
	for (int k = 0; k < K; k++) {
		const int e = ids[k];
		const int p = t * K + k;
		if ((unsigned int)e >= (unsigned int)E) {
			dest[p] = -1;
			continue;
		}
		int r = base[e] + __popc(s_bits[warp][e] & below);
		for (int w = 0; w < warp; w++)
			r += __popc(s_bits[w][e]);
#if MR_LOW_PROB
		pair_scratch[s_start[e] + r] = p;
#else
		if (CAPACITY == 0 || r < CAPACITY) {
			const int row = offsets[e] + r;
			dest[p] = row;
			row_src[row] = p;
		} else {
			dest[p] = -1;
		}
#endif
	}
}

// moe_route.c - CPU twin of moe_route.cu: each (token, k) pair's row in the expert-contiguous
// buffer (capacity drops applied) and the inverse map.
// moec: constants E K CAPACITY DROP_POLICY
// moec: launch grid=(ceil(rows/256)) block=(256)
//
// T = rows, pair p = t*K + k
// Shapes: topk_ids [T, K] int, blk_base [nblk, E], counts [E], offsets [E+1] int (moe_scan),
// dest [T, K] int, row_src [offsets[E]] int, pair_scratch [T*K] int (DROP_POLICY 1 only).
// See moe_route.cu. Walking the tokens in order gives the same ranks the GPU computes with
// warp bit masks; the rank restarts from blk_base at every 256-token block, as there.
#include "moec_host.h"

_Static_assert(CAPACITY == 0 || DROP_POLICY == 1 || DROP_POLICY == 2,
	       "moe_route: CAPACITY > 0 needs DROP_POLICY 1 (low_prob) or 2 (late_tokens)");

void MOEC_KERNEL_CPU(const int *topk_ids, const int *blk_base, const int *counts, const int *offsets, int *dest,
		     int *row_src, int *pair_scratch, int rows)
{
	int rank[E];
#if CAPACITY > 0 && DROP_POLICY == 1
	(void)offsets; /* moe_capacity lays out the rows */
	(void)dest;
	(void)row_src;
	int start[E];
	for (int e = 0, run = 0; e < E; e++) {
		start[e] = run;
		run += counts[e];
	}
#else
	(void)counts;
	(void)pair_scratch;
#endif
	for (int t = 0; t < rows; t++) {
		if (t % 256 == 0)
			memcpy(rank, blk_base + (size_t)(t / 256) * E, sizeof rank);
		for (int k = 0; k < K; k++) {
			const int p = t * K + k;
			const int e = topk_ids[p];
			if ((unsigned int)e >= (unsigned int)E) {
				dest[p] = -1;
				continue;
			}
			const int r = rank[e]++;
#if CAPACITY > 0 && DROP_POLICY == 1
			pair_scratch[start[e] + r] = p;
#else
			if (CAPACITY == 0 || r < CAPACITY) {
				dest[p] = offsets[e] + r;
				row_src[offsets[e] + r] = p;
			} else {
				dest[p] = -1;
			}
#endif
		}
	}
}

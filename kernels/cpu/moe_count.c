// moe_count.c - CPU twin of moe_count.cu: per-block expert histograms of the routing pairs.
// moec: constants E K
// moec: launch grid=(ceil(rows/256)) block=(256)
//
// T = rows, nblk = ceil(T/256)
// Shapes: topk_ids [T, K] int, blk_count [nblk, E] int (overwritten). The dispatch pipeline and
// its rules are described in moe_count.cu; this twin produces the same integers.
#include "moec_host.h"

void MOEC_KERNEL_CPU(const int *topk_ids, int *blk_count, int rows)
{
	const int nblk = (rows + 255) / 256;
	memset(blk_count, 0, (size_t)nblk * E * sizeof(int));
	for (int t = 0; t < rows; t++) {
		int *c = blk_count + (size_t)(t / 256) * E;
		for (int k = 0; k < K; k++) {
			const int e = topk_ids[(size_t)t * K + k];
			if ((unsigned int)e < (unsigned int)E)
				c[e]++;
		}
	}
}

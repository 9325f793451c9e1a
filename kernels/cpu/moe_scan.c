// moe_scan.c - CPU twin of moe_scan.cu: expert counts, capacity-clipped offsets, drops and the
// per-block base ranks (written over blk_count).
// moec: constants E CAPACITY
// moec: launch grid=(1) block=(1024)
//
// nblk = ceil(rows/256)
// Shapes: blk_count [nblk, E] int (in: histograms, out: exclusive prefix over blocks),
// counts [E] int, offsets [E+1] int, n_dropped [1] int. See moe_scan.cu.
#include "moec_host.h"

void MOEC_KERNEL_CPU(int *blk_count, int *counts, int *offsets, int *n_dropped, int rows)
{
	const int nblk = (rows + 255) / 256;
	for (int e = 0; e < E; e++)
		counts[e] = 0;
	for (int b = 0; b < nblk; b++) {
		int *c = blk_count + (size_t)b * E;
		for (int e = 0; e < E; e++) {
			const int v = c[e];
			c[e] = counts[e];
			counts[e] += v;
		}
	}
	int run = 0, drop = 0;
	for (int e = 0; e < E; e++) {
		const int kept = CAPACITY > 0 && counts[e] > CAPACITY ? CAPACITY : counts[e];
		offsets[e] = run;
		run += kept;
		drop += counts[e] - kept;
	}
	offsets[E] = run;
	*n_dropped = drop;
}

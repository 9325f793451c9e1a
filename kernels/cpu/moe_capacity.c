// moe_capacity.c - CPU twin of moe_capacity.cu: low_prob capacity drops (keep each expert's
// CAPACITY highest-weight pairs, ties to the earlier token), kept rows in token order.
// moec: constants E K CAPACITY
// moec: launch grid=(E) block=(1024), only when CAPACITY > 0 and DROP_POLICY == 1, after moe_route
//
// Shapes: topk_w [T, K] float, counts [E], offsets [E+1] int, pair_scratch [T*K] int, dest
// [T, K] int, row_src [offsets[E]] int. See moe_capacity.cu; the same 64-bit keys and the same
// radix select (8-bit digits from the top), so the kept set is identical.
#include "moec_host.h"

_Static_assert(CAPACITY > 0, "moe_capacity: only for CAPACITY > 0");

#ifndef MOE_CAPACITY_KEY_DEFINED /* constant-free helper: defined once per translation unit */
#define MOE_CAPACITY_KEY_DEFINED
/* The pair's priority: order-preserving bits of its weight, then the earlier token. */
static inline uint64_t moe_capacity_key(const float *topk_w, int p, int k)
{
	uint32_t u;
	memcpy(&u, &topk_w[p], sizeof u);
	u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
	return ((uint64_t)u << 32) | (uint64_t)(0xffffffffu - (uint32_t)(p / k));
}
#endif

void MOEC_KERNEL_CPU(const float *topk_w, const int *counts, const int *offsets, const int *pair_scratch, int *dest,
		     int *row_src)
{
	int start = 0;
	for (int e = 0; e < E; e++) {
		const int n = counts[e], base = offsets[e];
		const int *seg = pair_scratch + start;
		start += n;
		if (n <= CAPACITY) {
			for (int i = 0; i < n; i++) {
				dest[seg[i]] = base + i;
				row_src[base + i] = seg[i];
			}
			continue;
		}
		uint64_t prefix = 0;
		int need = CAPACITY;
		for (int shift = 56; shift >= 0; shift -= 8) {
			int hist[256] = {0};
			const uint64_t hmask = shift == 56 ? 0 : ~0ull << (shift + 8);
			for (int i = 0; i < n; i++) {
				const uint64_t key = moe_capacity_key(topk_w, seg[i], K);
				if ((key & hmask) == prefix)
					hist[(key >> shift) & 255]++;
			}
			int above = 0, d = 255;
			while (above + hist[d] < need)
				above += hist[d--];
			need -= above;
			prefix |= (uint64_t)d << shift;
			if (hist[d] == need)
				break;
		}
		for (int i = 0, row = base; i < n; i++) {
			const int p = seg[i];
			if (moe_capacity_key(topk_w, p, K) >= prefix) {
				dest[p] = row;
				row_src[row++] = p;
			} else {
				dest[p] = -1;
			}
		}
	}
}

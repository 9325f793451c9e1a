// ep_regroup.c - CPU twin of ep_regroup.cu: rows moved block by block between arrival order
// [source rank][local expert] and expert-major order [local expert][source rank].
// moec: constants E H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// Shapes: src [rows, H] act_t, table [2E + 1] int, dst [rows, H] act_t. table[0..E]: the
// blocks' first destination rows (table[E] = rows); table[E + 1 + b]: block b's first source
// row. See ep_regroup.cu. A row copy (bit-exact in bf16).
#include "moec_host.h"

void MOEC_KERNEL_CPU(const act_t *src, const int *table, act_t *dst, int rows)
{
	(void)rows; /* table[E]: the blocks cover the rows */
	for (int b = 0; b < E; b++) {
		const int n = table[b + 1] - table[b];
		if (n > 0)
			memcpy(dst + (size_t)table[b] * H, src + (size_t)table[E + 1 + b] * H, (size_t)n * H * sizeof(act_t));
	}
}

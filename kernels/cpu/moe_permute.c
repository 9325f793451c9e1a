// moe_permute.c - CPU twin of moe_permute.cu: x_perm[dest[t, k]] = x[t].
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// Shapes: x [T, H] act_t, dest [T, K] int (-1 = dropped), x_perm [offsets[E], H] act_t.
// A row copy (bit-exact in bf16).
#include "moec_host.h"

void MOEC_KERNEL_CPU(const act_t *x, const int *dest, act_t *x_perm, int rows)
{
	for (int t = 0; t < rows; t++)
		for (int k = 0; k < K; k++) {
			const int d = dest[(size_t)t * K + k];
			if (d >= 0)
				memcpy(x_perm + (size_t)d * H, x + (size_t)t * H, H * sizeof(act_t));
		}
}

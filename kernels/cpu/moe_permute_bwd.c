// moe_permute_bwd.c - CPU twin of moe_permute_bwd.cu: dx[t] = sum_k dx_perm[dest[t, k]].
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// Shapes: dx_perm [offsets[E], H] act_t, dest [T, K] int (-1 = dropped: contributes 0),
// dx [T, H] act_t (overwritten). fp32 accumulation in k order, as the kernel.
#include "moec_host.h"

void MOEC_KERNEL_CPU(const act_t *dx_perm, const int *dest, act_t *dx, int rows)
{
	float acc[H];
	for (int t = 0; t < rows; t++) {
		for (int h = 0; h < H; h++)
			acc[h] = 0.f;
		for (int k = 0; k < K; k++) {
			const int d = dest[(size_t)t * K + k];
			if (d < 0)
				continue;
			const act_t *src = dx_perm + (size_t)d * H;
			for (int h = 0; h < H; h++)
				acc[h] += act_load(src + h);
		}
		for (int h = 0; h < H; h++)
			act_store(dx + (size_t)t * H + h, acc[h]);
	}
}

// moe_combine.c - CPU twin of moe_combine.cu: y[t] = sum_k topk_w[t, k] * y_perm[dest[t, k]].
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// Shapes: y_perm [offsets[E], H] act_t, dest [T, K] int (-1 = dropped: contributes 0),
// topk_w [T, K] float, y [T, H] act_t (overwritten). fp32 accumulation in k order.
#include "moec_host.h"

void MOEC_KERNEL_CPU(const act_t *y_perm, const int *dest, const float *topk_w, act_t *y, int rows)
{
	float acc[H];
	for (int t = 0; t < rows; t++) {
		for (int h = 0; h < H; h++)
			acc[h] = 0.f;
		for (int k = 0; k < K; k++) {
			const int d = dest[(size_t)t * K + k];
			if (d < 0)
				continue;
			const float w = topk_w[(size_t)t * K + k];
			const act_t *src = y_perm + (size_t)d * H;
			for (int h = 0; h < H; h++)
				acc[h] += w * act_load(src + h);
		}
		for (int h = 0; h < H; h++)
			act_store(y + (size_t)t * H + h, acc[h]);
	}
}

// moe_combine_bwd.c - CPU twin of moe_combine_bwd.cu: dy_perm[dest[t, k]] = topk_w[t, k] * dy[t],
// dtopk_w[t, k] = dot(dy[t], y_perm[dest[t, k]]).
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// Shapes: dy [T, H] act_t, y_perm [offsets[E], H] act_t, dest [T, K] int, topk_w [T, K] float,
// dy_perm [offsets[E], H] act_t, dtopk_w [T, K] float (0 for dropped pairs).
#include "moec_host.h"

void MOEC_KERNEL_CPU(const act_t *dy, const act_t *y_perm, const int *dest, const float *topk_w, act_t *dy_perm,
		     float *dtopk_w, int rows)
{
	float g[H];
	for (int t = 0; t < rows; t++) {
		for (int h = 0; h < H; h++)
			g[h] = act_load(dy + (size_t)t * H + h);
		for (int k = 0; k < K; k++) {
			const int d = dest[(size_t)t * K + k];
			float dot = 0.f;
			if (d >= 0) {
				const float w = topk_w[(size_t)t * K + k];
				const act_t *yp = y_perm + (size_t)d * H;
				act_t *o = dy_perm + (size_t)d * H;
				for (int h = 0; h < H; h++) {
					dot += g[h] * act_load(yp + h);
					act_store(o + h, w * g[h]);
				}
			}
			dtopk_w[(size_t)t * K + k] = dot;
		}
	}
}

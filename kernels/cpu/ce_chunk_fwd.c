/* ce_chunk_fwd.c - CPU twin of ce_chunk_fwd.cu: fold one vocab chunk of logits into the
 * per-row running (max, sum of exp) and pick up the label's logit.
 * moec: constants V
 *
 * Shapes (rows, chunk, v0 = runtime): row_max, row_sum, target [rows] float (v0 == 0 starts
 * them), logits [rows, chunk] float (columns v0 .. v0+chunk-1), labels [rows] int (counted
 * iff 0 <= label < V). The chunk's own max and sum come first (two passes over the row,
 * fp32 sums in 8 lanes), then the same merge as the kernel. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float *row_max, float *row_sum, float *target, const float *logits, const int *labels, int rows,
                     int chunk, int v0)
{
	for (long r = 0; r < rows; r++) {
		const float *x = logits + r * chunk;
		float mc = -INFINITY;
		for (int c = 0; c < chunk; c++)
			mc = fmaxf(mc, x[c]);
		float sc = 0.0f;
		if (mc != -INFINITY) {
			float lane[8] = {0};
			int c = 0;
			for (; c + 8 <= chunk; c += 8)
				for (int l = 0; l < 8; l++)
					lane[l] += expf(x[c + l] - mc);
			for (; c < chunk; c++)
				lane[0] += expf(x[c] - mc);
			sc = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
		}
		if (v0 == 0) {
			row_max[r] = mc, row_sum[r] = sc;
		} else {
			const float m = row_max[r], s = row_sum[r], M = fmaxf(m, mc);
			if (M != -INFINITY) {
				row_sum[r] = (m == -INFINITY ? 0.0f : s * expf(m - M)) + (mc == -INFINITY ? 0.0f : sc * expf(mc - M));
				row_max[r] = M;
			}
		}
		const int label = labels[r];
		if (label >= 0 && label < V && label >= v0 && label - v0 < chunk)
			target[r] = x[label - v0];
		else if (v0 == 0)
			target[r] = 0.0f;
	}
}

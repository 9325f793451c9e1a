/* ce_chunk_bwd.c - CPU twin of ce_chunk_bwd.cu: dlogits = (exp(logit - lse) - onehot(label))
 * * (dloss / totals[1]) in place over one vocab chunk; 0 for ignored rows.
 * moec: constants V
 *
 * Shapes (rows, chunk, v0 = runtime): dlogits [rows, chunk] float (logits in, gradient out),
 * lse [rows] float, labels [rows] int, totals [3] float (totals[1] = denominator). */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float *dlogits, const float *lse, const int *labels, const float *totals, float dloss, int rows,
                     int chunk, int v0)
{
	const float n = totals[1];
	const float scale = n > 0.0f ? dloss / n : 0.0f;
	for (long r = 0; r < rows; r++) {
		float *x = dlogits + r * chunk;
		const int label = labels[r];
		if (!(label >= 0 && label < V) || scale == 0.0f) {
			memset(x, 0, (size_t)chunk * sizeof(float));
			continue;
		}
		const float l = lse[r];
		const long tc = (long)label - v0; /* the label's column, when it is in this chunk */
		for (int c = 0; c < chunk; c++)
			x[c] = (expf(x[c] - l) - (c == tc ? 1.0f : 0.0f)) * scale;
	}
}

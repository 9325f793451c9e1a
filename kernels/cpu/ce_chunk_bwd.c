/* ce_chunk_bwd.c - CPU twin of ce_chunk_bwd.cu: dlogits = (exp(logit - lse) - onehot(label))
 * * (dloss / totals[1]) over one vocab chunk, in fp32, stored as act_t; 0 for ignored rows.
 * moec: constants V ACT_BF16
 *
 * Shapes (rows, chunk, v0 = runtime): logits [rows, chunk] float, dlogits [rows, chunk] act_t
 * (may be logits itself where act_t is float), lse [rows] float, labels [rows] int,
 * totals [3] float (totals[1] = denominator). */
#include "moec_host.h"

void MOEC_KERNEL_CPU(const float *logits, act_t *dlogits, const float *lse, const int *labels, const float *totals,
                     float dloss, int rows, int chunk, int v0)
{
	const float n = totals[1];
	const float scale = n > 0.0f ? dloss / n : 0.0f;
	for (long r = 0; r < rows; r++) {
		const float *x = logits + r * chunk;
		act_t *d = dlogits + r * chunk;
		const int label = labels[r];
		if (!(label >= 0 && label < V) || scale == 0.0f) {
			for (int c = 0; c < chunk; c++)
				act_store(d + c, 0.0f);
			continue;
		}
		const float l = lse[r];
		const long tc = (long)label - v0; /* the label's column, when it is in this chunk */
		for (int c = 0; c < chunk; c++)
			act_store(d + c, (expf(x[c] - l) - (c == tc ? 1.0f : 0.0f)) * scale);
	}
}

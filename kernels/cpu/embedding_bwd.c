/* embedding_bwd.c - CPU twin of embedding_bwd.cu: dtable[ids[t] - v0, :] += dout[t, :].
 * moec: constants H ACT_BF16
 *
 * Shapes (tokens, v0, vocab = runtime): dtable [vocab, H] float (+=), dout [tokens, H]
 * act_t, ids [tokens] int (ids outside [v0, v0+vocab) are skipped). Tokens are added in
 * order, which is exactly the kernel's per-row order: the two agree bitwise. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float *dtable, const act_t *dout, const int *ids, int tokens, int v0, int vocab)
{
	for (long t = 0; t < tokens; t++) {
		const long id = (long)ids[t] - v0;
		if (id < 0 || id >= vocab)
			continue;
		float *d = dtable + id * H;
		const act_t *s = dout + t * H;
		for (int c = 0; c < H; c++)
			d[c] += act_load(s + c);
	}
}

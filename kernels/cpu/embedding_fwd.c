/* embedding_fwd.c - CPU twin of embedding_fwd.cu: out[t, :] = table[ids[t] - v0, :].
 * moec: constants H ACT_BF16
 *
 * Shapes (tokens, v0, vocab = runtime): out [tokens, H] act_t, table [vocab, H] act_t (rows
 * v0 .. v0+vocab-1 of the embedding), ids [tokens] int. Ids outside [v0, v0+vocab) give a
 * zero row. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(act_t *out, const act_t *table, const int *ids, int tokens, int v0, int vocab)
{
	for (long t = 0; t < tokens; t++) {
		const long id = (long)ids[t] - v0;
		if (id >= 0 && id < vocab)
			memcpy(out + t * H, table + id * H, H * sizeof(act_t));
		else
			for (int c = 0; c < H; c++)
				act_store(out + t * H + c, 0.0f);
	}
}

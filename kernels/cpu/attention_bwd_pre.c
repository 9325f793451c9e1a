/* attention_bwd_pre.c - CPU twin of attention_bwd_pre.cu: delta = rowsum(dout * out) per token and head.
 * moec: constants NH HD ACT_BF16
 *
 * T = tokens (runtime), NH query heads, HD head dim.
 * Shapes: out [T, NH, HD] act_t, dout [T, NH, HD] act_t, delta [NH, T] float. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(const act_t *out, const act_t *dout, float *delta, int tokens)
{
	for (int t = 0; t < tokens; t++) {
		for (int h = 0; h < NH; h++) {
			const act_t *o = out + ((size_t)t * NH + h) * HD, *d = dout + ((size_t)t * NH + h) * HD;
			float acc = 0.f;
			for (int e = 0; e < HD; e++)
				acc += act_load(o + e) * act_load(d + e);
			delta[(size_t)h * tokens + t] = acc;
		}
	}
}

// attention_bwd_pre.cu - attention backward prologue: delta = rowsum(dout * out) per token and head.
// moec: constants NH HD ACT_BF16
// moec: launch grid=((tokens * NH + 7) / 8) block=(256)
//
// T = tokens (runtime), NH query heads, HD head dim.
// Shapes: out [T, NH, HD] act_t (attention_fwd's output), dout [T, NH, HD] act_t,
//         delta [NH, T] float (the layout of attention_fwd's lse).
//
// delta[h, i] = sum_d dout[i, h, d] * out[i, h, d] (fp32 accumulation) is the softmax
// backward's row term: dS = P * (dP - delta) with dP = dout V^T, since
// sum_j P[i, j] dP[i, j] = dout[i] . (P V)[i] = dout[i] . out[i]. Computing it once here
// keeps out itself out of the attention_bwd kernel.
//
// One warp per (token, head) row of HD elements, 16-byte loads; 8 rows per block.
#include "moec_device.cuh"

#if ACT_BF16
#define ATTN_VEC 8 // elements per 16-byte load
#else
#define ATTN_VEC 4
#endif
static_assert(HD % ATTN_VEC == 0, "attention_bwd_pre: HD must be a multiple of 16 bytes");

extern "C" __global__ void __launch_bounds__(256) MOEC_KERNEL(const act_t *out, const act_t *dout, float *delta, int tokens)
{
	const int row = blockIdx.x * 8 + (threadIdx.x >> 5); // = token * NH + head
	const int lane = threadIdx.x & 31;
	if (row >= tokens * NH)
		return;
	const act_t *o = out + (size_t)row * HD, *d = dout + (size_t)row * HD;
	float acc = 0.f;
	for (int c = lane * ATTN_VEC; c < HD; c += 32 * ATTN_VEC) {
		const uint4 ov = *(const uint4 *)(o + c), dv = *(const uint4 *)(d + c);
		const act_t *oe = (const act_t *)&ov, *de = (const act_t *)&dv;
#pragma unroll
		for (int e = 0; e < ATTN_VEC; e++)
			acc += act_load(oe + e) * act_load(de + e);
	}
	acc = warp_sum(acc);
	if (lane == 0)
		delta[(size_t)(row % NH) * tokens + row / NH] = acc;
}

// rope_fwd.cu - rotary position embedding (HF rotate_half, non-interleaved), in place or not.
// moec: constants HD ROPE_THETA ACT_BF16
// moec: launch grid=(max(1, min(tokens, 1024))) block=(256)
//
// Shapes (tokens, heads = runtime; heads = NH for q, NKV for k, per TP rank):
//   y   [tokens, heads, HD] act_t   output; may alias x (in place: each element is read
//                                   and written by the same thread)
//   x   [tokens, heads, HD] act_t
//   pos [tokens]            int     position of each token in its document
// Math (HF Qwen3MoeRotaryEmbedding + apply_rotary_pos_emb, in fp32):
//   inv_freq[i] = 1 / ROPE_THETA^((2i)/HD), i < HD/2, as torch computes it in fp32: the
//                 exponent an fp32 quotient, the power rounded to fp32 (taken in double so
//                 it is the correctly rounded powf, the same on GPU and CPU), fp32 reciprocal
//   a = pos * inv_freq[i] (one fp32 product),  c = cos(a), s = sin(a) (rope_sincos below)
//   y[i]        = x[i] * c - x[i + HD/2] * s
//   y[i + HD/2] = x[i + HD/2] * c + x[i] * s
// Products and sums are rounded separately (__fmul_rn/__fadd_rn) like torch's eager mul/add,
// never fused. In bf16, HF rounds cos/sin and each product to bf16; moec rounds once.
//
// Geometry: ROPE_TPT threads per token, each owning ROPE_P consecutive frequencies; a
// thread computes its sin/cos once and applies them to every head of its token (loop over
// heads), so a warp reads 2 contiguous runs of each head per step. ROPE_TOK = 256/ROPE_TPT
// tokens per block and step (HD=128: 8; HD=32: 32); at most 1024 blocks stride over the
// tokens (any grid >= 1 is correct).
#include "moec_device.cuh"
#include "rope.cuh"

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(act_t *y, const act_t *x, const int *pos, int tokens, int heads)
{
	rope_apply(y, x, pos, tokens, heads, 1.0f);
}

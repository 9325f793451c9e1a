// rope_bwd.cu - backward of rope_fwd: the gradient rotated by -angle, in place or not.
// moec: constants HD ROPE_THETA ACT_BF16
// moec: launch grid=(max(1, min(tokens, 1024))) block=(256)
//
// Shapes (tokens, heads = runtime; heads = NH for dq, NKV for dk, per TP rank):
//   y   [tokens, heads, HD] act_t   dL/d(input of rope_fwd); may alias x (in place)
//   x   [tokens, heads, HD] act_t   dL/d(output of rope_fwd)
//   pos [tokens]            int     position of each token in its document
// The forward is a rotation of each pair (x[i], x[i + HD/2]) by the angle a, so its
// transpose is the rotation by -a: same cos, negated sin. Math (fp32):
//   inv_freq[i] = 1 / ROPE_THETA^((2i)/HD), i < HD/2, as torch computes it in fp32: the
//                 exponent an fp32 quotient, the power rounded to fp32 (taken in double so
//                 it is the correctly rounded powf, the same on GPU and CPU), fp32 reciprocal
//   a = pos * inv_freq[i] (one fp32 product),  c = cos(a), s = sin(a) (rope_sincos below)
//   y[i]        = x[i] * c + x[i + HD/2] * s
//   y[i + HD/2] = x[i + HD/2] * c - x[i] * s
// Products and sums are rounded separately (__fmul_rn/__fadd_rn), never fused.
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
	rope_apply(y, x, pos, tokens, heads, -1.0f);
}

// ce_chunk_bwd.cu - fused cross-entropy, backward: a recomputed logits chunk -> dlogits in the compute precision.
// moec: constants V ACT_BF16
// moec: launch grid=(max(1, rows)) block=(256)
//
// Shapes (rows, chunk, v0 = runtime):
//   logits  [rows, chunk] float   the logits of columns v0 .. v0+chunk-1 (recomputed by the
//                                 host's GEMM)
//   dlogits [rows, chunk] act_t   out: dL/dlogits, which the host GEMMs into dhidden and
//                                 dW_lm. Written in act_t directly, so a bf16 step needs no
//                                 separate cast of the chunk (an fp32 pass over T x chunk
//                                 each way); in fp32 builds it may be logits itself (in place).
//   lse     [rows]        float   from ce_finish
//   labels  [rows]        int     counted iff 0 <= label < V
//   totals  [3]           float   totals[1] = the denominator (ce_finish's count, or the
//                                 host's count over the whole step)
//   dloss   float                 gradient of the mean loss (1, or a loss scale)
// dlogits = (exp(logit - lse) - [col == label]) * (dloss / totals[1]) for counted rows,
// 0 for ignored rows (and everything when totals[1] == 0); computed in fp32, rounded once.
// Geometry: one block per row (grid-stride), 4 columns a step when chunk % 4 == 0 and both
// rows are aligned for it (16 bytes of logits, 4 act_t of dlogits).
#include "moec_device.cuh"

// Four act_t at p (aligned to 4 * sizeof(act_t)).
__device__ __forceinline__ void store4(act_t *p, float4 a)
{
#if ACT_BF16
	__nv_bfloat162 h[2] = {__floats2bfloat162_rn(a.x, a.y), __floats2bfloat162_rn(a.z, a.w)};
	*reinterpret_cast<uint2 *>(p) = *reinterpret_cast<uint2 *>(h);
#else
	*reinterpret_cast<float4 *>(p) = a;
#endif
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const float *logits, act_t *dlogits, const float *lse, const int *labels, const float *totals, float dloss,
            int rows, int chunk, int v0)
{
	const float n = totals[1];
	const float scale = n > 0.0f ? dloss / n : 0.0f;
	const bool vec = chunk % 4 == 0 && ((unsigned long long)logits & 15) == 0 &&
	                 ((unsigned long long)dlogits & (4 * sizeof(act_t) - 1)) == 0;
	for (long r = blockIdx.x; r < rows; r += gridDim.x) {
		const float *x = logits + r * chunk;
		act_t *d = dlogits + r * chunk;
		const int label = labels[r];
		const bool counted = label >= 0 && label < V && scale != 0.0f;
		const float l = counted ? lse[r] : 0.0f;
		const long tc = counted ? (long)label - v0 : -1; // target column in this chunk, if any
		if (vec) {
			for (int q = threadIdx.x; q < chunk / 4; q += blockDim.x) {
				float4 a = reinterpret_cast<const float4 *>(x)[q];
				if (counted) {
					const int c = 4 * q;
					a.x = (expf(a.x - l) - (c == tc ? 1.0f : 0.0f)) * scale;
					a.y = (expf(a.y - l) - (c + 1 == tc ? 1.0f : 0.0f)) * scale;
					a.z = (expf(a.z - l) - (c + 2 == tc ? 1.0f : 0.0f)) * scale;
					a.w = (expf(a.w - l) - (c + 3 == tc ? 1.0f : 0.0f)) * scale;
				} else {
					a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
				}
				store4(d + 4 * q, a);
			}
		} else {
			for (int c = threadIdx.x; c < chunk; c += blockDim.x)
				act_store(d + c, counted ? (expf(x[c] - l) - (c == tc ? 1.0f : 0.0f)) * scale : 0.0f);
		}
	}
}

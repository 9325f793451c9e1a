// ce_chunk_bwd.cu - fused cross-entropy, backward: a recomputed logits chunk -> dlogits, in place.
// moec: constants V
// moec: launch grid=(max(1, rows)) block=(256)
//
// Shapes (rows, chunk, v0 = runtime):
//   dlogits [rows, chunk] float   in: the logits of columns v0 .. v0+chunk-1 (recomputed by
//                                 the host's GEMM); out: dL/dlogits, which the host GEMMs
//                                 into dhidden and dW_lm
//   lse     [rows]        float   from ce_finish
//   labels  [rows]        int     counted iff 0 <= label < V
//   totals  [3]           float   totals[1] = the denominator (ce_finish's count, or the
//                                 host's count over the whole step)
//   dloss   float                 gradient of the mean loss (1, or a loss scale)
// dlogits = (exp(logit - lse) - [col == label]) * (dloss / totals[1]) for counted rows,
// 0 for ignored rows (and everything when totals[1] == 0).
// Geometry: one block per row (grid-stride), float4 when chunk % 4 == 0 and aligned.
#include "moec_device.cuh"

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(float *dlogits, const float *lse, const int *labels, const float *totals, float dloss, int rows,
            int chunk, int v0)
{
	const float n = totals[1];
	const float scale = n > 0.0f ? dloss / n : 0.0f;
	const bool vec = chunk % 4 == 0 && ((unsigned long long)dlogits & 15) == 0;
	for (long r = blockIdx.x; r < rows; r += gridDim.x) {
		float *x = dlogits + r * chunk;
		const int label = labels[r];
		const bool counted = label >= 0 && label < V && scale != 0.0f;
		const float l = counted ? lse[r] : 0.0f;
		const long tc = counted ? (long)label - v0 : -1; // target column in this chunk, if any
		if (vec) {
			float4 *x4 = reinterpret_cast<float4 *>(x);
			for (int q = threadIdx.x; q < chunk / 4; q += blockDim.x) {
				float4 a = x4[q];
				if (counted) {
					const int c = 4 * q;
					a.x = (expf(a.x - l) - (c == tc ? 1.0f : 0.0f)) * scale;
					a.y = (expf(a.y - l) - (c + 1 == tc ? 1.0f : 0.0f)) * scale;
					a.z = (expf(a.z - l) - (c + 2 == tc ? 1.0f : 0.0f)) * scale;
					a.w = (expf(a.w - l) - (c + 3 == tc ? 1.0f : 0.0f)) * scale;
				} else {
					a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
				}
				x4[q] = a;
			}
		} else {
			for (int c = threadIdx.x; c < chunk; c += blockDim.x)
				x[c] = counted ? (expf(x[c] - l) - (c == tc ? 1.0f : 0.0f)) * scale : 0.0f;
		}
	}
}

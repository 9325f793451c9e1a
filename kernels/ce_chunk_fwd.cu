// ce_chunk_fwd.cu - fused cross-entropy, forward: fold one vocabulary chunk of logits into per-row online-softmax state.
// moec: constants V
// moec: launch grid=(max(1, rows)) block=(256)
//
// The LM head + cross-entropy never materializes [T, V]: for each vocab chunk [v0, v0+chunk)
// the host computes logits = hidden @ W_lm[v0:v0+chunk]^T with a GEMM (fp32 out), then this
// kernel folds it into running statistics; ce_finish turns them into losses; the backward
// recomputes each chunk and ce_chunk_bwd turns it into dlogits in place.
// Shapes (rows = T of the micro-batch, chunk, v0 = runtime; the last chunk may be short):
//   row_max [rows]        float   running max of the logits seen so far
//   row_sum [rows]        float   running sum of exp(logit - row_max)
//   target  [rows]        float   the logit of the row's label, once its chunk is seen
//   logits  [rows, chunk] float   columns v0 .. v0+chunk-1, row-major (leading dim = chunk)
//   labels  [rows]        int     already shifted (row t predicts token t+1); a label
//                                 outside [0, V) - -100 in particular - is ignored
// The chunk with v0 == 0 starts the state (overwrites all three arrays), so chunks must go
// in order from v0 = 0; any chunk sizes work. Merging state (m, s) with a chunk's (mc, sc):
//   M = max(m, mc),  s = s * exp(m - M) + sc * exp(mc - M)       (exp(-inf) = 0 starts it)
// Geometry: one block per row (grid-stride); each thread keeps its own (max, sum) over a
// strided part of the row, rescaling its sum only when its max grows; then a shuffle/shared
// reduction merges the 256 states. float4 loads when chunk % 4 == 0 and logits are aligned.
#include "moec_device.cuh"

#define CE_NEG_INF __uint_as_float(0xff800000u) // -inf (NVRTC has no <math.h> INFINITY)

__device__ __forceinline__ void softmax_merge(float &m, float &s, float m2, float s2)
{
	const float M = fmaxf(m, m2);
	if (M == CE_NEG_INF)
		return; // both empty
	s = (m == CE_NEG_INF ? 0.0f : s * expf(m - M)) + (m2 == CE_NEG_INF ? 0.0f : s2 * expf(m2 - M));
	m = M;
}

// Fold a few values into a thread's (m, s).
__device__ __forceinline__ void fold4(float &m, float &s, float a, float b, float c, float d)
{
	const float mx = fmaxf(fmaxf(a, b), fmaxf(c, d));
	if (mx > m) {
		s = m == CE_NEG_INF ? 0.0f : s * expf(m - mx);
		m = mx;
	}
	if (m != CE_NEG_INF)
		s += (expf(a - m) + expf(b - m)) + (expf(c - m) + expf(d - m));
}

__device__ __forceinline__ void fold1(float &m, float &s, float a)
{
	if (a > m) {
		s = m == CE_NEG_INF ? 0.0f : s * expf(m - a);
		m = a;
	}
	if (m != CE_NEG_INF)
		s += expf(a - m);
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(float *row_max, float *row_sum, float *target, const float *logits, const int *labels, int rows,
            int chunk, int v0)
{
	__shared__ float s_m[8], s_s[8];
	const bool vec = chunk % 4 == 0 && ((unsigned long long)logits & 15) == 0;
	for (long r = blockIdx.x; r < rows; r += gridDim.x) {
		const float *x = logits + r * chunk;
		float m = CE_NEG_INF, s = 0.0f;
		if (vec) {
			const float4 *x4 = reinterpret_cast<const float4 *>(x);
			for (int q = threadIdx.x; q < chunk / 4; q += blockDim.x) {
				const float4 a = __ldg(x4 + q);
				fold4(m, s, a.x, a.y, a.z, a.w);
			}
		} else {
			for (int c = threadIdx.x; c < chunk; c += blockDim.x)
				fold1(m, s, x[c]);
		}
		for (int o = 16; o > 0; o >>= 1) {
			const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
			softmax_merge(m, s, m2, s2);
		}
		if (threadIdx.x % 32 == 0)
			s_m[threadIdx.x / 32] = m, s_s[threadIdx.x / 32] = s;
		__syncthreads();
		if (threadIdx.x == 0) {
			for (int w = 1; w < 8; w++)
				softmax_merge(m, s, s_m[w], s_s[w]);
			if (v0 == 0) {
				row_max[r] = m, row_sum[r] = s;
			} else {
				float pm = row_max[r], ps = row_sum[r];
				softmax_merge(pm, ps, m, s);
				row_max[r] = pm, row_sum[r] = ps;
			}
			const int label = labels[r];
			const bool here = label >= 0 && label < V && label >= v0 && label - v0 < chunk;
			if (here)
				target[r] = x[label - v0];
			else if (v0 == 0)
				target[r] = 0.0f;
		}
		__syncthreads(); // s_m/s_s are reused by the next row
	}
}

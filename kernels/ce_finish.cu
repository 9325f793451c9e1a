// ce_finish.cu - fused cross-entropy: per-row loss and the mean over counted rows, from ce_chunk_fwd's state.
// moec: constants V
// moec: launch grid=(1) block=(1024)
//
// Shapes (rows = runtime):
//   loss    [rows] float   logsumexp - target logit; 0 for ignored rows (may be NULL)
//   lse     [rows] float   row_max + log(row_sum), for ce_chunk_bwd
//   totals  [3]    float   {sum of losses, number of counted rows, mean (0 if none counted)}
//   row_max, row_sum, target [rows] float   ce_chunk_fwd's state after the last chunk
//   labels  [rows] int     counted iff 0 <= label < V (HF's ignore_index -100 is not)
// Per row, in torch's order: log_softmax[label] = (target - max) - log(sum); loss = -that.
// The mean over counted rows is HF's default (reduction "mean", ignore_index -100); for a
// mean over the whole step (grad accumulation, data parallel) the host sums totals[0] and
// totals[1] over micro-batches/ranks and writes its own denominator for ce_chunk_bwd.
// Geometry: one block; thread i takes rows i, i+1024, ...; sums in double through a fixed
// tree, so the result is deterministic.
#include "moec_device.cuh"

extern "C" __global__ void __launch_bounds__(1024)
MOEC_KERNEL(float *loss, float *lse, float *totals, const float *row_max, const float *row_sum, const float *target,
            const int *labels, int rows)
{
	__shared__ double s_sum[32], s_cnt[32];
	double sum = 0.0, cnt = 0.0;
	for (int r = threadIdx.x; r < rows; r += blockDim.x) {
		const int label = labels[r];
		const bool counted = label >= 0 && label < V;
		const float ls = logf(row_sum[r]);
		const float l = counted ? ls - (target[r] - row_max[r]) : 0.0f;
		lse[r] = row_max[r] + ls;
		if (loss)
			loss[r] = l;
		sum += l;
		cnt += counted ? 1.0 : 0.0;
	}
	for (int o = 16; o > 0; o >>= 1) {
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
		cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
	}
	if (threadIdx.x % 32 == 0)
		s_sum[threadIdx.x / 32] = sum, s_cnt[threadIdx.x / 32] = cnt;
	__syncthreads();
	if (threadIdx.x == 0) {
		sum = cnt = 0.0;
		for (int w = 0; w < (int)(blockDim.x / 32); w++)
			sum += s_sum[w], cnt += s_cnt[w];
		totals[0] = (float)sum;
		totals[1] = (float)cnt;
		totals[2] = cnt > 0.0 ? (float)(sum / cnt) : 0.0f;
	}
}

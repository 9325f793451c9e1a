// moe_combine.cu - weighted un-permute: y[t] = sum_k topk_w[t, k] * y_perm[dest[t, k]].
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// T = rows, H = hidden, K = top-k
// Shapes: y_perm [offsets[E], H] act_t (expert outputs, the down GEMM's result), dest [T, K]
// int (-1 = dropped: contributes 0), topk_w [T, K] float (router_fwd: already renormalized and
// scaled), y [T, H] act_t (overwritten; the residual add is the caller's).
//
// One warp per token, fp32 accumulation in k order, 16-byte loads and stores; the token side
// gathers, so there are no atomics and the result is deterministic.
#include "moec_device.cuh"
#include "moe_gather.cuh"

static_assert(K >= 1 && K <= 32 && H >= 1, "moe_combine: need 1 <= K <= 32");

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const act_t *y_perm, const int *dest, const float *topk_w, act_t *y, int rows)
{
	const int lane = threadIdx.x & 31;
	const int t = blockIdx.x * 8 + (threadIdx.x >> 5);
	if (t >= rows)
		return;  // the whole warp
	const int my_d = lane < K ? dest[(size_t)t * K + lane] : -1;
	const float my_w = lane < K ? topk_w[(size_t)t * K + lane] : 0.f;
	int d[K];
	float w[K];
#pragma unroll
	for (int k = 0; k < K; k++) {
		d[k] = __shfl_sync(0xffffffffu, my_d, k);
		w[k] = __shfl_sync(0xffffffffu, my_w, k);
	}

	moe_gather_row<true>(y_perm, d, w, y + (size_t)t * H, lane);
}

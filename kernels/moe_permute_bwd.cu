// moe_permute_bwd.cu - backward of moe_permute: dx[t] = sum_k dx_perm[dest[t, k]].
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// T = rows, H = hidden, K = top-k
// Shapes: dx_perm [offsets[E], H] act_t (d loss / d x_perm, from the gate_up GEMM backward),
// dest [T, K] int (-1 = dropped: contributes 0), dx [T, H] act_t (overwritten, not accumulated).
//
// The scatter-add of the math is done as a gather from the token side: each token sums its
// own K rows (fp32, k = 0..K-1 in order), so there are no atomics and the result is
// deterministic. One warp per token, 16-byte loads.
#include "moec_device.cuh"
#include "moe_gather.cuh"

static_assert(K >= 1 && K <= 32 && H >= 1, "moe_permute_bwd: need 1 <= K <= 32");

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const act_t *dx_perm, const int *dest, act_t *dx, int rows)
{
	const int lane = threadIdx.x & 31;
	const int t = blockIdx.x * 8 + (threadIdx.x >> 5);
	if (t >= rows)
		return;  // the whole warp
	const int my_d = lane < K ? dest[(size_t)t * K + lane] : -1;
	int d[K];
#pragma unroll
	for (int k = 0; k < K; k++)
		d[k] = __shfl_sync(0xffffffffu, my_d, k);

	moe_gather_row<false>(dx_perm, d, nullptr, dx + (size_t)t * H, lane);
}

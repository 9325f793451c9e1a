// moe_combine_bwd.cu - backward of moe_combine: dy_perm[dest[t, k]] = topk_w[t, k] * dy[t]
// and dtopk_w[t, k] = dot(dy[t], y_perm[dest[t, k]]).
// moec: constants K H ACT_BF16
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// T = rows, H = hidden, K = top-k
// Shapes: dy [T, H] act_t (d loss / d y), y_perm [offsets[E], H] act_t (the forward's expert
// outputs), dest [T, K] int, topk_w [T, K] float, dy_perm [offsets[E], H] act_t (every row
// written exactly once: rows are unique to a pair), dtopk_w [T, K] float (0 for dropped
// pairs; feeds router_bwd).
//
// One warp per token: dy[t] is read once per 16-byte piece, each of the K rows is read and
// written once; the K dot products accumulate in fp32 per lane, then one warp sum each.
#include "moec_device.cuh"
#include "moe_gather.cuh"

static_assert(K >= 1 && K <= 32 && H >= 1, "moe_combine_bwd: need 1 <= K <= 32");

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const act_t *dy, const act_t *y_perm, const int *dest, const float *topk_w, act_t *dy_perm,
	    float *dtopk_w, int rows)
{
	const int lane = threadIdx.x & 31;
	const int t = blockIdx.x * 8 + (threadIdx.x >> 5);
	if (t >= rows)
		return;  // the whole warp
	const int my_d = lane < K ? dest[(size_t)t * K + lane] : -1;
	const float my_w = lane < K ? topk_w[(size_t)t * K + lane] : 0.f;
	int d[K];
	float w[K], dot[K];
#pragma unroll
	for (int k = 0; k < K; k++) {
		d[k] = __shfl_sync(0xffffffffu, my_d, k);
		w[k] = __shfl_sync(0xffffffffu, my_w, k);
		dot[k] = 0.f;
	}

	if (H % MG_VEC == 0) {
		for (int v = lane; v < H / MG_VEC; v += 32) {
			float g[MG_VEC];
			mg_load(dy + (size_t)t * H + v * MG_VEC, g);
#pragma unroll
			for (int k = 0; k < K; k++) {
				if (d[k] >= 0) {
					float f[MG_VEC], o[MG_VEC];
					mg_load(y_perm + (size_t)d[k] * H + v * MG_VEC, f);
#pragma unroll
					for (int q = 0; q < MG_VEC; q++) {
						dot[k] += g[q] * f[q];
						o[q] = w[k] * g[q];
					}
					mg_store(dy_perm + (size_t)d[k] * H + v * MG_VEC, o);
				}
			}
		}
	} else {
		for (int h = lane; h < H; h += 32) {
			const float g = act_load(dy + (size_t)t * H + h);
#pragma unroll
			for (int k = 0; k < K; k++) {
				if (d[k] >= 0) {
					dot[k] += g * act_load(y_perm + (size_t)d[k] * H + h);
					act_store(dy_perm + (size_t)d[k] * H + h, w[k] * g);
				}
			}
		}
	}
	float mine = 0.f;
#pragma unroll
	for (int k = 0; k < K; k++) {
		const float s = warp_sum(dot[k]);
		if (lane == k)
			mine = s;
	}
	if (lane < K)
		dtopk_w[(size_t)t * K + lane] = mine;
}

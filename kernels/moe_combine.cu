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

#define CB_VEC (16 / (int)sizeof(act_t))

static_assert(K >= 1 && K <= 32 && H >= 1, "moe_combine: need 1 <= K <= 32");

__device__ __forceinline__ void cb_load(const act_t *p, float (&f)[CB_VEC])
{
	const uint4 u = *(const uint4 *)p;
	const unsigned int w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
	for (int i = 0; i < 4; i++) {
#if ACT_BF16
		f[2 * i] = __uint_as_float(w[i] << 16);
		f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
#else
		f[i] = __uint_as_float(w[i]);
#endif
	}
}

__device__ __forceinline__ void cb_store(act_t *p, const float (&f)[CB_VEC])
{
	unsigned int w[4];
#pragma unroll
	for (int i = 0; i < 4; i++) {
#if ACT_BF16
		w[i] = (unsigned int)__bfloat16_as_ushort(__float2bfloat16_rn(f[2 * i])) |
		       ((unsigned int)__bfloat16_as_ushort(__float2bfloat16_rn(f[2 * i + 1])) << 16);
#else
		w[i] = __float_as_uint(f[i]);
#endif
	}
	*(uint4 *)p = make_uint4(w[0], w[1], w[2], w[3]);
}

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

	if (H % CB_VEC == 0) {
#pragma unroll 2
		for (int v = lane; v < H / CB_VEC; v += 32) {
			float acc[CB_VEC];
#pragma unroll
			for (int q = 0; q < CB_VEC; q++)
				acc[q] = 0.f;
#pragma unroll
			for (int k = 0; k < K; k++) {
				if (d[k] >= 0) {
					float f[CB_VEC];
					cb_load(y_perm + (size_t)d[k] * H + v * CB_VEC, f);
#pragma unroll
					for (int q = 0; q < CB_VEC; q++)
						acc[q] += w[k] * f[q];
				}
			}
			cb_store(y + (size_t)t * H + v * CB_VEC, acc);
		}
	} else {
		for (int h = lane; h < H; h += 32) {
			float acc = 0.f;
#pragma unroll
			for (int k = 0; k < K; k++)
				if (d[k] >= 0)
					acc += w[k] * act_load(y_perm + (size_t)d[k] * H + h);
			act_store(y + (size_t)t * H + h, acc);
		}
	}
}

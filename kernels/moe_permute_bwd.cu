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

#define PB_VEC (16 / (int)sizeof(act_t))

static_assert(K >= 1 && K <= 32 && H >= 1, "moe_permute_bwd: need 1 <= K <= 32");

__device__ __forceinline__ void pb_load(const act_t *p, float (&f)[PB_VEC])
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

__device__ __forceinline__ void pb_store(act_t *p, const float (&f)[PB_VEC])
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

	if (H % PB_VEC == 0) {
#pragma unroll 2
		for (int v = lane; v < H / PB_VEC; v += 32) {
			float acc[PB_VEC];
#pragma unroll
			for (int q = 0; q < PB_VEC; q++)
				acc[q] = 0.f;
#pragma unroll
			for (int k = 0; k < K; k++) {
				if (d[k] >= 0) {
					float f[PB_VEC];
					pb_load(dx_perm + (size_t)d[k] * H + v * PB_VEC, f);
#pragma unroll
					for (int q = 0; q < PB_VEC; q++)
						acc[q] += f[q];
				}
			}
			pb_store(dx + (size_t)t * H + v * PB_VEC, acc);
		}
	} else {
		for (int h = lane; h < H; h += 32) {
			float acc = 0.f;
#pragma unroll
			for (int k = 0; k < K; k++)
				if (d[k] >= 0)
					acc += act_load(dx_perm + (size_t)d[k] * H + h);
			act_store(dx + (size_t)t * H + h, acc);
		}
	}
}

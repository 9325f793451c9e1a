// moe_gather.cuh - the token-side gather shared by moe_combine.cu and moe_permute_bwd.cu
// (and the 16-byte row access of moe_combine_bwd.cu): out[t] = sum_k (w[k] *) src[d[k]] over
// a token's K rows, one warp per token, fp32 accumulation in k order, dropped rows (d < 0)
// skipped. Included after moec_device.cuh; reads K, H and ACT_BF16. The helpers are static:
// the emulators (tests/kernels/moe_routing_emu) link several instances into one program.
#ifndef MOEC_MOE_GATHER_CUH
#define MOEC_MOE_GATHER_CUH

#define MG_VEC (16 / (int)sizeof(act_t)) // act_t per 16-byte piece

static __device__ __forceinline__ void mg_load(const act_t *p, float (&f)[MG_VEC])
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

static __device__ __forceinline__ void mg_store(act_t *p, const float (&f)[MG_VEC])
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

// out = sum over k of (WEIGHTED ? w[k] * src[d[k]] : src[d[k]]), for the calling lane's
// share of the H columns (16-byte pieces when H allows, else elements). w is not read when
// !WEIGHTED (pass nullptr); the two forms are spelled apart so the weighted one contracts to
// an fma exactly as before and the plain one stays a plain add.
template <bool WEIGHTED>
static __device__ __forceinline__ void moe_gather_row(const act_t *src, const int (&d)[K], const float *w, act_t *out,
                                                      int lane)
{
	if (H % MG_VEC == 0) {
#pragma unroll 2
		for (int v = lane; v < H / MG_VEC; v += 32) {
			float acc[MG_VEC];
#pragma unroll
			for (int q = 0; q < MG_VEC; q++)
				acc[q] = 0.f;
#pragma unroll
			for (int k = 0; k < K; k++) {
				if (d[k] >= 0) {
					float f[MG_VEC];
					mg_load(src + (size_t)d[k] * H + v * MG_VEC, f);
#pragma unroll
					for (int q = 0; q < MG_VEC; q++) {
						if (WEIGHTED)
							acc[q] += w[k] * f[q];
						else
							acc[q] += f[q];
					}
				}
			}
			mg_store(out + v * MG_VEC, acc);
		}
	} else {
		for (int h = lane; h < H; h += 32) {
			float acc = 0.f;
#pragma unroll
			for (int k = 0; k < K; k++) {
				if (d[k] >= 0) {
					if (WEIGHTED)
						acc += w[k] * act_load(src + (size_t)d[k] * H + h);
					else
						acc += act_load(src + (size_t)d[k] * H + h);
				}
			}
			act_store(out + h, acc);
		}
	}
}

#endif

// rope.cuh - the RoPE machinery shared by rope_fwd.cu and rope_bwd.cu: geometry, the
// sin/cos of an fp32 angle, act_t pair access and the per-token loop (rope_apply). The two
// kernels differ only in the sign of sin: the backward is the rotation by -angle.
// Included after moec_device.cuh; reads HD, ROPE_THETA and ACT_BF16. The helpers are static:
// they depend on HD, and the emulators (tests/kernels/core_emu) link several instances into
// one program, where same-named inline functions of different HD would be merged.
#ifndef MOEC_ROPE_CUH
#define MOEC_ROPE_CUH

#define ROPE_P (HD % 4 == 0 ? 2 : 1)   // frequencies per thread: 2 gives 4/8-byte accesses
#define ROPE_TPT (HD / 2 / ROPE_P)     // threads per token
#define ROPE_TOK (256 / ROPE_TPT)      // tokens per block
static_assert(HD % 2 == 0 && ROPE_TPT <= 256, "rope: HD must be even and at most 1024");

// sin and cos of the fp32 angle a, correctly rounded to fp32 but for rare ties: Cody-Waite
// reduction by pi/2 in double (pi/2 split in three parts, the first two of <= 28 bits, so
// k * part is exact and the reduction error is ~1e-26 for |a| < 2^24, beyond which fp32
// positions are not exact anyway), then Taylor polynomials in double on |r| <= pi/4
// (truncation < 1e-16). Unlike sincosf it
// has no Payne-Hanek slow path and so no local-memory stack frame, and the CPU twin runs the
// same double code, so kernel and twin agree to the bit unless a value falls within ~1e-16
// of an fp32 rounding boundary. torch's fp32 cos/sin are within 1-2 ulp of these values.
static __device__ __forceinline__ void rope_sincos(float a, float *s, float *c)
{
	const double k = rint((double)a * 0.63661977236758134308); // 2/pi
	const double r = (((double)a - k * 1.570796325802803) - k * 9.920935739593517e-10) - k * 5.721188726109832e-18;
	const double r2 = r * r;
	const double sp = r + r * r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (1.0 / 362880 +
	                  r2 * (-1.0 / 39916800 + r2 * (1.0 / 6227020800.0 + r2 * (-1.0 / 1307674368000.0)))))));
	const double cp = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320 +
	                  r2 * (-1.0 / 3628800 + r2 * (1.0 / 479001600 + r2 * (-1.0 / 87178291200.0 +
	                  r2 * (1.0 / 20922789888000.0))))))));
	const int q = (int)((long long)k & 3);
	const double sv = q == 0 ? sp : q == 1 ? cp : q == 2 ? -sp : -cp;
	const double cv = q == 0 ? cp : q == 1 ? -sp : q == 2 ? -cp : sp;
	*s = (float)sv;
	*c = (float)cv;
}

// ROPE_P elements at p as floats (one 4- or 8-byte access when vec).
static __device__ __forceinline__ void pair_load(const act_t *p, bool vec, float *f)
{
#if ROPE_P == 2
	if (vec) {
#if ACT_BF16
		float2 t = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
#else
		float2 t = *reinterpret_cast<const float2 *>(p);
#endif
		f[0] = t.x, f[1] = t.y;
		return;
	}
#endif
#pragma unroll
	for (int e = 0; e < ROPE_P; e++)
		f[e] = act_load(p + e);
}

static __device__ __forceinline__ void pair_store(act_t *p, bool vec, const float *f)
{
#if ROPE_P == 2
	if (vec) {
#if ACT_BF16
		*reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(f[0], f[1]);
#else
		*reinterpret_cast<float2 *>(p) = make_float2(f[0], f[1]);
#endif
		return;
	}
#endif
#pragma unroll
	for (int e = 0; e < ROPE_P; e++)
		act_store(p + e, f[e]);
}

// y = x rotated by sin_sign * angle (1.0f: rope_fwd, -1.0f: rope_bwd), the body of both
// kernels. Negating sin is exact, and a - (x2 * -s) rounds exactly as a + x2 * s, so both
// directions share one formula bit for bit. Geometry and math: see rope_fwd.cu.
static __device__ __forceinline__ void rope_apply(act_t *y, const act_t *x, const int *pos, int tokens, int heads,
                                                  const float sin_sign)
{
	const int tl = threadIdx.x / ROPE_TPT, j = threadIdx.x % ROPE_TPT;
	if (tl >= ROPE_TOK)
		return; // the idle tail of the block when ROPE_TPT does not divide 256
	const unsigned long long align = ROPE_P * sizeof(act_t) - 1;
	const bool vec = (((unsigned long long)x | (unsigned long long)y) & align) == 0;

	float inv_freq[ROPE_P];
#pragma unroll
	for (int e = 0; e < ROPE_P; e++)
		inv_freq[e] = 1.0f / (float)pow((double)ROPE_THETA, (double)((float)(2 * (j * ROPE_P + e)) / (float)HD));

	for (long t = (long)blockIdx.x * ROPE_TOK + tl; t < tokens; t += (long)gridDim.x * ROPE_TOK) {
		const float p = (float)pos[t];
		float c[ROPE_P], s[ROPE_P];
#pragma unroll
		for (int e = 0; e < ROPE_P; e++) {
			rope_sincos(p * inv_freq[e], &s[e], &c[e]);
			if (sin_sign < 0.0f)
				s[e] = -s[e];
		}
		const long row = t * heads * HD + j * ROPE_P;
#pragma unroll 4
		for (int h = 0; h < heads; h++) {
			const long o = row + (long)h * HD;
			float x1[ROPE_P], x2[ROPE_P], y1[ROPE_P], y2[ROPE_P];
			pair_load(x + o, vec, x1);
			pair_load(x + o + HD / 2, vec, x2);
#pragma unroll
			for (int e = 0; e < ROPE_P; e++) {
				y1[e] = __fsub_rn(__fmul_rn(x1[e], c[e]), __fmul_rn(x2[e], s[e]));
				y2[e] = __fadd_rn(__fmul_rn(x2[e], c[e]), __fmul_rn(x1[e], s[e]));
			}
			pair_store(y + o, vec, y1);
			pair_store(y + o + HD / 2, vec, y2);
		}
	}
}

#endif

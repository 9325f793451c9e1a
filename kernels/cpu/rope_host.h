/* rope_host.h - what the RoPE twins (rope_fwd.c, rope_bwd.c) share: rope_sincos, the same
 * double-precision reduction and polynomials as kernels/rope.cuh, and the loop (rope_host).
 * Include after moec_host.h; safe to include from several twins in one translation unit
 * (one ACT_BF16 per unit, as moec_host.h requires; HD and ROPE_THETA are arguments). */
#ifndef MOEC_ROPE_HOST_H
#define MOEC_ROPE_HOST_H

#include <assert.h>
#include <math.h>

static inline void rope_sincos(float a, float *s, float *c)
{
	const double k = rint((double)a * 0.63661977236758134308); /* 2/pi */
	const double r = (((double)a - k * 1.570796325802803) - k * 9.920935739593517e-10) - k * 5.721188726109832e-18;
	const double r2 = r * r;
	const double sp = r + r * r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (1.0 / 362880 +
	                  r2 * (-1.0 / 39916800 + r2 * (1.0 / 6227020800.0 + r2 * (-1.0 / 1307674368000.0)))))));
	const double cp = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320 +
	                  r2 * (-1.0 / 3628800 + r2 * (1.0 / 479001600 + r2 * (-1.0 / 87178291200.0 +
	                  r2 * (1.0 / 20922789888000.0))))))));
	const int q = (int)((long long)k & 3);
	*s = (float)(q == 0 ? sp : q == 1 ? cp : q == 2 ? -sp : -cp);
	*c = (float)(q == 0 ? cp : q == 1 ? -sp : q == 2 ? -cp : sp);
}

#define ROPE_HOST_MAX_HD 1024 /* the kernel's own limit (static_assert in rope.cuh) */

/* y = x rotated by sin_sign * angle (1.0f: rope_fwd, -1.0f: rope_bwd). Negating sin is exact,
 * and a - x2 * (-s) rounds exactly as a + x2 * s, so both directions share one formula bit
 * for bit, as in the kernel. */
static inline void rope_host(act_t *y, const act_t *x, const int *pos, int tokens, int heads, int hd, float theta,
                             float sin_sign)
{
	float inv_freq[ROPE_HOST_MAX_HD / 2], c[ROPE_HOST_MAX_HD / 2], s[ROPE_HOST_MAX_HD / 2];
	assert(hd % 2 == 0 && hd <= ROPE_HOST_MAX_HD);
	for (int i = 0; i < hd / 2; i++)
		inv_freq[i] = 1.0f / (float)pow((double)theta, (double)((float)(2 * i) / (float)hd));
	for (long t = 0; t < tokens; t++) {
		const float p = (float)pos[t];
		for (int i = 0; i < hd / 2; i++) {
			rope_sincos(p * inv_freq[i], &s[i], &c[i]);
			if (sin_sign < 0.0f)
				s[i] = -s[i];
		}
		for (int h = 0; h < heads; h++) {
			const act_t *xr = x + (t * heads + h) * hd;
			act_t *yr = y + (t * heads + h) * hd;
			for (int i = 0; i < hd / 2; i++) {
				const float x1 = act_load(xr + i), x2 = act_load(xr + i + hd / 2);
				const float a = x1 * c[i], b = x2 * s[i]; /* rounded apart, as in the kernel */
				const float d = x2 * c[i], e = x1 * s[i];
				act_store(yr + i, a - b);
				act_store(yr + i + hd / 2, d + e);
			}
		}
	}
}

#endif

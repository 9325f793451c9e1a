/* rope_fwd.c - CPU twin of rope_fwd.cu: HF rotate_half RoPE, in place or not, fp32 math.
 * moec: constants HD ROPE_THETA ACT_BF16
 *
 * Shapes (tokens, heads = runtime): y [tokens, heads, HD] act_t (may alias x),
 * x [tokens, heads, HD] act_t, pos [tokens] int.
 *   inv_freq[i] = 1 / ROPE_THETA^((2i)/HD) (fp32 exponent, power rounded to fp32, fp32 divide)
 *   a = pos * inv_freq[i];  y[i] = x[i] c - x[i+HD/2] s;  y[i+HD/2] = x[i+HD/2] c + x[i] s
 * sin/cos come from the same double-precision reduction and polynomials as the kernel. */
#include "moec_host.h"

/* Guarded: a test or a trainer may include several rope twins in one translation unit. */
#ifndef MOEC_ROPE_SINCOS
#define MOEC_ROPE_SINCOS
static void rope_sincos(float a, float *s, float *c)
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
#endif

void MOEC_KERNEL_CPU(act_t *y, const act_t *x, const int *pos, int tokens, int heads)
{
	float inv_freq[HD / 2], c[HD / 2], s[HD / 2];
	for (int i = 0; i < HD / 2; i++)
		inv_freq[i] = 1.0f / (float)pow((double)ROPE_THETA, (double)((float)(2 * i) / (float)HD));
	for (long t = 0; t < tokens; t++) {
		const float p = (float)pos[t];
		for (int i = 0; i < HD / 2; i++)
			rope_sincos(p * inv_freq[i], &s[i], &c[i]);
		for (int h = 0; h < heads; h++) {
			const act_t *xr = x + (t * heads + h) * HD;
			act_t *yr = y + (t * heads + h) * HD;
			for (int i = 0; i < HD / 2; i++) {
				const float x1 = act_load(xr + i), x2 = act_load(xr + i + HD / 2);
				const float a = x1 * c[i], b = x2 * s[i]; /* rounded apart, as in the kernel */
				const float d = x2 * c[i], e = x1 * s[i];
				act_store(yr + i, a - b);
				act_store(yr + i + HD / 2, d + e);
			}
		}
	}
}

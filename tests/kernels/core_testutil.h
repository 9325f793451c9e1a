/* core_testutil.h - what test_core_f32.c and test_core_bf16.c share: a seeded generator,
 * array comparisons that print the worst element, and the double-precision references of
 * RMSNorm and RoPE. Include after testing.h. */
#ifndef MOEC_CORE_TESTUTIL_H
#define MOEC_CORE_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <math.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static void rng_seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ull + 1; }

static uint64_t rng_u64(void) /* xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static double rng_uniform(void) { return (double)(rng_u64() >> 11) * 0x1.0p-53; } /* [0, 1) */

static double rng_normal(void)
{
	const double u = rng_uniform() + 0x1.0p-54, v = rng_uniform();
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static int rng_int(int lo, int hi) { return lo + (int)(rng_u64() % (uint64_t)(hi - lo)); } /* [lo, hi) */

/* Every i must satisfy |got[i] - want[i]| <= atol + rtol * |want[i]|; one expectation per
 * array, and on failure the worst element is printed. */
#define CHECK_CLOSE(what, got, want, n, rtol, atol) \
	EXPECT(check_close_(what, got, want, n, rtol, atol))

static int check_close_(const char *what, const float *got, const double *want, long n, double rtol, double atol)
{
	double worst = 0.0;
	long wi = -1;
	for (long i = 0; i < n; i++) {
		const double err = fabs((double)got[i] - want[i]);
		const double lim = atol + rtol * fabs(want[i]);
		const double ratio = isnan(got[i]) || isnan(want[i]) ? INFINITY : err / (lim > 0 ? lim : 1e-300);
		if (ratio > worst || wi < 0)
			worst = ratio, wi = i;
	}
	if (n > 0 && !(worst <= 1.0)) {
		fprintf(stderr, "  %s: element %ld = %.9g, want %.9g (|err| %.3g, allowed %.3g)\n", what, wi,
		        (double)got[wi], want[wi], fabs((double)got[wi] - want[wi]), atol + rtol * fabs(want[wi]));
		return 0;
	}
	return 1;
}

static double max_abs(const double *a, long n)
{
	double m = 0.0;
	for (long i = 0; i < n; i++)
		m = fmax(m, fabs(a[i]));
	return m;
}

/* ---- references shared by the fp32 and bf16 tests ---- */

/* HF Qwen3MoeRMSNorm in double: y = w * x / sqrt(mean(x^2) + eps). Returns sum R.y of one row. */
static double ref_rms_row(double *y, double *rstd, const double *x, const double *w, int dim, double eps,
                          const double *R)
{
	double ss = 0.0;
	for (int c = 0; c < dim; c++)
		ss += x[c] * x[c];
	const double rs = 1.0 / sqrt(ss / dim + eps);
	if (rstd)
		*rstd = rs;
	double L = 0.0;
	for (int c = 0; c < dim; c++) {
		const double v = w[c] * (x[c] * rs);
		if (y)
			y[c] = v;
		if (R)
			L += R[c] * v;
	}
	return L;
}

/* HF's fp32 angle: inv_freq = 1 / theta^(float(2i)/HD) rounded to fp32, angle = fp32(pos * inv_freq). */
static float hf_angle(int pos, int i, int hd, float theta)
{
	const float e = (float)(2 * i) / (float)hd;
	const float inv = 1.0f / (float)pow((double)theta, (double)e);
	return (float)pos * inv;
}

/* Rotate one [HD] vector in double with cos/sin of the fp32 angle; sign -1 rotates back. */
static void ref_rope_vec(double *y, const double *x, int pos, int hd, float theta, int sign)
{
	for (int i = 0; i < hd / 2; i++) {
		const double a = hf_angle(pos, i, hd, theta), c = cos(a), s = sign * sin(a);
		y[i] = x[i] * c - x[i + hd / 2] * s;
		y[i + hd / 2] = x[i + hd / 2] * c + x[i] * s;
	}
}

#endif

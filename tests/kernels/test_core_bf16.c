/* test_core_bf16.c - the core kernels' CPU twins with bf16 activations (ACT_BF16 = 1):
 * embedding, RMSNorm, RoPE and add. (The casts, AdamW, grad norm and cross-entropy have no
 * activation type and are tested in test_core_f32.c.)
 *
 * One ACT_BF16 per translation unit, so the fp32 twins cannot sit beside these; instead the
 * references are the double-precision ones of test_core_f32.c (there checked against the fp32
 * twins and finite differences), fed the same bf16-representable inputs. The contract of a
 * bf16 twin is "compute in fp32, round once when storing", so a bf16 output must lie within
 * half a bf16 ulp (<= 2^-8 relative) of the exact value, plus the fp32 error (~1e-6 relative,
 * or absolute against the array's largest value where terms cancel): that is the tolerance.
 * fp32 outputs (rstd, dw, the embedding gradient) keep the fp32 tolerances. */
#include <stdlib.h>

#define ACT_BF16 1
#include "moec_host.h"
#include "testing.h"
#include "core_testutil.h"

#define EPS 1e-06f
#define DIM 128
#define MOEC_KERNEL_CPU rmsnorm_fwd_bf16_dim128_cpu
#include "rmsnorm_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rmsnorm_bwd_bf16_dim128_cpu
#include "rmsnorm_bwd.c"
#undef MOEC_KERNEL_CPU
#undef DIM
#define DIM 2048
#define MOEC_KERNEL_CPU rmsnorm_fwd_bf16_dim2048_cpu
#include "rmsnorm_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rmsnorm_bwd_bf16_dim2048_cpu
#include "rmsnorm_bwd.c"
#undef MOEC_KERNEL_CPU
#undef DIM
#define DIM 100
#define MOEC_KERNEL_CPU rmsnorm_fwd_bf16_dim100_cpu
#include "rmsnorm_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rmsnorm_bwd_bf16_dim100_cpu
#include "rmsnorm_bwd.c"
#undef MOEC_KERNEL_CPU
#undef DIM
#undef EPS

#define HD 128
#define ROPE_THETA 1000000.0f
#define MOEC_KERNEL_CPU rope_fwd_bf16_hd128_cpu
#include "rope_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rope_bwd_bf16_hd128_cpu
#include "rope_bwd.c"
#undef MOEC_KERNEL_CPU
#undef HD
#undef ROPE_THETA

#define H 64
#define MOEC_KERNEL_CPU embedding_fwd_bf16_h64_cpu
#include "embedding_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU embedding_bwd_bf16_h64_cpu
#include "embedding_bwd.c"
#undef MOEC_KERNEL_CPU
#undef H

#define MOEC_KERNEL_CPU add_bf16_cpu
#include "add.c"
#undef MOEC_KERNEL_CPU

#define BF16_RTOL (0x1.0p-8 + 1e-5) /* half a bf16 ulp, plus the fp32 error */

static bf16 *bvec(long n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(bf16)); }
static float *fvec(long n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double *dvec(long n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

static void fill_bf16(bf16 *x, double *xd, long n, double scale)
{
	for (long i = 0; i < n; i++) {
		x[i] = float_to_bf16((float)(scale * rng_normal()));
		if (xd)
			xd[i] = bf16_to_float(x[i]);
	}
}

static void to_float(float *f, const bf16 *b, long n)
{
	for (long i = 0; i < n; i++)
		f[i] = bf16_to_float(b[i]);
}

/* ---------------------------------------------------------------------------------------- */

typedef void (*rms_fwd_fn)(bf16 *, float *, const bf16 *, const float *, int);
typedef void (*rms_bwd_fn)(bf16 *, float *, float *, unsigned int *, const bf16 *, const bf16 *, const float *,
                           const float *, int, int);

static void test_rmsnorm(const char *name, rms_fwd_fn fwd, rms_bwd_fn bwd, int dim)
{
	const double eps = (double)1e-06f;
	const int row_counts[] = {0, 1, 3};
	for (size_t rc = 0; rc < sizeof row_counts / sizeof *row_counts; rc++) {
		const int rows = row_counts[rc];
		const long n = (long)rows * dim;
		bf16 *x = bvec(n), *y = bvec(n), *dy = bvec(n), *dx = bvec(n), *y2 = bvec(n);
		float *w = fvec(dim), *rstd = fvec(rows), *dw = fvec(dim), *f = fvec(n);
		double *xd = dvec(n), *wd = dvec(dim), *Rd = dvec(n), *yr = dvec(n), *rr = dvec(rows), *dxr = dvec(n),
		       *dwr = dvec(dim), *accr = dvec(n);
		fill_bf16(x, xd, n, 1.5);
		fill_bf16(dy, Rd, n, 1.0);
		for (int c = 0; c < dim; c++)
			w[c] = (float)(1.0 + 0.3 * rng_normal()), wd[c] = w[c];
		printf("%s rows=%d\n", name, rows);

		fwd(y, rstd, x, w, rows);
		for (int r = 0; r < rows; r++)
			ref_rms_row(yr + (long)r * dim, rr + r, xd + (long)r * dim, wd, dim, eps, NULL);
		to_float(f, y, n);
		CHECK_CLOSE("rmsnorm y (bf16)", f, yr, n, BF16_RTOL, 1e-6 * max_abs(yr, n));
		CHECK_CLOSE("rmsnorm rstd", rstd, rr, rows, 1e-5, 0.0);
		memcpy(y2, x, (size_t)n * sizeof(bf16));
		fwd(y2, NULL, y2, w, rows);
		EXPECT(n == 0 || memcmp(y2, y, (size_t)n * sizeof(bf16)) == 0);

		const double h = 1e-6;
		for (int r = 0; r < rows; r++) {
			double *xr = xd + (long)r * dim;
			for (int c = 0; c < dim; c++) {
				const double x0 = xr[c];
				xr[c] = x0 + h;
				const double lp = ref_rms_row(NULL, NULL, xr, wd, dim, eps, Rd + (long)r * dim);
				xr[c] = x0 - h;
				const double lm = ref_rms_row(NULL, NULL, xr, wd, dim, eps, Rd + (long)r * dim);
				xr[c] = x0;
				dxr[(long)r * dim + c] = (lp - lm) / (2 * h);
			}
		}
		for (int c = 0; c < dim; c++) {
			const double w0 = wd[c];
			double lp = 0.0, lm = 0.0;
			wd[c] = w0 + h;
			for (int r = 0; r < rows; r++)
				lp += ref_rms_row(NULL, NULL, xd + (long)r * dim, wd, dim, eps, Rd + (long)r * dim);
			wd[c] = w0 - h;
			for (int r = 0; r < rows; r++)
				lm += ref_rms_row(NULL, NULL, xd + (long)r * dim, wd, dim, eps, Rd + (long)r * dim);
			wd[c] = w0;
			dw[c] = 0.0f;
			dwr[c] = (lp - lm) / (2 * h);
		}
		bwd(dx, dw, NULL, NULL, dy, x, w, rstd, rows, 0);
		to_float(f, dx, n);
		CHECK_CLOSE("rmsnorm dx (bf16)", f, dxr, n, BF16_RTOL, 1e-5 * max_abs(dxr, n));
		CHECK_CLOSE("rmsnorm dw", dw, dwr, dim, 1e-4, 1e-5 * max_abs(dwr, dim));
		fill_bf16(dx, accr, n, 1.0);
		for (long i = 0; i < n; i++)
			accr[i] += dxr[i];
		bwd(dx, dw, NULL, NULL, dy, x, w, rstd, rows, 1);
		to_float(f, dx, n);
		CHECK_CLOSE("rmsnorm dx accumulate (bf16)", f, accr, n, BF16_RTOL, 1e-5 * max_abs(accr, n));

		free(x), free(y), free(dy), free(dx), free(y2), free(w), free(rstd), free(dw), free(f);
		free(xd), free(wd), free(Rd), free(yr), free(rr), free(dxr), free(dwr), free(accr);
	}
}

/* ---------------------------------------------------------------------------------------- */

static void test_rope(void)
{
	const int hd = 128, heads = 4;
	const float theta = 1000000.0f;
	const int pos[] = {0, 1, 4095, 31, 65535, 2};
	const int tokens = sizeof pos / sizeof *pos;
	const long n = (long)tokens * heads * hd;
	bf16 *x = bvec(n), *y = bvec(n), *g = bvec(n), *dx = bvec(n), *z = bvec(n);
	float *f = fvec(n);
	double *xd = dvec(n), *gd = dvec(n), *yr = dvec(n), *dxr = dvec(n);
	fill_bf16(x, xd, n, 1.0);
	fill_bf16(g, gd, n, 1.0);
	printf("rope_bf16_hd128\n");
	rope_fwd_bf16_hd128_cpu(y, x, pos, tokens, heads);
	for (int t = 0; t < tokens; t++)
		for (int h = 0; h < heads; h++) {
			const long o = ((long)t * heads + h) * hd;
			ref_rope_vec(yr + o, xd + o, pos[t], hd, theta, +1);
			ref_rope_vec(dxr + o, gd + o, pos[t], hd, theta, -1); /* the transpose: checked by FD in f32 */
		}
	to_float(f, y, n);
	CHECK_CLOSE("rope y (bf16)", f, yr, n, BF16_RTOL, 1e-6 * max_abs(yr, n));
	memcpy(z, x, (size_t)n * sizeof(bf16));
	rope_fwd_bf16_hd128_cpu(z, z, pos, tokens, heads);
	EXPECT(memcmp(z, y, (size_t)n * sizeof(bf16)) == 0);
	rope_bwd_bf16_hd128_cpu(dx, g, pos, tokens, heads);
	to_float(f, dx, n);
	CHECK_CLOSE("rope dx (bf16)", f, dxr, n, BF16_RTOL, 1e-6 * max_abs(dxr, n));
	free(x), free(y), free(g), free(dx), free(z), free(f), free(xd), free(gd), free(yr), free(dxr);
}

/* ---------------------------------------------------------------------------------------- */

static void test_embedding(void)
{
	enum { HDIM = 64, VOCAB = 9, T = 31 };
	int ids[T];
	for (int t = 0; t < T; t++)
		ids[t] = rng_int(-1, VOCAB + 1);
	ids[0] = ids[4] = ids[30] = 2;
	bf16 *table = bvec(VOCAB * HDIM), *out = bvec(T * HDIM), *dout = bvec(T * HDIM);
	float *dtab = fvec(VOCAB * HDIM);
	double *want = dvec(VOCAB * HDIM), *dd = dvec(T * HDIM);
	fill_bf16(table, NULL, VOCAB * HDIM, 1.0);
	fill_bf16(dout, dd, T * HDIM, 1.0);
	printf("embedding_bf16_h64\n");
	embedding_fwd_bf16_h64_cpu(out, table, ids, T, 0, VOCAB);
	int bad = 0;
	for (int t = 0; t < T; t++)
		for (int c = 0; c < HDIM; c++)
			bad += out[t * HDIM + c].bits != (ids[t] >= 0 && ids[t] < VOCAB ? table[ids[t] * HDIM + c].bits : 0);
	EXPECT_INT(bad, 0);
	for (int t = 0; t < T; t++)
		if (ids[t] >= 0 && ids[t] < VOCAB)
			for (int c = 0; c < HDIM; c++)
				want[ids[t] * HDIM + c] += dd[t * HDIM + c];
	embedding_bwd_bf16_h64_cpu(dtab, dout, ids, T, 0, VOCAB);
	CHECK_CLOSE("embedding dtable (bf16 dout)", dtab, want, VOCAB * HDIM, 1e-6, 1e-6);
	free(table), free(out), free(dout), free(dtab), free(want), free(dd);
}

static void test_add(void)
{
	const long n = 1027;
	bf16 *a = bvec(n), *b = bvec(n), *y = bvec(n);
	double *ad = dvec(n), *bd = dvec(n);
	fill_bf16(a, ad, n, 1.0);
	fill_bf16(b, bd, n, 1e-2); /* small addends: the sum rounds */
	add_bf16_cpu(y, a, b, n);
	int bad = 0;
	for (long i = 0; i < n; i++)
		bad += y[i].bits != float_to_bf16((float)(ad[i] + bd[i])).bits; /* fp32 sum, rounded once */
	add_bf16_cpu(b, a, b, n);
	for (long i = 0; i < n; i++)
		bad += b[i].bits != y[i].bits;
	EXPECT_INT(bad, 0);
	free(a), free(b), free(y), free(ad), free(bd);
}

int main(void)
{
	rng_seed(7);
	test_rmsnorm("rmsnorm_bf16_dim128", rmsnorm_fwd_bf16_dim128_cpu, rmsnorm_bwd_bf16_dim128_cpu, 128);
	test_rmsnorm("rmsnorm_bf16_dim2048", rmsnorm_fwd_bf16_dim2048_cpu, rmsnorm_bwd_bf16_dim2048_cpu, 2048);
	test_rmsnorm("rmsnorm_bf16_dim100", rmsnorm_fwd_bf16_dim100_cpu, rmsnorm_bwd_bf16_dim100_cpu, 100);
	test_rope();
	test_embedding();
	test_add();
	return testing_report();
}

/* test_core_f32.c - the core kernels' CPU twins in fp32 (ACT_BF16 = 0): embedding, RMSNorm,
 * RoPE, add, casts, AdamW, grad norm/clip and the chunked cross-entropy, each forward against
 * a plain double-precision reference, each backward against central finite differences of a
 * forward.
 *
 * Tolerances: the twins compute in fp32 (unit roundoff u = 2^-24 ~ 6e-8); a reduction over n
 * terms or a chain of a few roundings stays well inside 1e-5 relative at these sizes (n <= 512),
 * so most checks use rtol ~1e-5 plus an atol of ~1e-6 of the array's largest value (elements
 * that nearly cancel carry absolute, not relative, error). Finite differences are taken on
 * double references (or on linear fp32 forwards, where they are exact), so their own error
 * (~1e-10) does not count. Where the twin is meant to match a formula bit for bit (embedding
 * backward, add, casts, AdamW, scale), the check is for equality. */
#include <stdlib.h>

#define ACT_BF16 0
#include "moec_host.h"
#include "testing.h"
#include "core_testutil.h"

/* ---- twin instances, named as the emitter names them ---- */

#define EPS 1e-06f
#define DIM 128
#define MOEC_KERNEL_CPU rmsnorm_fwd_f32_dim128_cpu
#include "rmsnorm_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rmsnorm_bwd_f32_dim128_cpu
#include "rmsnorm_bwd.c"
#undef MOEC_KERNEL_CPU
#undef DIM
#define DIM 32
#define MOEC_KERNEL_CPU rmsnorm_fwd_f32_dim32_cpu
#include "rmsnorm_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rmsnorm_bwd_f32_dim32_cpu
#include "rmsnorm_bwd.c"
#undef MOEC_KERNEL_CPU
#undef DIM
#define DIM 100
#define MOEC_KERNEL_CPU rmsnorm_fwd_f32_dim100_cpu
#include "rmsnorm_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rmsnorm_bwd_f32_dim100_cpu
#include "rmsnorm_bwd.c"
#undef MOEC_KERNEL_CPU
#undef DIM
#undef EPS

#define HD 32
#define ROPE_THETA 10000.0f
#define MOEC_KERNEL_CPU rope_fwd_f32_hd32_cpu
#include "rope_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rope_bwd_f32_hd32_cpu
#include "rope_bwd.c"
#undef MOEC_KERNEL_CPU
#undef HD
#undef ROPE_THETA
#define HD 128
#define ROPE_THETA 1000000.0f
#define MOEC_KERNEL_CPU rope_fwd_f32_hd128_cpu
#include "rope_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rope_bwd_f32_hd128_cpu
#include "rope_bwd.c"
#undef MOEC_KERNEL_CPU
#undef HD
#undef ROPE_THETA
#define HD 6
#define ROPE_THETA 10000.0f
#define MOEC_KERNEL_CPU rope_fwd_f32_hd6_cpu
#include "rope_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU rope_bwd_f32_hd6_cpu
#include "rope_bwd.c"
#undef MOEC_KERNEL_CPU
#undef HD
#undef ROPE_THETA

#define H 128
#define MOEC_KERNEL_CPU embedding_fwd_f32_h128_cpu
#include "embedding_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU embedding_bwd_f32_h128_cpu
#include "embedding_bwd.c"
#undef MOEC_KERNEL_CPU
#undef H
#define H 37
#define MOEC_KERNEL_CPU embedding_fwd_f32_h37_cpu
#include "embedding_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU embedding_bwd_f32_h37_cpu
#include "embedding_bwd.c"
#undef MOEC_KERNEL_CPU
#undef H

#define MOEC_KERNEL_CPU add_f32_cpu
#include "add.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU cast_f32_bf16_cpu
#include "cast_f32_bf16.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU cast_bf16_f32_cpu
#include "cast_bf16_f32.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU adamw_cpu
#include "adamw.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU grad_sumsq_cpu
#include "grad_sumsq.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU scale_cpu
#include "scale.c"
#undef MOEC_KERNEL_CPU

#define V 512
#define MOEC_KERNEL_CPU ce_chunk_fwd_v512_cpu
#include "ce_chunk_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU ce_finish_v512_cpu
#include "ce_finish.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU ce_chunk_bwd_v512_cpu
#include "ce_chunk_bwd.c"
#undef MOEC_KERNEL_CPU
#undef V
#define V 500
#define MOEC_KERNEL_CPU ce_chunk_fwd_v500_cpu
#include "ce_chunk_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU ce_finish_v500_cpu
#include "ce_finish.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU ce_chunk_bwd_v500_cpu
#include "ce_chunk_bwd.c"
#undef MOEC_KERNEL_CPU
#undef V

static float *fvec(long n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double *dvec(long n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

static void fill_normal(float *x, long n, double scale)
{
	for (long i = 0; i < n; i++)
		x[i] = (float)(scale * rng_normal());
}

/* ---------------------------------------------------------------------------------------- */
/* RMSNorm                                                                                  */

typedef void (*rms_fwd_fn)(float *, float *, const float *, const float *, int);
typedef void (*rms_bwd_fn)(float *, float *, float *, unsigned int *, const float *, const float *, const float *,
                           const float *, int, int);

static void test_rmsnorm(const char *name, rms_fwd_fn fwd, rms_bwd_fn bwd, int dim)
{
	const double eps = (double)1e-06f;
	const int row_counts[] = {0, 1, 7, 37};
	for (size_t rc = 0; rc < sizeof row_counts / sizeof *row_counts; rc++) {
		const int rows = row_counts[rc];
		const long n = (long)rows * dim;
		float *x = fvec(n), *w = fvec(dim), *y = fvec(n), *rstd = fvec(rows), *dy = fvec(n), *dx = fvec(n),
		      *dw = fvec(dim), *y2 = fvec(n);
		double *xd = dvec(n), *wd = dvec(dim), *Rd = dvec(n), *yr = dvec(n), *rr = dvec(rows), *dxr = dvec(n),
		       *dwr = dvec(dim), *dw0 = dvec(dim), *acc0 = dvec(n);
		fill_normal(x, n, 1.5);
		for (int c = 0; c < dim; c++)
			w[c] = (float)(1.0 + 0.3 * rng_normal());
		if (rows > 2) /* a row of tiny values: rstd is then dominated by eps */
			for (int c = 0; c < dim; c++)
				x[2L * dim + c] = (float)(1e-4 * rng_normal());
		fill_normal(dy, n, 1.0);
		for (long i = 0; i < n; i++)
			xd[i] = x[i], Rd[i] = dy[i];
		for (int c = 0; c < dim; c++)
			wd[c] = w[c];

		/* forward vs reference */
		fwd(y, rstd, x, w, rows);
		for (int r = 0; r < rows; r++)
			ref_rms_row(yr + (long)r * dim, rr + r, xd + (long)r * dim, wd, dim, eps, NULL);
		printf("%s rows=%d\n", name, rows);
		CHECK_CLOSE("rmsnorm y", y, yr, n, 1e-5, 1e-6 * max_abs(yr, n));
		CHECK_CLOSE("rmsnorm rstd", rstd, rr, rows, 1e-5, 0.0);
		/* in place, and without rstd */
		memcpy(y2, x, (size_t)n * sizeof(float));
		fwd(y2, NULL, y2, w, rows);
		EXPECT(n == 0 || memcmp(y2, y, (size_t)n * sizeof(float)) == 0);

		/* backward vs central differences of the double forward, L = sum R * y */
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
			dw0[c] = 0.25 * rng_normal(); /* dw is accumulated into */
			dw[c] = (float)dw0[c];
			dwr[c] = dw0[c] + (lp - lm) / (2 * h);
		}
		bwd(dx, dw, NULL, NULL, dy, x, w, rstd, rows, 0);
		CHECK_CLOSE("rmsnorm dx", dx, dxr, n, 1e-4, 1e-5 * max_abs(dxr, n));
		CHECK_CLOSE("rmsnorm dw", dw, dwr, dim, 1e-4, 1e-5 * max_abs(dwr, dim));
		/* accumulate = 1 adds to what dx holds (the residual stream's gradient) */
		for (long i = 0; i < n; i++) {
			dx[i] = (float)rng_normal();
			acc0[i] = dx[i] + dxr[i];
		}
		bwd(dx, dw, NULL, NULL, dy, x, w, rstd, rows, 1);
		CHECK_CLOSE("rmsnorm dx accumulate", dx, acc0, n, 1e-4, 1e-5 * max_abs(dxr, n));

		free(x), free(w), free(y), free(rstd), free(dy), free(dx), free(dw), free(y2);
		free(xd), free(wd), free(Rd), free(yr), free(rr), free(dxr), free(dwr), free(dw0), free(acc0);
	}
}

/* ---------------------------------------------------------------------------------------- */
/* RoPE                                                                                     */

typedef void (*rope_fn)(float *, const float *, const int *, int, int);

static void test_rope(const char *name, rope_fn fwd, rope_fn bwd, int hd, float theta)
{
	/* inv_freq in fp32 is within an ulp of the true value */
	for (int i = 0; i < hd / 2; i++) {
		const float inv = hf_angle(1, i, hd, theta);
		const double exact = pow((double)theta, -(double)(2 * i) / hd);
		EXPECT(fabs(inv - exact) <= 1.5 * 0x1.0p-24 * fabs(exact) * 2);
	}
	const int pos_set[] = {0, 1, 2, 7, 255, 4095, 65535, 1000003, 3};
	const int tokens = sizeof pos_set / sizeof *pos_set, heads = 3;
	const long n = (long)tokens * heads * hd;
	float *x = fvec(n), *y = fvec(n), *g = fvec(n), *dx = fvec(n), *z = fvec(n);
	double *yr = dvec(n), *dxr = dvec(n), *xd = dvec(hd), *yd = dvec(hd);
	fill_normal(x, n, 1.0);
	fill_normal(g, n, 1.0);
	printf("%s\n", name);

	fwd(y, x, pos_set, tokens, heads);
	for (int t = 0; t < tokens; t++)
		for (int h = 0; h < heads; h++) {
			const long o = ((long)t * heads + h) * hd;
			for (int c = 0; c < hd; c++)
				xd[c] = x[o + c];
			ref_rope_vec(yr + o, xd, pos_set[t], hd, theta, +1);
		}
	/* fp32 cos/sin (each within an ulp) and two rounded products and a sum: a few ulp of
	 * |x1| + |x2| */
	CHECK_CLOSE("rope y", y, yr, n, 1e-6, 4e-7 * max_abs(yr, n));
	memcpy(z, x, (size_t)n * sizeof(float)); /* in place gives the same bits */
	fwd(z, z, pos_set, tokens, heads);
	EXPECT(memcmp(z, y, (size_t)n * sizeof(float)) == 0);

	/* backward vs central differences of the forward: L = sum g * rope(x). The forward is
	 * linear, so the difference quotient of the double forward is exact up to roundoff. */
	for (int t = 0; t < tokens; t++)
		for (int h = 0; h < heads; h++) {
			const long o = ((long)t * heads + h) * hd;
			for (int c = 0; c < hd; c++)
				xd[c] = x[o + c];
			for (int c = 0; c < hd; c++) {
				double lp = 0.0, lm = 0.0;
				const double x0 = xd[c], step = 0.5;
				xd[c] = x0 + step;
				ref_rope_vec(yd, xd, pos_set[t], hd, theta, +1);
				for (int k = 0; k < hd; k++)
					lp += g[o + k] * yd[k];
				xd[c] = x0 - step;
				ref_rope_vec(yd, xd, pos_set[t], hd, theta, +1);
				for (int k = 0; k < hd; k++)
					lm += g[o + k] * yd[k];
				xd[c] = x0;
				dxr[o + c] = (lp - lm) / (2 * step);
			}
		}
	bwd(dx, g, pos_set, tokens, heads);
	CHECK_CLOSE("rope dx", dx, dxr, n, 1e-6, 4e-7 * max_abs(dxr, n));
	memcpy(z, g, (size_t)n * sizeof(float));
	bwd(z, z, pos_set, tokens, heads);
	EXPECT(memcmp(z, dx, (size_t)n * sizeof(float)) == 0);
	/* zero tokens or zero heads touch nothing */
	memcpy(z, x, (size_t)n * sizeof(float));
	fwd(z, z, pos_set, 0, heads);
	fwd(z, z, pos_set, tokens, 0);
	EXPECT(memcmp(z, x, (size_t)n * sizeof(float)) == 0);
	free(x), free(y), free(g), free(dx), free(z), free(yr), free(dxr), free(xd), free(yd);
}

/* rope_sincos (the twins' copy of the kernel's) against libm: within one fp32 ulp over the
 * whole range of angles RoPE produces (|a| < 2^24). */
static void test_rope_sincos(void)
{
	int bad = 0;
	const double ranges[] = {4.0, 100.0, 1e4, 1e6, 1.6e7};
	for (size_t k = 0; k < sizeof ranges / sizeof *ranges; k++)
		for (int i = 0; i < 20000; i++) {
			const float a = (float)((2.0 * rng_uniform() - 1.0) * ranges[k]);
			float s, c;
			rope_sincos(a, &s, &c);
			const double es = sin((double)a), ec = cos((double)a);
			const double us = fmax(fabs(es) * 0x1.0p-23, 0x1.0p-149), uc = fmax(fabs(ec) * 0x1.0p-23, 0x1.0p-149);
			if (fabs(s - es) > us || fabs(c - ec) > uc) {
				if (bad++ < 3)
					fprintf(stderr, "  rope_sincos(%.9g) = %.9g %.9g, want %.9g %.9g\n", a, s, c, es, ec);
			}
		}
	EXPECT_INT(bad, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Embedding                                                                                */

typedef void (*emb_fwd_fn)(float *, const float *, const int *, int, int, int);
typedef void (*emb_bwd_fn)(float *, const float *, const int *, int, int, int);

static void test_embedding(const char *name, emb_fwd_fn fwd, emb_bwd_fn bwd, int hdim)
{
	const int vocab = 11, tokens = 23;
	const int v0s[] = {0, 3}; /* the whole table, and a vocab shard starting at id 3 */
	printf("%s\n", name);
	for (int vi = 0; vi < 2; vi++) {
		const int v0 = v0s[vi];
		int ids[23];
		for (int t = 0; t < tokens; t++)
			ids[t] = rng_int(-2, v0 + vocab + 3); /* some ids outside [v0, v0+vocab) */
		ids[5] = ids[9] = ids[17] = v0 + 4;        /* repeats */
		ids[0] = -100, ids[1] = v0 + vocab, ids[2] = v0 - 1;
		const long nt = (long)vocab * hdim, no = (long)tokens * hdim;
		float *table = fvec(nt), *out = fvec(no), *dout = fvec(no), *dtab = fvec(nt);
		double *want = dvec(nt), *fd = dvec(nt);
		fill_normal(table, nt, 1.0);
		fill_normal(dout, no, 1.0);

		fwd(out, table, ids, tokens, v0, vocab);
		int bad = 0;
		for (int t = 0; t < tokens; t++) {
			const long id = (long)ids[t] - v0;
			for (int c = 0; c < hdim; c++) {
				const float e = id >= 0 && id < vocab ? table[id * hdim + c] : 0.0f;
				bad += out[(long)t * hdim + c] != e;
			}
		}
		EXPECT_INT(bad, 0);

		/* backward: += the scattered rows, vs a double reference */
		for (long i = 0; i < nt; i++) {
			dtab[i] = (float)rng_normal();
			want[i] = dtab[i];
		}
		for (int t = 0; t < tokens; t++) {
			const long id = (long)ids[t] - v0;
			if (id >= 0 && id < vocab)
				for (int c = 0; c < hdim; c++)
					want[id * hdim + c] += dout[(long)t * hdim + c];
		}
		bwd(dtab, dout, ids, tokens, v0, vocab);
		CHECK_CLOSE("embedding dtable", dtab, want, nt, 1e-6, 1e-6);

		/* and vs central differences of the forward twin, L = sum dout * out; the forward is
		 * a copy, so the quotient over the actual perturbation is exact */
		for (long i = 0; i < nt; i++) {
			const float t0 = table[i];
			double l[2], tv[2];
			for (int sgn = 0; sgn < 2; sgn++) {
				table[i] = t0 + (sgn ? -0.25f : 0.25f);
				tv[sgn] = table[i];
				fwd(out, table, ids, tokens, v0, vocab);
				l[sgn] = 0.0;
				for (long j = 0; j < no; j++)
					l[sgn] += (double)dout[j] * out[j];
			}
			table[i] = t0;
			fd[i] = (l[0] - l[1]) / (tv[0] - tv[1]);
		}
		memset(dtab, 0, (size_t)nt * sizeof(float));
		bwd(dtab, dout, ids, tokens, v0, vocab);
		CHECK_CLOSE("embedding dtable vs finite differences", dtab, fd, nt, 1e-6, 1e-6);
		/* zero tokens: nothing changes */
		bwd(dtab, dout, ids, 0, v0, vocab);
		fwd(out, table, ids, 0, v0, vocab);
		free(table), free(out), free(dout), free(dtab), free(want), free(fd);
	}
}

/* ---------------------------------------------------------------------------------------- */
/* add, casts                                                                               */

static void test_add(void)
{
	const long sizes[] = {0, 1, 5, 1003};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		const long n = sizes[k];
		float *a = fvec(n), *b = fvec(n), *y = fvec(n);
		fill_normal(a, n, 1.0);
		fill_normal(b, n, 3.0);
		add_f32_cpu(y, a, b, n);
		int bad = 0;
		for (long i = 0; i < n; i++)
			bad += y[i] != (float)((double)a[i] + (double)b[i]); /* exact sum, rounded once */
		add_f32_cpu(a, a, b, n); /* in place */
		for (long i = 0; i < n; i++)
			bad += a[i] != y[i];
		EXPECT_INT(bad, 0);
		free(a), free(b), free(y);
	}
}

/* Round to nearest even by comparing distances to the two bf16 neighbours (an implementation
 * independent of moec_host.h's bit trick). */
static uint16_t ref_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if (isnan(f))
		return 0; /* checked separately */
	const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
	float flo, fhi;
	memcpy(&flo, &lo, 4);
	if ((lo & 0x7f800000u) == 0x7f800000u) /* lo is inf: the input was inf */
		return (uint16_t)(lo >> 16);
	memcpy(&fhi, &hi, 4);
	/* past the largest bf16 the upper neighbour is inf, which rounds as if it were 2^128 */
	const double dhi = isinf(fhi) ? fabs(copysign(0x1.0p128, f) - f) : fabs((double)fhi - f);
	const double dlo = fabs((double)f - flo);
	if (dlo < dhi)
		return (uint16_t)(lo >> 16);
	if (dhi < dlo)
		return (uint16_t)(hi >> 16);
	return (uint16_t)(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}

static void test_casts(void)
{
	enum { N = 200003 };
	float *x = fvec(N), *back = fvec(N);
	bf16 *y = calloc(N, sizeof(bf16));
	const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u,
	                            0x80000000u, 0x00000001u, 0x00008000u, 0x00018000u, 0x7f7f8000u, 0x7fc00001u,
	                            0xffc00000u, 0x7f800001u};
	for (long i = 0; i < N; i++) {
		uint32_t u = (uint32_t)rng_u64();
		if (i < (long)(sizeof special / sizeof *special))
			u = special[i];
		else if (i % 3 == 0) /* many exact ties */
			u = (u & 0xffff0000u) | 0x8000u;
		memcpy(&x[i], &u, 4);
	}
	cast_f32_bf16_cpu(y, x, N);
	cast_bf16_f32_cpu(back, y, N);
	int bad = 0;
	for (long i = 0; i < N; i++) {
		if (isnan(x[i])) {
			bad += !isnan(back[i]);
			continue;
		}
		const uint16_t want = ref_f32_to_bf16(x[i]);
		if (y[i].bits != want && bad++ < 3)
			fprintf(stderr, "  cast %08x -> %04x, want %04x\n", *(uint32_t *)&x[i], y[i].bits, want);
		uint32_t ub = (uint32_t)y[i].bits << 16, got;
		memcpy(&got, &back[i], 4);
		bad += got != ub; /* bf16 -> f32 is exact */
	}
	EXPECT_INT(bad, 0);
	cast_f32_bf16_cpu(y, x, 0);
	free(x), free(back), free(y);
}

/* ---------------------------------------------------------------------------------------- */
/* AdamW, grad norm, scale                                                                  */

/* torch.optim.AdamW, foreach path on CUDA (torch/optim/adamw.py + adam.py _multi_tensor_adam),
 * transcribed op by op for one element: the scalars as Python computes them in double, used
 * as fp32; lerp, addcmul and addcdiv as torch's CUDA kernels compute them (a*b+c fused). */
static void torch_adamw_elem(float *p, float g, float *m, float *v, int decay, double lr, double beta1,
                             double beta2, double eps, double wd, int step, float coef)
{
	g = g * coef;                                         /* clip_grad_norm_: g.mul_(coef) */
	if (decay)
		*p = *p * (float)(1 - lr * wd);                   /* param.mul_(1 - lr * weight_decay) */
	const float wt = (float)(1 - beta1);                  /* exp_avg.lerp_(grad, 1 - beta1) */
	*m = wt < 0.5f ? fmaf(wt, g - *m, *m) : fmaf(-(g - *m), 1.0f - wt, g);
	*v = *v * (float)beta2;                               /* exp_avg_sq.mul_(beta2) */
	*v = fmaf((float)(1 - beta2), g * g, *v);             /* .addcmul_(grad, grad, 1 - beta2) */
	const double bc1 = 1 - pow(beta1, step), bc2 = 1 - pow(beta2, step);
	const float step_size = (float)(lr / bc1 * -1);
	float denom = sqrtf(*v) / (float)sqrt(bc2);           /* exp_avg_sq.sqrt() / bc2_sqrt */
	denom = denom + (float)eps;                           /* .add_(eps) */
	*p = fmaf(step_size, *m / denom, *p);                 /* param.addcdiv_(exp_avg, denom, step_size) */
}

static void test_adamw(void)
{
	enum { NT = 6 };
	const long sizes[NT] = {1000, 0, 3, 1, 4097, 64};
	const int decay[NT] = {1, 1, 0, 1, 1, 0};
	long offsets[NT + 1] = {0};
	for (int k = 0; k < NT; k++)
		offsets[k + 1] = offsets[k] + sizes[k];
	float *p[NT], *g[NT], *m[NT], *v[NT], *pr[NT], *mr[NT], *vr[NT];
	bf16 *pb[NT];
	double *pd[NT], *md[NT], *vd[NT];
	for (int k = 0; k < NT; k++) {
		p[k] = fvec(sizes[k]), g[k] = fvec(sizes[k]), m[k] = fvec(sizes[k]), v[k] = fvec(sizes[k]);
		pr[k] = fvec(sizes[k]), mr[k] = fvec(sizes[k]), vr[k] = fvec(sizes[k]);
		pd[k] = dvec(sizes[k]), md[k] = dvec(sizes[k]), vd[k] = dvec(sizes[k]);
		pb[k] = k == 3 ? NULL : calloc((size_t)sizes[k] + 1, sizeof(bf16)); /* one tensor without a copy */
		fill_normal(p[k], sizes[k], 0.5);
		for (long j = 0; j < sizes[k]; j++)
			pr[k][j] = p[k][j], pd[k][j] = p[k][j];
	}
	const double lr = 1e-3, eps = 1e-8, wd = 0.1;
	const double betas[2][2] = {{0.9, 0.95}, {0.3, 0.999}}; /* the second takes lerp's other branch */
	int bad = 0;
	for (int bi = 0; bi < 2; bi++) {
		const double b1 = betas[bi][0], b2 = betas[bi][1];
		for (int k = 0; k < NT; k++)
			for (long j = 0; j < sizes[k]; j++)
				m[k][j] = v[k][j] = mr[k][j] = vr[k][j] = 0.0f, md[k][j] = vd[k][j] = 0.0, pd[k][j] = pr[k][j] = p[k][j];
		for (int step = 1; step <= 5; step++) {
			float sumsq = 0.0f;
			double ss = 0.0;
			for (int k = 0; k < NT; k++) {
				fill_normal(g[k], sizes[k], step == 3 ? 10.0 : 0.1); /* step 3 gets clipped */
				for (long j = 0; j < sizes[k]; j++)
					ss += (double)g[k][j] * g[k][j];
			}
			sumsq = (float)ss;
			const float max_norm = 1.0f;
			const float coef = fminf(max_norm / (sqrtf(sumsq) + 1e-6f), 1.0f);
			adamw_cpu(p, g, m, v, bi ? NULL : pb, offsets, decay, NT, lr, b1, b2, eps, wd, step, &sumsq, max_norm);
			for (int k = 0; k < NT; k++)
				for (long j = 0; j < sizes[k]; j++) {
					torch_adamw_elem(&pr[k][j], g[k][j], &mr[k][j], &vr[k][j], decay[k], lr, b1, b2, eps, wd,
					                 step, coef);
					bad += p[k][j] != pr[k][j] || m[k][j] != mr[k][j] || v[k][j] != vr[k][j];
					if (!bi && pb[k])
						bad += pb[k][j].bits != float_to_bf16(p[k][j]).bits;
					/* the textbook AdamW in double, for the size of the fp32 error */
					const double gj = (double)g[k][j] * coef;
					if (decay[k])
						pd[k][j] -= lr * wd * pd[k][j];
					md[k][j] = b1 * md[k][j] + (1 - b1) * gj;
					vd[k][j] = b2 * vd[k][j] + (1 - b2) * gj * gj;
					const double mh = md[k][j] / (1 - pow(b1, step)), vh = vd[k][j] / (1 - pow(b2, step));
					pd[k][j] -= lr * mh / (sqrt(vh) + eps);
				}
		}
		for (int k = 0; k < NT; k++)
			CHECK_CLOSE("adamw p vs double AdamW", p[k], pd[k], sizes[k], 1e-5, 1e-6);
	}
	EXPECT_INT(bad, 0);
	/* no clipping (NULL sumsq), and a call over zero tensors */
	for (int k = 0; k < NT; k++)
		for (long j = 0; j < sizes[k]; j++)
			pr[k][j] = p[k][j], mr[k][j] = m[k][j], vr[k][j] = v[k][j];
	adamw_cpu(p, g, m, v, NULL, offsets, decay, NT, lr, 0.9, 0.95, eps, wd, 6, NULL, 1.0f);
	bad = 0;
	for (int k = 0; k < NT; k++)
		for (long j = 0; j < sizes[k]; j++) {
			torch_adamw_elem(&pr[k][j], g[k][j], &mr[k][j], &vr[k][j], decay[k], lr, 0.9, 0.95, eps, wd, 6, 1.0f);
			bad += p[k][j] != pr[k][j];
		}
	adamw_cpu(p, g, m, v, NULL, offsets, decay, 0, lr, 0.9, 0.95, eps, wd, 7, NULL, 1.0f);
	EXPECT_INT(bad, 0);

	/* grad_sumsq: += the sum of squares over the list */
	float acc = 2.5f;
	double want = 2.5;
	for (int k = 0; k < NT; k++)
		for (long j = 0; j < sizes[k]; j++)
			want += (double)g[k][j] * g[k][j];
	grad_sumsq_cpu(&acc, NULL, NULL, g, offsets, NT);
	EXPECT_NEAR(acc, want, 1e-6);
	grad_sumsq_cpu(&acc, NULL, NULL, g, offsets, 0);
	EXPECT_NEAR(acc, want, 1e-6);

	/* scale: plain factor, then clipping by the norm */
	float sumsq = 16.0f; /* norm 4 > max_norm 2: coef = 2 / (4 + 1e-6) */
	const float c = 0.5f * fminf(2.0f / (sqrtf(sumsq) + 1e-6f), 1.0f);
	for (int k = 0; k < NT; k++)
		for (long j = 0; j < sizes[k]; j++)
			pr[k][j] = g[k][j] * 3.0f * c;
	scale_cpu(g, offsets, NT, 3.0f, NULL, 0.0f);
	scale_cpu(g, offsets, NT, 0.5f, &sumsq, 2.0f);
	bad = 0;
	for (int k = 0; k < NT; k++)
		for (long j = 0; j < sizes[k]; j++)
			bad += g[k][j] != pr[k][j];
	EXPECT_INT(bad, 0);
	for (int k = 0; k < NT; k++)
		free(p[k]), free(g[k]), free(m[k]), free(v[k]), free(pr[k]), free(mr[k]), free(vr[k]), free(pb[k]),
			free(pd[k]), free(md[k]), free(vd[k]);
}

/* ---------------------------------------------------------------------------------------- */
/* Chunked cross-entropy                                                                     */

typedef void (*ce_fwd_fn)(float *, float *, float *, const float *, const int *, int, int, int);
typedef void (*ce_fin_fn)(float *, float *, float *, const float *, const float *, const float *, const int *, int);
typedef void (*ce_bwd_fn)(const float *, float *, const float *, const int *, const float *, float, int, int, int);

/* Full-softmax cross-entropy of one row in double; returns lse, and the row's loss in *loss. */
static double ref_ce_row(const double *x, int vocab, int label, double *loss)
{
	double mx = -INFINITY, s = 0.0;
	for (int c = 0; c < vocab; c++)
		mx = fmax(mx, x[c]);
	for (int c = 0; c < vocab; c++)
		s += exp(x[c] - mx);
	const double lse = mx + log(s);
	*loss = label >= 0 && label < vocab ? lse - x[label] : 0.0;
	return lse;
}

static void test_ce(const char *name, int vocab, ce_fwd_fn cfwd, ce_fin_fn cfin, ce_bwd_fn cbwd)
{
	enum { ROWS = 9 };
	int labels[ROWS] = {3, -100, 0, 0, 17, 0, -5, 250, 42};
	labels[3] = vocab - 1, labels[5] = vocab; /* the last id, and an id past the vocabulary (ignored) */
	const long nl = (long)ROWS * vocab;
	float *logits = fvec(nl), *chunkbuf = fvec(nl), *dl = fvec(nl);
	double *xd = dvec(nl), *lse_r = dvec(ROWS), *loss_r = dvec(ROWS), *dref = dvec(nl);
	fill_normal(logits, nl, 3.0);
	for (int c = 0; c < vocab; c++) /* a row of large logits: needs the max subtraction */
		logits[7L * vocab + c] += 90.0f;
	for (long i = 0; i < nl; i++)
		xd[i] = logits[i];
	double sum = 0.0;
	int counted = 0;
	for (int r = 0; r < ROWS; r++) {
		lse_r[r] = ref_ce_row(xd + (long)r * vocab, vocab, labels[r], &loss_r[r]);
		sum += loss_r[r];
		counted += labels[r] >= 0 && labels[r] < vocab;
	}
	const double mean = sum / counted;
	/* dL/dlogits of the mean loss by central differences of the double reference */
	const double h = 1e-5;
	for (int r = 0; r < ROWS; r++)
		for (int c = 0; c < vocab; c++) {
			double *x = xd + (long)r * vocab, lp, lm;
			const double x0 = x[c];
			x[c] = x0 + h;
			ref_ce_row(x, vocab, labels[r], &lp);
			x[c] = x0 - h;
			ref_ce_row(x, vocab, labels[r], &lm);
			x[c] = x0;
			dref[(long)r * vocab + c] = (lp - lm) / (2 * h) / counted;
		}

	const int chunks[] = {vocab, 128, 100, 7, 1, 333, 4 * vocab};
	for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
		const int ch = chunks[ci];
		float rmax[ROWS], rsum[ROWS], tgt[ROWS], loss[ROWS], lse[ROWS], totals[3];
		printf("%s chunk=%d\n", name, ch);
		for (int v0 = 0; v0 < vocab; v0 += ch) {
			const int w = vocab - v0 < ch ? vocab - v0 : ch;
			for (int r = 0; r < ROWS; r++) /* what the host's GEMM writes: [ROWS, w] */
				memcpy(chunkbuf + (long)r * w, logits + (long)r * vocab + v0, (size_t)w * sizeof(float));
			cfwd(rmax, rsum, tgt, chunkbuf, labels, ROWS, w, v0);
		}
		cfin(loss, lse, totals, rmax, rsum, tgt, labels, ROWS);
		CHECK_CLOSE("ce lse", lse, lse_r, ROWS, 1e-6, 1e-5);
		CHECK_CLOSE("ce loss", loss, loss_r, ROWS, 1e-5, 1e-5);
		EXPECT_INT((int)totals[1], counted);
		EXPECT_NEAR(totals[0], sum, 1e-5);
		EXPECT_NEAR(totals[2], mean, 1e-5);
		for (int v0 = 0; v0 < vocab; v0 += ch) {
			const int w = vocab - v0 < ch ? vocab - v0 : ch;
			for (int r = 0; r < ROWS; r++)
				memcpy(chunkbuf + (long)r * w, logits + (long)r * vocab + v0, (size_t)w * sizeof(float));
			cbwd(chunkbuf, chunkbuf, lse, labels, totals, 1.0f, ROWS, w, v0); /* in place, as the fp32 step */
			for (int r = 0; r < ROWS; r++)
				memcpy(dl + (long)r * vocab + v0, chunkbuf + (long)r * w, (size_t)w * sizeof(float));
		}
		/* exp(x - lse) with an fp32 lse near 100 carries ~1e-5 relative error */
		CHECK_CLOSE("ce dlogits vs finite differences", dl, dref, nl, 1e-4, 1e-6 * max_abs(dref, nl));
	}
	/* every row ignored: zero loss, zero count, zero gradient; and zero rows */
	{
		int ign[ROWS];
		float rmax[ROWS], rsum[ROWS], tgt[ROWS], loss[ROWS], lse[ROWS], totals[3] = {1, 1, 1};
		for (int r = 0; r < ROWS; r++)
			ign[r] = -100;
		cfwd(rmax, rsum, tgt, logits, ign, ROWS, vocab, 0);
		cfin(loss, lse, totals, rmax, rsum, tgt, ign, ROWS);
		EXPECT(totals[0] == 0.0f && totals[1] == 0.0f && totals[2] == 0.0f);
		memcpy(chunkbuf, logits, (size_t)nl * sizeof(float));
		cbwd(chunkbuf, chunkbuf, lse, ign, totals, 1.0f, ROWS, vocab, 0);
		int nz = 0;
		for (long i = 0; i < nl; i++)
			nz += chunkbuf[i] != 0.0f;
		EXPECT_INT(nz, 0);
		cfin(NULL, lse, totals, rmax, rsum, tgt, ign, 0);
		EXPECT(totals[1] == 0.0f);
	}
	free(logits), free(chunkbuf), free(dl), free(xd), free(lse_r), free(loss_r), free(dref);
}

int main(void)
{
	rng_seed(20240601);
	test_rmsnorm("rmsnorm_f32_dim128", rmsnorm_fwd_f32_dim128_cpu, rmsnorm_bwd_f32_dim128_cpu, 128);
	test_rmsnorm("rmsnorm_f32_dim32", rmsnorm_fwd_f32_dim32_cpu, rmsnorm_bwd_f32_dim32_cpu, 32);
	test_rmsnorm("rmsnorm_f32_dim100", rmsnorm_fwd_f32_dim100_cpu, rmsnorm_bwd_f32_dim100_cpu, 100);
	test_rope_sincos();
	test_rope("rope_f32_hd32", rope_fwd_f32_hd32_cpu, rope_bwd_f32_hd32_cpu, 32, 10000.0f);
	test_rope("rope_f32_hd128", rope_fwd_f32_hd128_cpu, rope_bwd_f32_hd128_cpu, 128, 1000000.0f);
	test_rope("rope_f32_hd6", rope_fwd_f32_hd6_cpu, rope_bwd_f32_hd6_cpu, 6, 10000.0f);
	test_embedding("embedding_f32_h128", embedding_fwd_f32_h128_cpu, embedding_bwd_f32_h128_cpu, 128);
	test_embedding("embedding_f32_h37", embedding_fwd_f32_h37_cpu, embedding_bwd_f32_h37_cpu, 37);
	test_add();
	test_casts();
	test_adamw();
	test_ce("ce_v512", 512, ce_chunk_fwd_v512_cpu, ce_finish_v512_cpu, ce_chunk_bwd_v512_cpu);
	test_ce("ce_v500", 500, ce_chunk_fwd_v500_cpu, ce_finish_v500_cpu, ce_chunk_bwd_v500_cpu);
	return testing_report();
}

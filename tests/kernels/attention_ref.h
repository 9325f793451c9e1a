/* attention_ref.h - what the attention twin tests compare against: plain double-precision
 * causal GQA attention with document masking (forward and analytic backward, straight
 * from the definition: token i attends to j iff j <= i and doc[j] == doc[i]), packed
 * document layouts, a deterministic RNG and an array comparison. Shared by
 * test_attention_f32.c and test_attention_bf16.c; independent of act_t. */
#ifndef ATTENTION_REF_H
#define ATTENTION_REF_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testing.h"

/* Per-test tolerances (see each test for why): |got - want| <= atol * max|want| + rtol |want|. */
struct attn_tols {
	double o_atol, o_rtol;       /* attention output */
	double lse_atol, lse_rtol;   /* lse */
	double grad_atol, grad_rtol; /* dq, dk, dv */
};

static uint64_t ref_rng = 0x9e3779b97f4a7c15ull;

static void ref_seed(uint64_t s)
{
	ref_rng = s * 0x9e3779b97f4a7c15ull + 1;
}

static double ref_uniform(void) /* [0, 1) */
{
	ref_rng ^= ref_rng << 13;
	ref_rng ^= ref_rng >> 7;
	ref_rng ^= ref_rng << 17;
	return (double)(ref_rng >> 11) * (1.0 / 9007199254740992.0);
}

static double ref_normal(void)
{
	const double u = ref_uniform() + 1e-300, w = ref_uniform();
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * w);
}

/* doc ids for T tokens packed as rows of seq_len (documents never cross a row), document
 * lengths uniform in 1..maxlen (lens: optional fixed lengths, n_lens of them, cycled).
 * Ids are unique per run and deliberately not increasing (nothing may assume order). */
static void ref_make_docs(int *doc, int T, int seq_len, int maxlen, const int *lens, int n_lens)
{
	int run = 0, left = 0, li = 0;
	for (int t = 0; t < T; t++) {
		if (left == 0 || t % seq_len == 0) {
			left = lens ? lens[li++ % n_lens] : 1 + (int)(ref_uniform() * maxlen);
			run++;
		}
		doc[t] = 100000 - 7 * run;
		left--;
	}
}

static double *ref_alloc(size_t n)
{
	double *p = calloc(n ? n : 1, sizeof(double));
	if (!p) {
		fprintf(stderr, "attention_ref: out of memory\n");
		exit(2);
	}
	return p;
}

/* o [T, nh, hd], lse [nh, T] */
static void ref_attention_fwd(int T, int nh, int nkv, int hd, const double *q, const double *k, const double *v, const int *doc,
			      double *o, double *lse)
{
	const int G = nh / nkv;
	const double scale = 1.0 / sqrt((double)hd);
	double *sc = ref_alloc((size_t)T);
	for (int h = 0; h < nh; h++) {
		const int kvh = h / G;
		for (int i = 0; i < T; i++) {
			const double *qi = q + ((size_t)i * nh + h) * hd;
			double mx = -INFINITY;
			for (int j = 0; j <= i; j++) {
				if (doc[j] != doc[i])
					continue;
				const double *kj = k + ((size_t)j * nkv + kvh) * hd;
				double s = 0;
				for (int d = 0; d < hd; d++)
					s += qi[d] * kj[d];
				sc[j] = s * scale;
				mx = sc[j] > mx ? sc[j] : mx;
			}
			double sum = 0;
			double *oi = o + ((size_t)i * nh + h) * hd;
			for (int d = 0; d < hd; d++)
				oi[d] = 0;
			for (int j = 0; j <= i; j++) {
				if (doc[j] != doc[i])
					continue;
				const double p = exp(sc[j] - mx);
				sum += p;
				const double *vj = v + ((size_t)j * nkv + kvh) * hd;
				for (int d = 0; d < hd; d++)
					oi[d] += p * vj[d];
			}
			for (int d = 0; d < hd; d++)
				oi[d] /= sum;
			lse[(size_t)h * T + i] = mx + log(sum);
		}
	}
	free(sc);
}

/* Analytic backward of ref_attention_fwd for upstream gradient dout [T, nh, hd]. */
static void ref_attention_bwd(int T, int nh, int nkv, int hd, const double *q, const double *k, const double *v, const int *doc,
			      const double *dout, double *dq, double *dk, double *dv)
{
	const int G = nh / nkv;
	const double scale = 1.0 / sqrt((double)hd);
	double *o = ref_alloc((size_t)T * nh * hd), *lse = ref_alloc((size_t)nh * T);
	ref_attention_fwd(T, nh, nkv, hd, q, k, v, doc, o, lse);
	for (size_t e = 0; e < (size_t)T * nh * hd; e++)
		dq[e] = 0;
	for (size_t e = 0; e < (size_t)T * nkv * hd; e++)
		dk[e] = dv[e] = 0;
	for (int h = 0; h < nh; h++) {
		const int kvh = h / G;
		for (int i = 0; i < T; i++) {
			const double *qi = q + ((size_t)i * nh + h) * hd, *gi = dout + ((size_t)i * nh + h) * hd;
			const double *oi = o + ((size_t)i * nh + h) * hd;
			double D = 0;
			for (int d = 0; d < hd; d++)
				D += gi[d] * oi[d];
			for (int j = 0; j <= i; j++) {
				if (doc[j] != doc[i])
					continue;
				const double *kj = k + ((size_t)j * nkv + kvh) * hd, *vj = v + ((size_t)j * nkv + kvh) * hd;
				double s = 0, dp = 0;
				for (int d = 0; d < hd; d++) {
					s += qi[d] * kj[d];
					dp += gi[d] * vj[d];
				}
				const double p = exp(s * scale - lse[(size_t)h * T + i]);
				const double ds = p * (dp - D);
				double *dqi = dq + ((size_t)i * nh + h) * hd;
				double *dkj = dk + ((size_t)j * nkv + kvh) * hd, *dvj = dv + ((size_t)j * nkv + kvh) * hd;
				for (int d = 0; d < hd; d++) {
					dqi[d] += scale * ds * kj[d];
					dkj[d] += scale * ds * qi[d];
					dvj[d] += p * gi[d];
				}
			}
		}
	}
	free(o);
	free(lse);
}

/* sum over heads [h0, h1) and rows [i0, i1) of o * w, o from the reference forward (rows
 * are independent, so the finite differences below only recompute the rows an input
 * element reaches: its own row for q, the rest of its document in its head group for k, v). */
static double ref_attention_loss_part(int T, int nh, int nkv, int hd, const double *q, const double *k, const double *v,
				      const int *doc, const double *w, int h0, int h1, int i0, int i1)
{
	const int G = nh / nkv;
	const double scale = 1.0 / sqrt((double)hd);
	double *sc = ref_alloc((size_t)T);
	double loss = 0;
	for (int h = h0; h < h1; h++) {
		const int kvh = h / G;
		for (int i = i0; i < i1; i++) {
			const double *qi = q + ((size_t)i * nh + h) * hd, *wi = w + ((size_t)i * nh + h) * hd;
			double mx = -INFINITY, sum = 0, acc = 0;
			for (int j = 0; j <= i; j++) {
				if (doc[j] != doc[i])
					continue;
				const double *kj = k + ((size_t)j * nkv + kvh) * hd;
				double s = 0;
				for (int d = 0; d < hd; d++)
					s += qi[d] * kj[d];
				sc[j] = s * scale;
				mx = sc[j] > mx ? sc[j] : mx;
			}
			for (int j = 0; j <= i; j++) {
				if (doc[j] != doc[i])
					continue;
				const double p = exp(sc[j] - mx), *vj = v + ((size_t)j * nkv + kvh) * hd;
				double vw = 0;
				for (int d = 0; d < hd; d++)
					vw += vj[d] * wi[d];
				sum += p;
				acc += p * vw;
			}
			loss += acc / sum;
		}
	}
	free(sc);
	return loss;
}

/* Every |got - want| <= atol + rtol |want|, with atol = atol_frac * max |want| (so the bound
 * scales with the tensor). Prints the worst element on failure; returns the worst ratio. */
static double ref_check(const char *what, const double *got, const double *want, size_t n, double atol_frac, double rtol)
{
	double amax = 0;
	for (size_t e = 0; e < n; e++)
		amax = fabs(want[e]) > amax ? fabs(want[e]) : amax;
	const double atol = atol_frac * (amax > 0 ? amax : 1);
	double worst = 0;
	size_t we = 0;
	for (size_t e = 0; e < n; e++) {
		const double r = fabs(got[e] - want[e]) / (atol + rtol * fabs(want[e]));
		if (!(r <= worst)) { /* also catches NaN */
			worst = r;
			we = e;
			if (isnan(r))
				break;
		}
	}
	EXPECT(worst <= 1.0);
	if (!(worst <= 1.0))
		fprintf(stderr, "  %s: element %zu got %.9g want %.9g (max |want| %.3g, %.2fx the tolerance)\n", what, we, got[we],
			want[we], amax, worst);
	return worst;
}

#endif

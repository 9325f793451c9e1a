/* attention_twin_cases.h - the attention twin test driver, shared by test_attention_f32.c and
 * test_attention_bf16.c: include it after the twin instances (it uses act_t) and after
 * defining `static const struct attn_tols attn_tols` (the test's tolerances). One case = random inputs (rounded to
 * act_t), the three twins, then: out and lse against the double reference, delta against
 * its definition, dq/dk/dv against the analytic double backward, and a sample of (or
 * every) gradient element against central finite differences of the double forward. */
#ifndef ATTENTION_TWIN_CASES_H
#define ATTENTION_TWIN_CASES_H

#include <time.h>

#include "attention_ref.h"

typedef void attn_fwd_fn(const act_t *q, const act_t *k, const act_t *v, const int *doc, act_t *out, float *lse, int tokens);
typedef void attn_pre_fn(const act_t *out, const act_t *dout, float *delta, int tokens);
typedef void attn_bwd_fn(const act_t *q, const act_t *k, const act_t *v, const int *doc, const act_t *dout, const float *lse,
			 const float *delta, act_t *dq, act_t *dk, act_t *dv, int tokens);

struct attn_inst {
	const char *name;
	int nh, nkv, hd;
	attn_fwd_fn *fwd;
	attn_pre_fn *pre;
	attn_bwd_fn *bwd;
};

static void *attn_test_alloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p) {
		fprintf(stderr, "test: out of memory\n");
		exit(2);
	}
	return p;
}

/* x (act_t) = amp * N(0, 1); xd = the same values as stored (after rounding), in double. */
static void attn_fill(act_t *x, double *xd, size_t n, double amp)
{
	for (size_t e = 0; e < n; e++) {
		act_store(x + e, (float)(amp * ref_normal()));
		xd[e] = act_load(x + e);
	}
}

static void attn_to_double(double *dst, const act_t *x, size_t n)
{
	for (size_t e = 0; e < n; e++)
		dst[e] = act_load(x + e);
}

/* d loss / d x[idx] by central differences of the double forward; x is q (which = 0), k or
 * v (which = 1, 2). loss = sum(o * w); only the rows x[idx] reaches are recomputed. */
static double attn_fd(const struct attn_inst *in, int T, double *q, double *k, double *v, const int *doc, const double *w,
		      int which, size_t idx)
{
	const int nh = in->nh, nkv = in->nkv, hd = in->hd, G = nh / nkv;
	double *x = which == 0 ? q : which == 1 ? k : v;
	int h0, h1, i0, i1;
	if (which == 0) { /* q[i, h, :] reaches row (i, h) */
		i0 = (int)(idx / ((size_t)nh * hd));
		h0 = (int)(idx / hd % nh);
		i1 = i0 + 1;
		h1 = h0 + 1;
	} else { /* k, v[j, kvh, :] reach rows j.. of j's document, heads of kvh */
		i0 = (int)(idx / ((size_t)nkv * hd));
		const int kvh = (int)(idx / hd % nkv);
		h0 = kvh * G;
		h1 = h0 + G;
		i1 = i0 + 1;
		while (i1 < T && doc[i1] == doc[i0])
			i1++;
	}
	const double eps = 1e-4, save = x[idx];
	x[idx] = save + eps;
	const double lp = ref_attention_loss_part(T, nh, nkv, hd, q, k, v, doc, w, h0, h1, i0, i1);
	x[idx] = save - eps;
	const double lm = ref_attention_loss_part(T, nh, nkv, hd, q, k, v, doc, w, h0, h1, i0, i1);
	x[idx] = save;
	return (lp - lm) / (2 * eps);
}

/* T tokens as rows of seq_len, documents of random length 1..maxlen (or lens cycled);
 * inputs amp * N(0, 1); fd < 0: no finite differences, 0: every element, n: n per tensor. */
static void attn_case(const struct attn_inst *in, int T, int seq_len, int maxlen, const int *lens, int n_lens, double amp,
		      int fd, uint64_t seed)
{
	const int nh = in->nh, nkv = in->nkv, hd = in->hd;
	const size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
	ref_seed(seed);
	int *doc = attn_test_alloc((size_t)T, sizeof(int));
	ref_make_docs(doc, T, seq_len, maxlen, lens, n_lens);
	act_t *qa = attn_test_alloc(nq, sizeof(act_t)), *ka = attn_test_alloc(nk, sizeof(act_t));
	act_t *va = attn_test_alloc(nk, sizeof(act_t)), *wa = attn_test_alloc(nq, sizeof(act_t));
	act_t *o = attn_test_alloc(nq, sizeof(act_t)), *dq = attn_test_alloc(nq, sizeof(act_t));
	act_t *dk = attn_test_alloc(nk, sizeof(act_t)), *dv = attn_test_alloc(nk, sizeof(act_t));
	float *lse = attn_test_alloc((size_t)nh * T, sizeof(float)), *delta = attn_test_alloc((size_t)nh * T, sizeof(float));
	double *q = ref_alloc(nq), *k = ref_alloc(nk), *v = ref_alloc(nk), *w = ref_alloc(nq);
	double *o_ref = ref_alloc(nq), *lse_ref = ref_alloc((size_t)nh * T);
	double *dq_ref = ref_alloc(nq), *dk_ref = ref_alloc(nk), *dv_ref = ref_alloc(nk);
	double *got = ref_alloc(nq), *got2 = ref_alloc(nq > (size_t)nh * T ? nq : (size_t)nh * T);
	attn_fill(qa, q, nq, amp);
	attn_fill(ka, k, nk, amp);
	attn_fill(va, v, nk, 1.0);
	attn_fill(wa, w, nq, 1.0);

	in->fwd(qa, ka, va, doc, o, lse, T);
	in->pre(o, wa, delta, T);
	in->bwd(qa, ka, va, doc, wa, lse, delta, dq, dk, dv, T);

	char what[160];
	double worst = 0, r;
	ref_attention_fwd(T, nh, nkv, hd, q, k, v, doc, o_ref, lse_ref);
	snprintf(what, sizeof what, "%s T=%d out", in->name, T);
	attn_to_double(got, o, nq);
	r = ref_check(what, got, o_ref, nq, attn_tols.o_atol, attn_tols.o_rtol);
	worst = r > worst ? r : worst;
	snprintf(what, sizeof what, "%s T=%d lse", in->name, T);
	for (size_t e = 0; e < (size_t)nh * T; e++)
		got2[e] = lse[e];
	r = ref_check(what, got2, lse_ref, (size_t)nh * T, attn_tols.lse_atol, attn_tols.lse_rtol);
	worst = r > worst ? r : worst;

	/* delta = rowsum(dout * out) of the twin's own (rounded) out, summed in double */
	for (int t = 0; t < T; t++)
		for (int h = 0; h < nh; h++) {
			double acc = 0;
			for (int d = 0; d < hd; d++)
				acc += w[((size_t)t * nh + h) * hd + d] * act_load(o + ((size_t)t * nh + h) * hd + d);
			got2[(size_t)h * T + t] = acc;
		}
	double *delta_d = ref_alloc((size_t)nh * T);
	for (size_t e = 0; e < (size_t)nh * T; e++)
		delta_d[e] = delta[e];
	snprintf(what, sizeof what, "%s T=%d delta", in->name, T);
	ref_check(what, delta_d, got2, (size_t)nh * T, 1e-5, 1e-5); /* fp32 sum of HD products */
	free(delta_d);

	ref_attention_bwd(T, nh, nkv, hd, q, k, v, doc, w, dq_ref, dk_ref, dv_ref);
	double gworst = 0;
	snprintf(what, sizeof what, "%s T=%d dq", in->name, T);
	attn_to_double(got, dq, nq);
	r = ref_check(what, got, dq_ref, nq, attn_tols.grad_atol, attn_tols.grad_rtol);
	gworst = r > gworst ? r : gworst;
	snprintf(what, sizeof what, "%s T=%d dk", in->name, T);
	attn_to_double(got, dk, nk);
	r = ref_check(what, got, dk_ref, nk, attn_tols.grad_atol, attn_tols.grad_rtol);
	gworst = r > gworst ? r : gworst;
	snprintf(what, sizeof what, "%s T=%d dv", in->name, T);
	attn_to_double(got, dv, nk);
	r = ref_check(what, got, dv_ref, nk, attn_tols.grad_atol, attn_tols.grad_rtol);
	gworst = r > gworst ? r : gworst;

	/* finite differences: the twin's gradient and the analytic reference against them */
	double fworst = 0;
	int nfd = 0;
	if (fd >= 0) {
		const act_t *gs[3] = {dq, dk, dv};
		const double *refs[3] = {dq_ref, dk_ref, dv_ref};
		const size_t ns[3] = {nq, nk, nk};
		const char *names[3] = {"dq", "dk", "dv"};
		for (int t = 0; t < 3; t++) {
			const size_t n = fd == 0 || (size_t)fd > ns[t] ? ns[t] : (size_t)fd;
			double *num = ref_alloc(n), *tw = ref_alloc(n), *an = ref_alloc(n);
			double gmax = 0; /* scale the bound by the whole gradient, not the sample */
			for (size_t e = 0; e < ns[t]; e++)
				gmax = fabs(refs[t][e]) > gmax ? fabs(refs[t][e]) : gmax;
			for (size_t s = 0; s < n; s++) {
				const size_t idx = n == ns[t] ? s : (size_t)(ref_uniform() * ns[t]);
				num[s] = attn_fd(in, T, q, k, v, doc, w, t, idx);
				tw[s] = act_load(gs[t] + idx);
				an[s] = refs[t][idx];
			}
			nfd += (int)n;
			/* ref_check scales atol by the sample's max; rescale to the whole tensor's */
			double smax = 0;
			for (size_t s = 0; s < n; s++)
				smax = fabs(num[s]) > smax ? fabs(num[s]) : smax;
			const double f = smax > 0 ? gmax / smax : 1;
			snprintf(what, sizeof what, "%s T=%d %s vs finite differences", in->name, T, names[t]);
			r = ref_check(what, tw, num, n, attn_tols.grad_atol * f, attn_tols.grad_rtol);
			fworst = r > fworst ? r : fworst;
			snprintf(what, sizeof what, "%s T=%d reference %s vs finite differences", in->name, T, names[t]);
			ref_check(what, an, num, n, 1e-6 * f, 1e-6);
			free(num);
			free(tw);
			free(an);
		}
	}
	printf("attention %s T=%-5d fwd %.3f  bwd %.3f  fd %.3f (%d elements)  [worst error / tolerance]\n", in->name, T, worst,
	       gworst, fworst, nfd);

	free(doc);
	free(qa), free(ka), free(va), free(wa), free(o), free(dq), free(dk), free(dv), free(lse), free(delta);
	free(q), free(k), free(v), free(w), free(o_ref), free(lse_ref), free(dq_ref), free(dk_ref), free(dv_ref);
	free(got), free(got2);
}

/* tokens = 0: every twin returns without touching anything. */
static void attn_empty(const struct attn_inst *in)
{
	act_t x[1];
	float f[1] = {42.f};
	int d[1] = {0};
	act_store(x, 7.f);
	in->fwd(x, x, x, d, x, f, 0);
	in->pre(x, x, f, 0);
	in->bwd(x, x, x, d, x, f, f, x, x, x, 0);
	EXPECT(act_load(x) == 7.f && f[0] == 42.f);
}

static double attn_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Milliseconds per call of each twin (informational; documents as in attn_case). */
static void attn_time(const struct attn_inst *in, int T, int seq_len, int maxlen, int reps)
{
	const size_t nq = (size_t)T * in->nh * in->hd, nk = (size_t)T * in->nkv * in->hd;
	ref_seed(99);
	int *doc = attn_test_alloc((size_t)T, sizeof(int));
	ref_make_docs(doc, T, seq_len, maxlen, NULL, 0);
	act_t *q = attn_test_alloc(nq, sizeof(act_t)), *k = attn_test_alloc(nk, sizeof(act_t));
	act_t *v = attn_test_alloc(nk, sizeof(act_t)), *w = attn_test_alloc(nq, sizeof(act_t));
	act_t *o = attn_test_alloc(nq, sizeof(act_t)), *dq = attn_test_alloc(nq, sizeof(act_t));
	act_t *dk = attn_test_alloc(nk, sizeof(act_t)), *dv = attn_test_alloc(nk, sizeof(act_t));
	float *lse = attn_test_alloc((size_t)in->nh * T, sizeof(float)), *delta = attn_test_alloc((size_t)in->nh * T, sizeof(float));
	double *scratch = ref_alloc(nq);
	attn_fill(q, scratch, nq, 1.0);
	attn_fill(k, scratch, nk, 1.0);
	attn_fill(v, scratch, nk, 1.0);
	attn_fill(w, scratch, nq, 1.0);
	/* up to reps calls each, stopping after ~0.1 s (sanitizer builds are 30x slower) */
	int nf = 0, np = 0, nb = 0;
	double t0 = attn_now(), t1, t2, t3;
	do
		in->fwd(q, k, v, doc, o, lse, T);
	while (++nf < reps && (t1 = attn_now()) - t0 < 0.1);
	t1 = attn_now();
	do
		in->pre(o, w, delta, T);
	while (++np < reps && (t2 = attn_now()) - t1 < 0.1);
	t2 = attn_now();
	do
		in->bwd(q, k, v, doc, w, lse, delta, dq, dk, dv, T);
	while (++nb < reps && (t3 = attn_now()) - t2 < 0.1);
	t3 = attn_now();
	printf("attention %s T=%d (rows of %d, documents <= %d): fwd %.3f ms, bwd_pre %.3f ms, bwd %.3f ms per call\n", in->name, T,
	       seq_len, maxlen, 1e3 * (t1 - t0) / nf, 1e3 * (t2 - t1) / np, 1e3 * (t3 - t2) / nb);
	free(doc), free(q), free(k), free(v), free(w), free(o), free(dq), free(dk), free(dv), free(lse), free(delta), free(scratch);
}

#endif

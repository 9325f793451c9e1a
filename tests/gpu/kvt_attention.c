/* kvt_attention.c - drivers of rope_fwd/_bwd, attention_fwd, attention_bwd_pre and
 * attention_bwd, with a double-precision reference for the backward's saved inputs. */
#include "kvt.h"

#define INV_ROPE(T) \
	static void inv_rope_##T(void *f, void **a) { FN((T *, const T *, const int *, int, int))(AP(0), AP(1), AP(2), AI(3), AI(4)); }
INV_BOTH(INV_ROPE)
#define INV_ATTENTION_FWD(T)                                                                                            \
	static void inv_attention_fwd_##T(void *f, void **a)                                                              \
	{                                                                                                                 \
		FN((const T *, const T *, const T *, const int *, T *, float *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AI(6)); \
	}
INV_BOTH(INV_ATTENTION_FWD)
#define INV_ATTENTION_BWD_PRE(T) \
	static void inv_attention_bwd_pre_##T(void *f, void **a) { FN((const T *, const T *, float *, int))(AP(0), AP(1), AP(2), AI(3)); }
INV_BOTH(INV_ATTENTION_BWD_PRE)
#define INV_ATTENTION_BWD(T)                                                                                            \
	static void inv_attention_bwd_##T(void *f, void **a)                                                              \
	{                                                                                                                 \
		FN((const T *, const T *, const T *, const int *, const T *, const float *, const float *, T *, T *, T *, int))( \
			AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AP(8), AP(9), AI(10));                            \
	}
INV_BOTH(INV_ATTENTION_BWD)

/* Document ids of T tokens: runs of lens[] (cycled), or of 1..maxlen tokens when lens is NULL;
 * every run gets its own id (decreasing, so no kernel can rely on an order). */
static void make_docs(int *doc, int T, const int *lens, int nl, int maxlen)
{
	int run = 0, left = 0, li = 0;
	for (int t = 0; t < T; t++) {
		if (left == 0) {
			left = lens ? lens[li++ % nl] : 1 + rnd_int(maxlen);
			run++;
		}
		doc[t] = 5000 - 3 * run;
		left--;
	}
}

/* Causal document-masked attention in double: lse [NH, T] and out [T, NH, HD] (the inputs
 * attention_bwd needs, consistent with q, k, v). */
static void attn_ref(const struct tcase *c, int bq, int bk, int bv, const int *doc, int T, int NH, int NKV, int HD,
		     double *out, float *lse)
{
	const int G = NH / NKV;
	const double scale = 1.0 / sqrt((double)HD);
	double *q = xcalloc((size_t)T * NH * HD, sizeof(double)), *k = xcalloc((size_t)T * NKV * HD, sizeof(double)),
	       *v = xcalloc((size_t)T * NKV * HD, sizeof(double)), *s = xcalloc((size_t)T, sizeof(double));
	int *start = xcalloc((size_t)T, sizeof(int));
	for (size_t j = 0; j < (size_t)T * NH * HD; j++)
		q[j] = tb_get(c, bq, j);
	for (size_t j = 0; j < (size_t)T * NKV * HD; j++) {
		k[j] = tb_get(c, bk, j);
		v[j] = tb_get(c, bv, j);
	}
	for (int i = 0; i < T; i++)
		start[i] = i > 0 && doc[i - 1] == doc[i] ? start[i - 1] : i;
	for (int h = 0; h < NH; h++)
		for (int i = 0; i < T; i++) {
			const double *qi = q + ((size_t)i * NH + h) * HD;
			double m = -INFINITY;
			for (int j = start[i]; j <= i; j++) {
				const double *kj = k + ((size_t)j * NKV + h / G) * HD;
				double d = 0;
				for (int e = 0; e < HD; e++)
					d += qi[e] * kj[e];
				s[j] = d * scale;
				m = s[j] > m ? s[j] : m;
			}
			double sum = 0;
			for (int j = start[i]; j <= i; j++)
				sum += exp(s[j] - m);
			const double l = m + log(sum);
			lse[(size_t)h * T + i] = (float)l;
			double *o = out + ((size_t)i * NH + h) * HD;
			for (int e = 0; e < HD; e++)
				o[e] = 0;
			for (int j = start[i]; j <= i; j++) {
				const double p = exp(s[j] - l), *vj = v + ((size_t)j * NKV + h / G) * HD;
				for (int e = 0; e < HD; e++)
					o[e] += p * vj[e];
			}
		}
	free(q);
	free(k);
	free(v);
	free(s);
	free(start);
}

/* rope_fwd and rope_bwd: the same arguments and geometry */
static void drv_rope(struct kctx *x)
{
	NEED(HD, "HD");
	const int P = HD % 4 == 0 ? 2 : 1, tok = (int)(256 / (HD / 2 / P));
	enum { PLAIN, INPLACE, UNALIGNED };
	const struct {
		int tokens, heads, how;
	} cs[] = {{0, 4, PLAIN},      {1, 4, PLAIN},      {37, 4, PLAIN},      {256, 4, PLAIN},
		  {1000, 4, PLAIN},   {1024 * tok + 5, 2, PLAIN}, {37, 1, PLAIN}, {256, 4, INPLACE},
		  {37, 3, UNALIGNED}};
	const char *what[] = {"", " in-place", " unaligned"};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int T = cs[ci].tokens, nh = cs[ci].heads, how = cs[ci].how;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d heads=%d%s%s", T, nh, T > 1024 * tok ? " grid-stride" : "", what[how]);
		const size_t n = (size_t)T * nh * HD;
		int bx = tb_add(c, how == INPLACE ? "y=x" : "x", x->adt, n, how == INPLACE ? R_INOUT : R_IN);
		tb_normal(c, bx, 0, 1);
		int bp = tb_add(c, "pos", DT_I32, (size_t)T, R_IN);
		for (int t = 0; t < T; t++) /* positions in a document; some far beyond a 4k context */
			tb_i32(c, bp)[t] = t % 10 == 9 ? rnd_int(1 << 17) : rnd_int(4096);
		int by = how == INPLACE ? bx : tb_add(c, "y", x->adt, n, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_EW)); /* the same double sin/cos, products rounded alike */
		if (how == UNALIGNED)
			c->b[bx].off = dt_size[x->adt];
		ta_bufs(c, "y", by, "x", bx, "pos", bp, NULL);
		ta_int(c, "tokens", T);
		ta_int(c, "heads", nh);
		tv(c, "tokens", T);
		tg(c, imax(1, imin(T, 1024)), 1, 256);
		run_case(x, c);
	}
}
/* token/document layouts for attention: one document, several (some of one token), many
 * one-token documents (dq = dk = 0 exactly), random lengths; amp scales q and k (peaky) */
static const struct attn_layout {
	int T;
	int lens[6], nl, maxlen;
	double amp;
	const char *what;
} attn_layouts[] = {
	{1, {1}, 1, 0, 1.0, "1 doc"},
	{37, {37}, 1, 0, 1.0, "1 doc"},
	{256, {256}, 1, 0, 1.0, "1 doc"},
	{256, {100, 1, 60, 95}, 4, 0, 1.0, "docs 100,1,60,95"},
	{1000, {1000}, 1, 0, 1.0, "1 doc"},
	{1000, {0}, 0, 300, 1.0, "random docs"},
	{64, {1}, 1, 0, 1.0, "64 one-token docs"},
	{130, {0}, 0, 40, 2.5, "random docs amp 2.5"},
};

static void attn_inputs(struct tcase *c, const struct attn_layout *L, int NH, int NKV, int HD, int adt, int *bq, int *bk,
			int *bv, int *bd)
{
	const int T = L->T;
	*bq = tb_add(c, "q", adt, (size_t)T * NH * HD, R_IN);
	*bk = tb_add(c, "k", adt, (size_t)T * NKV * HD, R_IN);
	*bv = tb_add(c, "v", adt, (size_t)T * NKV * HD, R_IN);
	*bd = tb_add(c, "doc", DT_I32, (size_t)T, R_IN);
	tb_normal(c, *bq, 0, L->amp);
	tb_normal(c, *bk, 0, L->amp);
	tb_normal(c, *bv, 0, 1);
	make_docs(tb_i32(c, *bd), T, L->nl ? L->lens : NULL, L->nl, L->maxlen);
}

static void drv_attention_fwd(struct kctx *x)
{
	NEED(NH, "NH");
	NEED(NKV, "NKV");
	NEED(HD, "HD");
	NEED(BM, "BLOCK_M");
	for (size_t li = 0; li < sizeof attn_layouts / sizeof attn_layouts[0]; li++) {
		const struct attn_layout *L = &attn_layouts[li];
		if (over_max_rows(x, "tokens", L->T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d %s", L->T, L->what);
		int bq, bk, bv, bd;
		attn_inputs(c, L, (int)NH, (int)NKV, (int)HD, x->adt, &bq, &bk, &bv, &bd);
		int bo = tb_out(c, "out", x->adt, (size_t)L->T * NH * HD, x->bf ? TOL_BF16_ATTN : TOL_F32_RED);
		int bl = tb_out(c, "lse", DT_F32, (size_t)NH * L->T, TOL_F32_RED);
		ta_bufs(c, "q", bq, "k", bk, "v", bv, "doc", bd, "out", bo, "lse", bl, NULL);
		tc_run_n(x, c, "tokens", L->T, NH, ceil_div(L->T, BM), 2 * BM);
	}
}

static void drv_attention_bwd_pre(struct kctx *x)
{
	NEED(NH, "NH");
	NEED(HD, "HD");
	const int Ts[] = {1, 37, 256, 1000};
	for (size_t ci = 0; ci < sizeof Ts / sizeof Ts[0]; ci++) {
		const int T = Ts[ci];
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d", T);
		int bo = tb_add(c, "out", x->adt, (size_t)T * NH * HD, R_IN);
		int bd = tb_add(c, "dout", x->adt, (size_t)T * NH * HD, R_IN);
		tb_normal(c, bo, 0, 1);
		tb_normal(c, bd, 0, 1);
		int bdl = tb_out(c, "delta", DT_F32, (size_t)NH * T, TOL_F32_RED);
		ta_bufs(c, "out", bo, "dout", bd, "delta", bdl, NULL);
		tc_run_n(x, c, "tokens", T, ceil_div((long)T * NH, 8), 1, 256);
	}
}

static void drv_attention_bwd(struct kctx *x)
{
	NEED(NH, "NH");
	NEED(NKV, "NKV");
	NEED(HD, "HD");
	NEED(BM, "BLOCK_M");
	NEED(BN, "BLOCK_N");
	for (size_t li = 0; li < sizeof attn_layouts / sizeof attn_layouts[0]; li++) {
		const struct attn_layout *L = &attn_layouts[li];
		const int T = L->T;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d %s", T, L->what);
		int bq, bk, bv, bd;
		attn_inputs(c, L, (int)NH, (int)NKV, (int)HD, x->adt, &bq, &bk, &bv, &bd);
		int bdo = tb_in(c, "dout", x->adt, (size_t)T * NH * HD, 0, 1);
		/* lse and delta = rowsum(dout * out) consistent with q, k, v (out rounded to act_t
		 * first, as attention_fwd stores it) */
		int bl = tb_add(c, "lse", DT_F32, (size_t)NH * T, R_IN);
		int bdl = tb_add(c, "delta", DT_F32, (size_t)NH * T, R_IN);
		double *out = xcalloc((size_t)T * NH * HD, sizeof(double));
		attn_ref(c, bq, bk, bv, tb_i32(c, bd), T, (int)NH, (int)NKV, (int)HD, out, tb_f32(c, bl));
		for (int i = 0; i < T; i++)
			for (int h = 0; h < NH; h++) {
				double s = 0;
				for (int e = 0; e < HD; e++) {
					const size_t j = ((size_t)i * NH + h) * HD + e;
					const double o = x->bf ? bf2f(f2bf((float)out[j])) : (float)out[j];
					s += o * tb_get(c, bdo, j);
				}
				tb_f32(c, bdl)[(size_t)h * T + i] = (float)s;
			}
		free(out);
		const double tol = x->bf ? TOL_BF16_ATTN : TOL_F32_RED;
		int bdq = tb_out(c, "dq", x->adt, (size_t)T * NH * HD, tol);
		int bdk = tb_out(c, "dk", x->adt, (size_t)T * NKV * HD, tol);
		int bdv = tb_out(c, "dv", x->adt, (size_t)T * NKV * HD, tol);
		/* dq and dk of a one-token document are 0 exactly: measure the roundoff both sides
		 * leave against the gradients' natural size instead */
		c->b[bdq].floor = c->b[bdk].floor = 0.1;
		ta_bufs(c, "q", bq, "k", bk, "v", bv, "doc", bd, "dout", bdo, "lse", bl, "delta", bdl, "dq", bdq,
			"dk", bdk, "dv", bdv, NULL);
		ta_int(c, "tokens", T);
		tv(c, "tokens", T);
		tg(c, (NKV + NH) * ceil_div(T, BM), 1, 2 * BM);
		c->smem = (unsigned)(x->bf ? 2 * (2 * BM + 4 * BN) * (HD + 8) + 16 * BN
					   : 4 * (2 * BM * HD + 2 * BN * (HD + 1) + 2 * BN + BM * BN));
		run_case(x, c);
	}
}


const struct driver kvt_attention_drivers[] = {
	{"rope_fwd", "act_t *y, const act_t *x, const int *pos, int tokens, int heads", drv_rope, ACT(rope)},
	{"rope_bwd", "act_t *y, const act_t *x, const int *pos, int tokens, int heads", drv_rope, ACT(rope)},
	{"attention_fwd", "const act_t *q, const act_t *k, const act_t *v, const int *doc, act_t *out, float *lse, int tokens",
	 drv_attention_fwd, ACT(attention_fwd)},
	{"attention_bwd_pre", "const act_t *out, const act_t *dout, float *delta, int tokens", drv_attention_bwd_pre,
	 ACT(attention_bwd_pre)},
	{"attention_bwd",
	 "const act_t *q, const act_t *k, const act_t *v, const int *doc, const act_t *dout, const float *lse, "
	 "const float *delta, act_t *dq, act_t *dk, act_t *dv, int tokens",
	 drv_attention_bwd, ACT(attention_bwd)},
	{NULL},
};

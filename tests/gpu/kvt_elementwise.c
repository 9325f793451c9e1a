/* kvt_elementwise.c - drivers of the element-wise and row-copy templates: embedding_fwd/_bwd,
 * add, the casts. */
#include "kvt.h"

#define INV_EMBEDDING_FWD(T) \
	static void inv_embedding_fwd_##T(void *f, void **a) { FN((T *, const T *, const int *, int, int, int))(AP(0), AP(1), AP(2), AI(3), AI(4), AI(5)); }
INV_BOTH(INV_EMBEDDING_FWD)
#define INV_EMBEDDING_BWD(T) \
	static void inv_embedding_bwd_##T(void *f, void **a) { FN((float *, const T *, const int *, int, int, int))(AP(0), AP(1), AP(2), AI(3), AI(4), AI(5)); }
INV_BOTH(INV_EMBEDDING_BWD)
#define INV_ADD(T) \
	static void inv_add_##T(void *f, void **a) { FN((T *, const T *, const T *, long))(AP(0), AP(1), AP(2), AL(3)); }
INV_BOTH(INV_ADD)
static void inv_cast_f32_bf16(void *f, void **a) { FN((bf16 *, const float *, long))(AP(0), AP(1), AL(2)); }
static void inv_cast_bf16_f32(void *f, void **a) { FN((float *, const bf16 *, long))(AP(0), AP(1), AL(2)); }

static void drv_embedding_fwd(struct kctx *x)
{
	NEED(H, "H");
	const int vec = x->bf ? 8 : 4, nv = (int)ceil_div(H, vec);
	/* EMB_G: 1..256 by powers of two (no 32-wide plateau) */
	int g = 1;
	while (g < nv && g < 256)
		g *= 2;
	const int stride = 1024 * (256 / g) + 37;
	const struct {
		int tokens, v0, vocab, unaligned;
		const char *what;
	} cs[] = {{0, 0, 300, 0, ""},       {1, 0, 300, 0, ""},      {37, 0, 300, 0, ""},
		  {256, 0, 300, 0, ""},     {1000, 0, 300, 0, ""},   {stride, 0, 300, 0, " grid-stride"},
		  {256, 100, 200, 0, " v0=100"}, {37, 0, 300, 1, " unaligned"}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int T = cs[ci].tokens, v0 = cs[ci].v0, V = cs[ci].vocab;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d%s", T, cs[ci].what);
		int bt = tb_in(c, "table", x->adt, (size_t)V * H, 0, 1);
		int bi = tb_add(c, "ids", DT_I32, (size_t)T, R_IN);
		for (int t = 0; t < T; t++) {
			const double u = rnd_unif();
			tb_i32(c, bi)[t] = u < 0.03 ? -1 - rnd_int(5) : u < 0.06 ? v0 + V + rnd_int(50) : u < 0.08 && v0 ? rnd_int(v0) : v0 + rnd_int(V);
		}
		int bo = tb_out(c, "out", x->adt, (size_t)T * H, TOL_EXACT); /* a row copy */
		if (cs[ci].unaligned)
			c->b[bo].off = dt_size[x->adt];
		ta_bufs(c, "out", bo, "table", bt, "ids", bi, NULL);
		ta_int(c, "tokens", T);
		ta_int(c, "v0", v0);
		ta_int(c, "vocab", V);
		tv(c, "tokens", T);
		tg(c, imax(1, imin(T, 1024)), 1, 256);
		run_case(x, c);
	}
}


/* the tail of add and the casts: the last argument n, their launch (2048 elements a block) */
static void run_elementwise(struct kctx *x, struct tcase *c, long n)
{
	ta_long(c, "n", n);
	tv(c, "n", n);
	tg(c, imax(1, (int)ceil_div(n, 2048)), 1, 256);
	run_case(x, c);
}

static void drv_add(struct kctx *x)
{
	enum { PLAIN, INPLACE, UNALIGNED };
	const struct {
		long n;
		int how;
	} cs[] = {{0, PLAIN}, {1, PLAIN}, {37 * 128 + 3, PLAIN}, {256 * 128, PLAIN}, {1000 * 128 + 5, PLAIN},
		  {3000001, PLAIN}, {4101, INPLACE}, {4101, UNALIGNED}};
	const char *what[] = {"", " in-place", " unaligned"};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const long n = cs[ci].n;
		const int how = cs[ci].how;
		struct tcase *c = tc_new(x, "n=%ld%s", n, what[how]);
		int ba = tb_add(c, how == INPLACE ? "y=a" : "a", x->adt, (size_t)n, how == INPLACE ? R_INOUT : R_IN);
		int bb = tb_add(c, "b", x->adt, (size_t)n, R_IN);
		tb_normal(c, ba, 0, 1);
		tb_normal(c, bb, 0, 1);
		int by = how == INPLACE ? ba : tb_add(c, "y", x->adt, (size_t)n, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_EW));
		if (how == UNALIGNED)
			c->b[bb].off = dt_size[x->adt];
		ta_bufs(c, "y", by, "a", ba, "b", bb, NULL);
		run_elementwise(x, c, n);
	}
}

static const long cast_n[] = {0, 1, 7, 37 * 128 + 3, 128000, 300001};

static void drv_cast_f32_bf16(struct kctx *x)
{
	/* NaNs, infinities, zeros, subnormals, the largest float, exact ties (to even) */
	static const uint32_t special[] = {0x7fc00000u, 0xffa00001u, 0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u,
					   0x00000001u, 0x007fffffu, 0x7f7fffffu, 0x3f808000u, 0x3f818000u, 0xbf808000u};
	for (size_t ci = 0; ci <= sizeof cast_n / sizeof cast_n[0]; ci++) {
		const int unaligned = ci == sizeof cast_n / sizeof cast_n[0];
		const long n = unaligned ? 4101 : cast_n[ci];
		struct tcase *c = tc_new(x, "n=%ld%s", n, unaligned ? " unaligned" : "");
		int bx = tb_add(c, "x", DT_F32, (size_t)n, R_IN);
		for (long i = 0; i < n; i++) {
			float v = (float)ldexp(rnd_normal(), rnd_int(61) - 30);
			if (i % 97 == 5) {
				uint32_t u = special[(i / 97) % (sizeof special / sizeof special[0])];
				memcpy(&v, &u, 4);
			}
			tb_f32(c, bx)[i] = v;
		}
		int by = tb_out(c, "y", DT_BF16, (size_t)n, TOL_EXACT); /* round to nearest even on both sides; NaN stays NaN */
		if (unaligned)
			c->b[by].off = 2;
		ta_bufs(c, "y", by, "x", bx, NULL);
		run_elementwise(x, c, n);
	}
}

static void drv_cast_bf16_f32(struct kctx *x)
{
	for (size_t ci = 0; ci <= sizeof cast_n / sizeof cast_n[0]; ci++) {
		const int unaligned = ci == sizeof cast_n / sizeof cast_n[0];
		const long n = unaligned ? 4101 : cast_n[ci];
		struct tcase *c = tc_new(x, "n=%ld%s", n, unaligned ? " unaligned" : "");
		int bx = tb_add(c, "x", DT_BF16, (size_t)n, R_IN);
		for (long i = 0; i < n; i++) /* every bit pattern is a value (NaNs, infinities, subnormals) */
			((uint16_t *)(void *)c->b[bx].init)[i] = (uint16_t)rnd_next();
		int by = tb_out(c, "y", DT_F32, (size_t)n, TOL_EXACT); /* exact */
		if (unaligned)
			c->b[bx].off = 2;
		ta_bufs(c, "y", by, "x", bx, NULL);
		run_elementwise(x, c, n);
	}
}


static void drv_embedding_bwd(struct kctx *x)
{
	NEED(H, "H");
	enum { SPREAD, SAME };
	const struct {
		int tokens, v0, vocab, how;
	} cs[] = {{0, 0, 300, SPREAD},    {1, 0, 300, SPREAD},   {37, 0, 300, SPREAD}, {256, 0, 300, SPREAD},
		  {1000, 0, 300, SPREAD}, {3000, 0, 300, SPREAD}, {1000, 0, 300, SAME}, {1000, 100, 200, SPREAD}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int T = cs[ci].tokens, v0 = cs[ci].v0, V = cs[ci].vocab;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d%s%s", T, cs[ci].how == SAME ? " one id" : " repeats",
					 v0 ? " v0=100" : "");
		int bt = tb_add(c, "dtable", DT_F32, (size_t)V * H, R_INOUT);
		tb_normal(c, bt, 0, 1);
		int bd = tb_in(c, "dout", x->adt, (size_t)T * H, 0, 1);
		int bi = tb_add(c, "ids", DT_I32, (size_t)T, R_IN);
		for (int t = 0; t < T; t++) { /* 60 distinct ids (many repeats), 5% outside the shard */
			const double u = rnd_unif();
			tb_i32(c, bi)[t] = cs[ci].how == SAME ? v0 + 5 : u < 0.05 ? (rnd_int(2) ? -7 : v0 + V + rnd_int(9)) : v0 + (rnd_int(60) * 7) % V;
		}
		tb_exact(c, bt); /* documented: bitwise equal to the twin (token order per row) */
		ta_bufs(c, "dtable", bt, "dout", bd, "ids", bi, NULL);
		ta_int(c, "tokens", T);
		ta_int(c, "v0", v0);
		ta_int(c, "vocab", V);
		tv(c, "tokens", T);
		tg(c, imax(1, T), 1, 256);
		run_case(x, c);
	}
}


const struct driver kvt_elementwise_drivers[] = {
	{"embedding_fwd", "act_t *out, const act_t *table, const int *ids, int tokens, int v0, int vocab", drv_embedding_fwd,
	 ACT(embedding_fwd)},
	{"add", "act_t *y, const act_t *a, const act_t *b, long n", drv_add, ACT(add)},
	{"embedding_bwd", "float *dtable, const act_t *dout, const int *ids, int tokens, int v0, int vocab", drv_embedding_bwd,
	 ACT(embedding_bwd)},
	{"cast_f32_bf16", "bf16 *y, const float *x, long n", drv_cast_f32_bf16, NOACT(cast_f32_bf16)},
	{"cast_bf16_f32", "float *y, const bf16 *x, long n", drv_cast_bf16_f32, NOACT(cast_bf16_f32)},
	{NULL},
};

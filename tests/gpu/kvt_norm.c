/* kvt_norm.c - drivers of rmsnorm_fwd and rmsnorm_bwd. */
#include "kvt.h"

#define INV_RMSNORM_FWD(T) \
	static void inv_rmsnorm_fwd_##T(void *f, void **a) { FN((T *, float *, const T *, const float *, int))(AP(0), AP(1), AP(2), AP(3), AI(4)); }
INV_BOTH(INV_RMSNORM_FWD)
#define INV_RMSNORM_BWD(T)                                                                                              \
	static void inv_rmsnorm_bwd_##T(void *f, void **a)                                                                \
	{                                                                                                                 \
		FN((T *, float *, float *, unsigned int *, const T *, const T *, const float *, const float *, int, int))(       \
			AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AI(8), AI(9));                                    \
	}
INV_BOTH(INV_RMSNORM_BWD)
/* the slot-group geometry of rmsnorm_fwd/_bwd (RMS_G), embedding_fwd (EMB_G) */
static int pow2_group(int nv, int lim32)
{
	if (nv <= 1)
		return 1;
	if (nv <= 2)
		return 2;
	if (nv <= 4)
		return 4;
	if (nv <= 8)
		return 8;
	if (nv <= 16)
		return 16;
	if (nv <= lim32)
		return 32;
	if (nv <= 2 * lim32)
		return 64;
	if (nv <= 4 * lim32)
		return 128;
	return 256;
}
/* x rows with magnitudes 1e-2, 1 and 30, as the residual stream has */
static void norm_rows(struct tcase *c, int b, int rows, int dim)
{
	for (int r = 0; r < rows; r++) {
		const double s = r % 3 == 0 ? 1.0 : r % 3 == 1 ? 30.0 : 0.01;
		for (int i = 0; i < dim; i++)
			tb_set(c, b, (size_t)r * dim + i, s * rnd_normal());
	}
}

static void drv_rmsnorm_fwd(struct kctx *x)
{
	NEED(DIM, "DIM");
	const int g = pow2_group((int)ceil_div(DIM, x->bf ? 8 : 4), 256);
	enum { PLAIN, INPLACE, NORSTD, UNALIGNED };
	const struct {
		int rows, how;
	} cs[] = {{0, PLAIN},    {1, PLAIN},      {37, PLAIN},     {256, PLAIN},      {1000, PLAIN},
		  {1024 * (256 / g) + 5, PLAIN}, {37, INPLACE}, {256, NORSTD}, {37, UNALIGNED}};
	const char *what[] = {"", " in-place", " rstd=NULL", " unaligned"};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, how = cs[ci].how;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s%s", rows, rows > 1000 ? " grid-stride" : "", what[how]);
		int bx = tb_add(c, how == INPLACE ? "y=x" : "x", x->adt, (size_t)rows * DIM, how == INPLACE ? R_INOUT : R_IN);
		norm_rows(c, bx, rows, (int)DIM);
		int bw = tb_in(c, "w", DT_F32, (size_t)DIM, 1, 0.1);
		int by = how == INPLACE ? bx : tb_add(c, "y", x->adt, (size_t)rows * DIM, R_OUT);
		int br = how == NORSTD ? -1 : tb_add(c, "rstd", DT_F32, (size_t)rows, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_RED)); /* a row sum in another order, rsqrtf */
		if (br >= 0)
			tb_nmse(c, br, TOL_F32_RED);
		if (how == UNALIGNED)
			c->b[bx].off = dt_size[x->adt];
		ta_bufs(c, "y", by, "rstd", br, "x", bx, "w", bw, NULL);
		tc_run_n(x, c, "rows", rows, imax(1, imin(rows, 1024)), 1, 256);
	}
}


static void drv_rmsnorm_bwd(struct kctx *x)
{
	NEED(DIM, "DIM");
	const struct {
		int rows, acc;
	} cs[] = {{1, 0}, {37, 0}, {37, 1}, {256, 0}, {1000, 1}, {1000, 0}, {5000, 0}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, acc = cs[ci].acc;
		const int nblk = imax(1, imin(rows, 256)), ngrp = (nblk + 15) / 16;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d accumulate=%d", rows, acc);
		int bdx = tb_add(c, "dx", x->adt, (size_t)rows * DIM, R_INOUT);
		if (acc)
			tb_normal(c, bdx, 0, 1);
		else
			sentinel(&c->b[bdx]);
		int bdw = tb_add(c, "dw", DT_F32, (size_t)DIM, R_INOUT);
		tb_normal(c, bdw, 0, 1);
		/* ws [nblk + ngrp, DIM]: partials; count [1 + ngrp]: zero, and zero again after */
		int bws = tb_add(c, "ws", DT_F32, (size_t)(nblk + ngrp) * DIM, R_SCRATCH);
		int bcnt = tb_add(c, "count", DT_U32, (size_t)(1 + ngrp), R_SCRATCH);
		tb_exact(c, bcnt);
		int bdy = tb_in(c, "dy", x->adt, (size_t)rows * DIM, 0, 1);
		int bx = tb_add(c, "x", x->adt, (size_t)rows * DIM, R_IN);
		norm_rows(c, bx, rows, (int)DIM);
		int bw = tb_in(c, "w", DT_F32, (size_t)DIM, 1, 0.1);
		int brs = tb_add(c, "rstd", DT_F32, (size_t)rows, R_IN);
		for (int r = 0; r < rows; r++) { /* what rmsnorm_fwd saved (EPS 1e-6) */
			double ss = 0;
			for (int i = 0; i < DIM; i++) {
				const double v = tb_get(c, bx, (size_t)r * DIM + i);
				ss += v * v;
			}
			tb_f32(c, brs)[r] = (float)(1 / sqrt(ss / (double)DIM + 1e-6));
		}
		tb_nmse(c, bdx, act_tol(x, TOL_F32_RED));
		tb_nmse(c, bdw, TOL_F32_RED);
		ta_bufs(c, "dx", bdx, "dw", bdw, "ws", bws, "count", bcnt, "dy", bdy, "x", bx, "w", bw, "rstd", brs,
			NULL);
		ta_int(c, "rows", rows);
		ta_int(c, "accumulate", acc);
		tv(c, "rows", rows);
		tg(c, nblk, 1, 256);
		run_case(x, c);
	}
}

const struct driver kvt_norm_drivers[] = {
	{"rmsnorm_fwd", "act_t *y, float *rstd, const act_t *x, const float *w, int rows", drv_rmsnorm_fwd, ACT(rmsnorm_fwd)},
	{"rmsnorm_bwd",
	 "act_t *dx, float *dw, float *ws, unsigned int *count, const act_t *dy, const act_t *x, const float *w, "
	 "const float *rstd, int rows, int accumulate",
	 drv_rmsnorm_bwd, ACT(rmsnorm_bwd)},
	{NULL},
};

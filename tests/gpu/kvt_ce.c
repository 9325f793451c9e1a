/* kvt_ce.c - drivers of the fused cross-entropy: ce_chunk_fwd, ce_finish, ce_chunk_bwd. */
#include "kvt.h"

static void inv_ce_chunk_fwd(void *f, void **a)
{
	FN((float *, float *, float *, const float *, const int *, int, int, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AI(5), AI(6), AI(7));
}
static void inv_ce_finish(void *f, void **a)
{
	FN((float *, float *, float *, const float *, const float *, const float *, const int *, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7));
}
#define INV_CE_CHUNK_BWD(T) \
	static void inv_ce_chunk_bwd_##T(void *f, void **a) \
	{ \
		FN((const float *, T *, const float *, const int *, const float *, float, int, int, int)) \
		(AP(0), AP(1), AP(2), AP(3), AP(4), AF(5), AI(6), AI(7), AI(8)); \
	}
INV_BOTH(INV_CE_CHUNK_BWD)

/* ---- fused cross-entropy ---- */
static void ce_labels(struct tcase *c, int b, int rows, int V)
{
	for (int r = 0; r < rows; r++) {
		const double u = rnd_unif();
		tb_i32(c, b)[r] = u < 0.1 ? -100 : u < 0.15 ? V + rnd_int(10) : rnd_int(V);
	}
}

/* the tail of the two chunk kernels: their last arguments, their launch (a block a row) */
static void run_chunk(struct kctx *x, struct tcase *c, int rows, int chunk, int v0)
{
	ta_int(c, "rows", rows);
	ta_int(c, "chunk", chunk);
	ta_int(c, "v0", v0);
	tv(c, "rows", rows);
	tg(c, imax(1, rows), 1, 256);
	run_case(x, c);
}

static void drv_ce_chunk_fwd(struct kctx *x)
{
	NEED(V, "V");
	const int full = imin((int)V, 2048);
	const struct {
		int rows, v0, chunk, unaligned;
	} cs[] = {{0, 0, full, 0},    {1, 0, full, 0},   {37, 0, full, 0},    {256, 0, full, 0},  {1000, 0, full, 0},
		  {37, 0, 203, 0},    {256, 200, 312, 0}, {1000, 200, 312, 0}, {37, 203, 309, 0}, {37, 0, full, 1}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, v0 = cs[ci].v0, chunk = imin(cs[ci].chunk, (int)V - v0);
		if (chunk <= 0)
			continue; /* a vocabulary too small for this chunking */
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d v0=%d chunk=%d%s", rows, v0, chunk, cs[ci].unaligned ? " unaligned" : "");
		/* the running state: overwritten by the v0 == 0 chunk, merged into by the others */
		int bm = tb_add(c, "row_max", DT_F32, (size_t)rows, R_INOUT);
		int bs = tb_add(c, "row_sum", DT_F32, (size_t)rows, R_INOUT);
		int bt = tb_add(c, "target", DT_F32, (size_t)rows, R_INOUT);
		if (v0 == 0) {
			sentinel(&c->b[bm]);
			sentinel(&c->b[bs]);
			sentinel(&c->b[bt]);
		} else {
			for (int r = 0; r < rows; r++) {
				tb_f32(c, bm)[r] = (float)(1 + rnd_normal());
				tb_f32(c, bs)[r] = (float)(1 + 99 * rnd_unif());
				tb_f32(c, bt)[r] = (float)rnd_normal();
			}
		}
		int bl = tb_add(c, "logits", DT_F32, (size_t)rows * chunk, R_IN);
		for (int r = 0; r < rows; r++) /* some rows far above the state's max */
			for (int j = 0; j < chunk; j++)
				tb_f32(c, bl)[(size_t)r * chunk + j] = (float)(3 * rnd_normal() + (r % 5 == 2 ? 20 : 0));
		if (cs[ci].unaligned)
			c->b[bl].off = 4;
		int bla = tb_add(c, "labels", DT_I32, (size_t)rows, R_IN);
		ce_labels(c, bla, rows, (int)V);
		tb_nmse(c, bm, TOL_F32_EW);
		tb_nmse(c, bs, TOL_F32_RED);
		tb_nmse(c, bt, TOL_F32_EW);
		ta_bufs(c, "row_max", bm, "row_sum", bs, "target", bt, "logits", bl, "labels", bla, NULL);
		run_chunk(x, c, rows, chunk, v0);
	}
}

static void drv_ce_finish(struct kctx *x)
{
	NEED(V, "V");
	const struct {
		int rows, noloss;
	} cs[] = {{0, 0}, {1, 0}, {37, 0}, {256, 0}, {1000, 0}, {2500, 0}, {256, 1}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s", rows, cs[ci].noloss ? " loss=NULL" : "");
		int bm = tb_add(c, "row_max", DT_F32, (size_t)rows, R_IN);
		int bs = tb_add(c, "row_sum", DT_F32, (size_t)rows, R_IN);
		int bt = tb_add(c, "target", DT_F32, (size_t)rows, R_IN);
		for (int r = 0; r < rows; r++) {
			tb_f32(c, bm)[r] = (float)(2 + rnd_normal());
			tb_f32(c, bs)[r] = (float)(1 + 100 * rnd_unif());
			tb_f32(c, bt)[r] = tb_f32(c, bm)[r] - (float)fabs(3 * rnd_normal());
		}
		int bla = tb_add(c, "labels", DT_I32, (size_t)rows, R_IN);
		ce_labels(c, bla, rows, (int)V);
		int bloss = cs[ci].noloss ? -1 : tb_add(c, "loss", DT_F32, (size_t)rows, R_OUT);
		int blse = tb_out(c, "lse", DT_F32, (size_t)rows, TOL_F32_EW);
		int btot = tb_out(c, "totals", DT_F32, 3, TOL_F32_RED);
		if (bloss >= 0)
			tb_nmse(c, bloss, TOL_F32_EW);
		ta_bufs(c, "loss", bloss, "lse", blse, "totals", btot, "row_max", bm, "row_sum", bs, "target", bt,
			"labels", bla, NULL);
		tc_run_n(x, c, "rows", rows, 1, 1, 1024);
	}
}

static void drv_ce_chunk_bwd(struct kctx *x)
{
	NEED(V, "V");
	const int full = imin((int)V, 2048);
	const struct {
		int rows, v0, chunk, zero, unaligned;
		float dloss;
	} cs[] = {{0, 0, full, 0, 0, 1.0f},    {1, 0, full, 0, 0, 1.0f},  {37, 0, full, 0, 0, 1.0f},
		  {256, 0, full, 0, 0, 1.0f},  {1000, 0, full, 0, 0, 0.25f}, {37, 200, 309, 0, 0, 0.5f},
		  {256, 0, full, 1, 0, 1.0f},  {37, 0, full, 0, 1, 1.0f}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, v0 = cs[ci].v0, chunk = imin(cs[ci].chunk, (int)V - v0);
		if (chunk <= 0 || over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d v0=%d chunk=%d%s%s", rows, v0, chunk, cs[ci].zero ? " totals[1]=0" : "",
					 cs[ci].unaligned ? " unaligned" : "");
		int bl = tb_add(c, "logits", DT_F32, (size_t)rows * chunk, R_IN);
		int blse = tb_add(c, "lse", DT_F32, (size_t)rows, R_IN);
		for (int r = 0; r < rows; r++) {
			double m = -INFINITY, s = 0;
			float *row = tb_f32(c, bl) + (size_t)r * chunk;
			for (int j = 0; j < chunk; j++) {
				row[j] = (float)(3 * rnd_normal());
				m = row[j] > m ? row[j] : m;
			}
			for (int j = 0; j < chunk; j++)
				s += exp(row[j] - m);
			/* the chunk's logsumexp plus the rest of the vocabulary's share */
			tb_f32(c, blse)[r] = (float)(m + log(s) + log(1 + 2 * rnd_unif()));
		}
		if (cs[ci].unaligned)
			c->b[bl].off = 4;
		int bla = tb_add(c, "labels", DT_I32, (size_t)rows, R_IN);
		ce_labels(c, bla, rows, (int)V);
		int counted = 0;
		for (int r = 0; r < rows; r++)
			counted += tb_i32(c, bla)[r] >= 0 && tb_i32(c, bla)[r] < V;
		int btot = tb_add(c, "totals", DT_F32, 3, R_IN);
		tb_f32(c, btot)[0] = 2.0f * (float)counted;
		tb_f32(c, btot)[1] = cs[ci].zero ? 0.0f : (float)counted;
		tb_f32(c, btot)[2] = 2.0f;
		/* out of place (the bf16 step's way); the fp32 step passes logits itself */
		int bd = tb_out(c, "dlogits", x->adt, (size_t)rows * chunk, act_tol(x, TOL_F32_EW));
		if (cs[ci].unaligned)
			c->b[bd].off = x->bf ? 2 : 4;
		ta_bufs(c, "logits", bl, "dlogits", bd, "lse", blse, "labels", bla, "totals", btot, NULL);
		ta_float(c, "dloss", cs[ci].dloss);
		run_chunk(x, c, rows, chunk, v0);
	}
}

const struct driver kvt_ce_drivers[] = {
	{"ce_chunk_fwd",
	 "float *row_max, float *row_sum, float *target, const float *logits, const int *labels, int rows, int chunk, int v0",
	 drv_ce_chunk_fwd, NOACT(ce_chunk_fwd)},
	{"ce_finish",
	 "float *loss, float *lse, float *totals, const float *row_max, const float *row_sum, const float *target, "
	 "const int *labels, int rows",
	 drv_ce_finish, NOACT(ce_finish)},
	{"ce_chunk_bwd",
	 "const float *logits, act_t *dlogits, const float *lse, const int *labels, const float *totals, float dloss, "
	 "int rows, int chunk, int v0",
	 drv_ce_chunk_bwd, ACT(ce_chunk_bwd)},
	{NULL},
};

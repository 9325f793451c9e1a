/* kvt_gemm.c - drivers of the six grouped expert GEMMs (moe_gemm.cuh). */
#include "kvt.h"

#define INV_MOE_GATE_UP_FWD(T)                                                                                          \
	static void inv_moe_gate_up_fwd_##T(void *f, void **a)                                                            \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, T *, T *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AI(5));             \
	}
INV_BOTH(INV_MOE_GATE_UP_FWD)
#define INV_MOE_DOWN_FWD(T) \
	static void inv_moe_down_fwd_##T(void *f, void **a) { FN((const T *, const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AP(3), AI(4)); }
INV_BOTH(INV_MOE_DOWN_FWD)
#define INV_MOE_DOWN_BWD_DATA(T)                                                                                        \
	static void inv_moe_down_bwd_data_##T(void *f, void **a)                                                          \
	{                                                                                                                 \
		FN((const T *, const T *, const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AI(5));       \
	}
INV_BOTH(INV_MOE_DOWN_BWD_DATA)
#define INV_MOE_GATE_UP_BWD_DATA(T)                                                                                     \
	static void inv_moe_gate_up_bwd_data_##T(void *f, void **a)                                                       \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AP(3), AI(4));                         \
	}
INV_BOTH(INV_MOE_GATE_UP_BWD_DATA)
#define INV_MOE_BWD_WEIGHT(T)                                                                                           \
	static void inv_moe_bwd_weight_##T(void *f, void **a)                                                             \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, float *, int, int))(AP(0), AP(1), AP(2), AP(3), AI(4), AI(5));         \
	}
INV_BOTH(INV_MOE_BWD_WEIGHT)
#define INV_SWIGLU_FWD(T) \
	static void inv_swiglu_fwd_##T(void *f, void **a) { FN((const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AI(3)); }
INV_BOTH(INV_SWIGLU_FWD)

/* Rows of each of E experts for a grouped GEMM over `*rows` permuted rows; returns
 * offsets[E] (rows used; rows past it belong to no expert). GP_RANDOM: skewed sizes, every
 * expert e % 4 == 1 empty (E > 1); GP_ONE: all rows to the last expert; GP_TAIL: GP_RANDOM
 * over 3/4 of the rows; GP_TILES: sizes at tile edges (TILE_M - 1, TILE_M, TILE_M + 1, 2 TILE_M,
 * 0, 1, ...) for the first `tiles` experts (tiles_experts), the others empty, *rows set to their
 * sum + 7. */
enum { GP_RANDOM, GP_ONE, GP_TAIL, GP_TILES };

static int tile_size(int e, int tile_m)
{
	const int sz[] = {tile_m, tile_m + 1, 0, tile_m - 1, 1, 2 * tile_m, 3, 0};
	return sz[e % 8];
}

/* GP_TILES: how many experts get the tile-edge sizes: all E; with --max-rows, the whole rounds
 * of 8 sizes that fit in it (0: not even one) */
static int tiles_experts(int E, int tile_m)
{
	if (!g_max_rows)
		return E;
	int ne = 0;
	long sum = 7;
	for (int e = 0; e < E; e += 8) {
		long r = 0;
		for (int k = e; k < e + 8 && k < E; k++)
			r += tile_size(k, tile_m);
		if (sum + r > g_max_rows)
			break;
		sum += r;
		ne = imin(e + 8, E);
	}
	return ne;
}

static int gemm_offsets(int *off, int E, int *rows, int pat, int tile_m, int tiles)
{
	off[0] = 0;
	if (pat == GP_TILES) {
		for (int e = 0; e < E; e++)
			off[e + 1] = off[e] + (e < tiles ? tile_size(e, tile_m) : 0);
		*rows = off[E] + 7;
		return off[E];
	}
	const int used = pat == GP_TAIL ? *rows * 3 / 4 : *rows;
	if (pat == GP_ONE || E == 1) {
		for (int e = 0; e < E; e++)
			off[e + 1] = e == E - 1 ? used : 0;
		return used;
	}
	double *w = xcalloc((size_t)E, sizeof(double)), W = 0;
	for (int e = 0; e < E; e++) {
		const double u = rnd_unif();
		w[e] = e % 4 == 1 ? 0 : u * u + 0.05;
		W += w[e];
	}
	int left = used;
	for (int e = 0; e < E; e++) {
		const int n = (int)(used * w[e] / W);
		off[e + 1] = off[e] + (n < left ? n : left);
		left -= off[e + 1] - off[e];
	}
	/* the remainder to a random non-empty expert: shift the later offsets */
	int e0;
	do
		e0 = rnd_int(E);
	while (w[e0] == 0);
	for (int e = e0 + 1; e <= E; e++)
		off[e] += left;
	free(w);
	return used;
}
/* ---- the six grouped expert GEMMs ---- */
enum { G_GATE_UP_FWD, G_DOWN_FWD, G_DOWN_BWD_DATA, G_GATE_UP_BWD_DATA, G_DOWN_BWD_WEIGHT, G_GATE_UP_BWD_WEIGHT };

/* overwrite: the weight gradients' accumulate = 0 (the others skip these cases), on the
 * layouts with empty experts, whose slices must then be written as zeros */
static const struct {
	int rows, pat, gu_null, overwrite;
} gemm_cases[] = {{1, GP_RANDOM, 0, 0},    {37, GP_RANDOM, 0, 0}, {256, GP_RANDOM, 0, 0}, {1000, GP_RANDOM, 0, 0},
		  {37, GP_ONE, 0, 0},      {1000, GP_ONE, 0, 0},  {300, GP_TAIL, 0, 0},    {0, GP_TILES, 0, 0},
		  {256, GP_RANDOM, 1, 0},  {1, GP_RANDOM, 0, 1},  {1000, GP_RANDOM, 0, 1}, {37, GP_ONE, 0, 1},
		  {300, GP_TAIL, 0, 1},    {0, GP_TILES, 0, 1}};
static const char *const gemm_what[] = {"random", "one-expert", "tail", "tile-edges"};

static long gemm_tile(const struct kinst *k, const char *name, int bf)
{
	long v;
	if (!kconst_int(k, name, &v))
		return v;
	if (!strcmp(name, "TILE_M"))
		return bf ? 128 : 64;
	if (!strcmp(name, "TILE_N"))
		return bf ? 256 : 64;
	if (!strcmp(name, "TILE_K"))
		return bf ? 64 : 16;
	if (!strcmp(name, "PERSIST"))
		return 0;
	return 3; /* STAGES */
}

/* the tile sizes of an instance, which its launch geometry depends on; PS: PERSIST (0, or the
 * grid's cap: moe_gemm.cuh) */
struct gemm_dims {
	long E, H, I, TM, TN, TK, ST, PS;
};

/* One case of a GEMM over `rows` rows and the expert offsets in buffer bo: its buffers, in the
 * kernel's argument order, the geometry, and the run (or, --time, the timing) */
/* acc: the weight gradients' accumulate argument (1 adds into dw, 0 overwrites it) */
static void gemm_run(struct kctx *x, struct tcase *c, int which, const struct gemm_dims *g, int bo, int rows, int gu_null,
		     int acc)
{
	const long E = g->E, H = g->H, I = g->I, TM = g->TM, TN = g->TN;
	const size_t R = (size_t)rows;
	const int A = x->adt;
	long grid = 0;
	/* the FLOPs of the GEMM: 2 x rows x its two other dimensions (the rows past offsets[E]
	 * included: --time's routings use every row) */
	c->flops = 2.0 * rows * H * I * (which == G_GATE_UP_FWD || which == G_GATE_UP_BWD_DATA || which == G_GATE_UP_BWD_WEIGHT ? 2 : 1);
	if (which == G_GATE_UP_FWD) {
		int bx = tb_add(c, "x", A, R * H, R_IN);
		int bw = tb_add(c, "w_gate_up", A, (size_t)E * 2 * I * H, R_IN);
		tb_normal(c, bx, 0, 1);
		tb_weights(c, bw, 0, 1 / sqrt((double)H));
		int bh = tb_out(c, "h", A, R * I, act_tol(x, TOL_F32_RED));
		int bgu = gu_null ? -1 : tb_add(c, "gu", A, R * 2 * I, R_OUT);
		if (bgu >= 0)
			tb_nmse(c, bgu, act_tol(x, TOL_F32_RED));
		ta_bufs(c, "x", bx, "w_gate_up", bw, "offsets", bo, "h", bh, "gu", bgu, NULL);
		grid = (ceil_div(rows, TM) + E) * ceil_div(I, TN / 2);
	} else if (which == G_DOWN_FWD) {
		int bh = tb_add(c, "h", A, R * I, R_IN);
		int bw = tb_add(c, "w_down", A, (size_t)E * H * I, R_IN);
		tb_normal(c, bh, 0, 1);
		tb_weights(c, bw, 0, 1 / sqrt((double)I));
		int by = tb_out(c, "y", A, R * H, act_tol(x, TOL_F32_RED));
		ta_bufs(c, "h", bh, "w_down", bw, "offsets", bo, "y", by, NULL);
		grid = (ceil_div(rows, TM) + E) * ceil_div(H, TN);
	} else if (which == G_DOWN_BWD_DATA) {
		int bdy = tb_add(c, "dy", A, R * H, R_IN);
		int bw = tb_add(c, "w_down", A, (size_t)E * H * I, R_IN);
		int bgu = tb_add(c, "gu", A, R * 2 * I, R_IN);
		tb_normal(c, bdy, 0, 1);
		tb_weights(c, bw, 0, 1 / sqrt((double)H));
		tb_normal(c, bgu, 0, 1.5);
		int bdg = tb_out(c, "dgu", A, R * 2 * I, act_tol(x, TOL_F32_RED));
		ta_bufs(c, "dy", bdy, "w_down", bw, "gu", bgu, "offsets", bo, "dgu", bdg, NULL);
		grid = (ceil_div(rows, TM) + E) * ceil_div(I, TN);
	} else if (which == G_GATE_UP_BWD_DATA) {
		int bdg = tb_add(c, "dgu", A, R * 2 * I, R_IN);
		int bw = tb_add(c, "w_gate_up", A, (size_t)E * 2 * I * H, R_IN);
		tb_normal(c, bdg, 0, 1);
		tb_weights(c, bw, 0, 1 / sqrt(2.0 * I));
		int bdx = tb_out(c, "dx", A, R * H, act_tol(x, TOL_F32_RED));
		ta_bufs(c, "dgu", bdg, "w_gate_up", bw, "offsets", bo, "dx", bdx, NULL);
		grid = (ceil_div(rows, TM) + E) * ceil_div(H, TN);
	} else {
		const int down = which == G_DOWN_BWD_WEIGHT;
		/* dw[e] += a_e^T b_e, fp32 (empty experts untouched), or = (overwrite: empty experts
		 * write zeros); overwriting starts from NaN (tb_out), so an element the kernel leaves
		 * unwritten fails */
		int ba = tb_add(c, down ? "dy" : "dgu", A, R * (down ? H : 2 * I), R_IN);
		int bb = tb_add(c, down ? "h" : "x", A, R * (down ? I : H), R_IN);
		tb_normal(c, ba, 0, 1);
		tb_normal(c, bb, 0, 1);
		const char *dw_name = down ? "dw_down" : "dw_gate_up";
		const size_t ndw = (size_t)E * H * 2 * I / (down ? 2 : 1);
		int bdw;
		if (acc) {
			bdw = tb_add(c, dw_name, DT_F32, ndw, R_INOUT);
			tb_weights(c, bdw, 0, 0.5);
			tb_nmse(c, bdw, TOL_F32_RED);
		} else {
			bdw = tb_out(c, dw_name, DT_F32, ndw, TOL_F32_RED);
		}
		ta_bufs(c, down ? "dy" : "dgu", ba, down ? "h" : "x", bb, "offsets", bo, dw_name, bdw, NULL);
		grid = down ? E * ceil_div(H, TM) * ceil_div(I, TN) : E * ceil_div(2 * I, TM) * ceil_div(H, TN);
	}
	ta_int(c, "rows", rows);
	if (which == G_DOWN_BWD_WEIGHT || which == G_GATE_UP_BWD_WEIGHT)
		ta_int(c, "accumulate", acc);
	tv(c, "rows", rows);
	if (g->PS > 0 && grid > g->PS)
		grid = g->PS;
	tg(c, grid, 1, TM * TN / (x->bf ? 128 : 16));
	c->smem = (unsigned)(x->bf ? g->ST * (TM + TN) * g->TK * 2 : g->TK * (TM + TN + 8) * 4);
	run_case(x, c);
}

/* --time's routing: rows per expert as offsets; returns the most rows of an expert */
static int time_offsets(int *off, int E, int K, int T, int skewed)
{
	int *pick = xcalloc((size_t)T * K, sizeof *pick), most = 0;
	time_route(E, K, T, skewed, pick);
	for (int e = 0; e <= E; e++)
		off[e] = 0;
	for (size_t p = 0; p < (size_t)T * K; p++)
		off[pick[p] + 1]++;
	for (int e = 0; e < E; e++) {
		most = imax(most, off[e + 1]);
		off[e + 1] += off[e];
	}
	free(pick);
	return most;
}

static void gemm_time(struct kctx *x, int which, const struct gemm_dims *g)
{
	for (int i = 0; i < TIME_CASES; i++) {
		int T, skewed;
		struct tcase *c = tc_time(x, i, &T, &skewed);
		if (!c)
			continue;
		int bo = tb_add(c, "offsets", DT_I32, (size_t)g->E + 1, R_IN);
		const int K = imin(g_topk, (int)g->E);
		const int most = time_offsets(tb_i32(c, bo), (int)g->E, K, T, skewed);
		const int rows = T * K;
		snprintf(c->note, sizeof c->note, "rows %d, max/mean %.2f", rows, most * (double)g->E / rows);
		gemm_run(x, c, which, g, bo, rows, 0, 0); /* weight gradients: a step's first write */
	}
}

static void drv_gemm(struct kctx *x, int which)
{
	NEED(E, "E_LOCAL");
	NEED(H, "H");
	NEED(I, "I");
	const struct gemm_dims g = {E, H, I, gemm_tile(x->k, "TILE_M", x->bf), gemm_tile(x->k, "TILE_N", x->bf),
				    gemm_tile(x->k, "TILE_K", x->bf), gemm_tile(x->k, "STAGES", x->bf),
				    gemm_tile(x->k, "PERSIST", x->bf)};
	if (g_time) {
		gemm_time(x, which, &g);
		return;
	}
	const int weight = which == G_DOWN_BWD_WEIGHT || which == G_GATE_UP_BWD_WEIGHT;
	for (size_t ci = 0; ci < sizeof gemm_cases / sizeof gemm_cases[0]; ci++) {
		if ((gemm_cases[ci].gu_null && which != G_GATE_UP_FWD) || (gemm_cases[ci].overwrite && !weight))
			continue;
		const int acc = !gemm_cases[ci].overwrite;
		/* --max-rows: the tile-edge sizes for the first experts only (whole rounds of 8) */
		const int tiles = gemm_cases[ci].pat == GP_TILES ? tiles_experts((int)E, (int)g.TM) : 0;
		if (gemm_cases[ci].pat == GP_TILES && !tiles) {
			int r = 7;
			for (int e = 0; e < E && e < 8; e++)
				r += tile_size(e, (int)g.TM);
			over_max_rows(x, "rows", r);
			continue;
		}
		if (over_max_rows(x, "rows", gemm_cases[ci].rows))
			continue;
		struct tcase *c = tc_new(x, "-");
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_IN);
		int rows = gemm_cases[ci].rows, empty = 0;
		const int used = gemm_offsets(tb_i32(c, bo), (int)E, &rows, gemm_cases[ci].pat, (int)g.TM, tiles);
		for (int e = 0; e < E; e++)
			empty += tb_i32(c, bo)[e + 1] == tb_i32(c, bo)[e];
		snprintf(c->shape, sizeof c->shape, "rows=%d %s empty=%d%s%s%s", rows, gemm_what[gemm_cases[ci].pat], empty,
			 used < rows ? " used<rows" : "", gemm_cases[ci].gu_null ? " gu=NULL" : "", weight ? acc ? " dw+=" : " dw=" : "");
		if (tiles && tiles < E)
			moert_adderr(c->shape, sizeof c->shape, " (sizes for %d experts: --max-rows)", tiles);
		gemm_run(x, c, which, &g, bo, rows, gemm_cases[ci].gu_null, acc);
	}
}

static void drv_moe_gate_up_fwd(struct kctx *x) { drv_gemm(x, G_GATE_UP_FWD); }
static void drv_moe_down_fwd(struct kctx *x) { drv_gemm(x, G_DOWN_FWD); }
static void drv_moe_down_bwd_data(struct kctx *x) { drv_gemm(x, G_DOWN_BWD_DATA); }
static void drv_moe_gate_up_bwd_data(struct kctx *x) { drv_gemm(x, G_GATE_UP_BWD_DATA); }
static void drv_moe_down_bwd_weight(struct kctx *x) { drv_gemm(x, G_DOWN_BWD_WEIGHT); }
static void drv_moe_gate_up_bwd_weight(struct kctx *x) { drv_gemm(x, G_GATE_UP_BWD_WEIGHT); }

/* swiglu_fwd (selective recompute's h from the saved gate|up): the GEMMs' expert layouts
 * (ragged and empty experts, rows past offsets[E] left alone), gu spread like real
 * pre-activations. The twin uses expf, the kernel __expf: element-wise tolerance, not bits.
 * (That h equals moe_gate_up_fwd's own h bit for bit on the GPU is what the recompute
 * tests check, through the whole step.) */
static void drv_swiglu_fwd(struct kctx *x)
{
	NEED(E, "E_LOCAL");
	NEED(I, "I");
	static const struct {
		int rows, pat;
	} cases[] = {{1, GP_RANDOM}, {1000, GP_RANDOM}, {37, GP_ONE}, {300, GP_TAIL}, {4096, GP_RANDOM}};
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		if (over_max_rows(x, "rows", cases[ci].rows))
			continue;
		int rows = cases[ci].rows;
		struct tcase *c = tc_new(x, "rows=%d %s", rows, gemm_what[cases[ci].pat]);
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_IN);
		gemm_offsets(tb_i32(c, bo), (int)E, &rows, cases[ci].pat, 1, 0);
		int bgu = tb_in(c, "gu", x->adt, (size_t)rows * 2 * I, 0, 2);
		int bh = tb_out(c, "h", x->adt, (size_t)rows * I, act_tol(x, TOL_F32_EW));
		ta_bufs(c, "gu", bgu, "offsets", bo, "h", bh, NULL);
		long blocks = ceil_div((long)rows * I, 2048);
		tc_run_n(x, c, "rows", rows, blocks < 1 ? 1 : blocks > 8192 ? 8192 : blocks, 1, 256);
	}
}

const struct driver kvt_gemm_drivers[] = {
	{"moe_gate_up_fwd", "const act_t *x, const act_t *w_gate_up, const int *offsets, act_t *h, act_t *gu, int rows",
	 drv_moe_gate_up_fwd, ACT(moe_gate_up_fwd), 1},
	{"moe_down_fwd", "const act_t *h, const act_t *w_down, const int *offsets, act_t *y, int rows", drv_moe_down_fwd,
	 ACT(moe_down_fwd), 1},
	{"moe_down_bwd_data", "const act_t *dy, const act_t *w_down, const act_t *gu, const int *offsets, act_t *dgu, int rows",
	 drv_moe_down_bwd_data, ACT(moe_down_bwd_data), 1},
	{"moe_gate_up_bwd_data", "const act_t *dgu, const act_t *w_gate_up, const int *offsets, act_t *dx, int rows",
	 drv_moe_gate_up_bwd_data, ACT(moe_gate_up_bwd_data), 1},
	{"moe_down_bwd_weight", "const act_t *dy, const act_t *h, const int *offsets, float *dw_down, int rows, int accumulate",
	 drv_moe_down_bwd_weight, ACT(moe_bwd_weight), 1},
	{"moe_gate_up_bwd_weight", "const act_t *dgu, const act_t *x, const int *offsets, float *dw_gate_up, int rows, int accumulate",
	 drv_moe_gate_up_bwd_weight, ACT(moe_bwd_weight), 1},
	{"swiglu_fwd", "const act_t *gu, const int *offsets, act_t *h, int rows", drv_swiglu_fwd, ACT(swiglu_fwd)},
	{NULL},
};

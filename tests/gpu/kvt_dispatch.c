/* kvt_dispatch.c - drivers of the MoE dispatch pipeline: moe_count, moe_scan, moe_route,
 * moe_capacity (on host-made routings, consistent across the steps), and moe_permute,
 * moe_combine and their backward (these four also have --time cases). */
#include "kvt.h"

static void inv_moe_count(void *f, void **a) { FN((const int *, int *, int))(AP(0), AP(1), AI(2)); }
static void inv_moe_scan(void *f, void **a) { FN((int *, int *, int *, int *, int))(AP(0), AP(1), AP(2), AP(3), AI(4)); }
static void inv_moe_route(void *f, void **a)
{
	FN((const int *, const int *, const int *, const int *, int *, int *, int *, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7));
}
static void inv_moe_capacity(void *f, void **a)
{
	FN((const float *, const int *, const int *, const int *, int *, int *))(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5));
}
#define INV_MOE_PERMUTE(T) \
	static void inv_moe_permute_##T(void *f, void **a) { FN((const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AI(3)); }
INV_BOTH(INV_MOE_PERMUTE)
#define INV_EP_REGROUP(T) \
	static void inv_ep_regroup_##T(void *f, void **a) { FN((const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AI(3)); }
INV_BOTH(INV_EP_REGROUP)
#define INV_MOE_COMBINE(T)                                                                                              \
	static void inv_moe_combine_##T(void *f, void **a)                                                                \
	{                                                                                                                 \
		FN((const T *, const int *, const float *, T *, int))(AP(0), AP(1), AP(2), AP(3), AI(4));                     \
	}
INV_BOTH(INV_MOE_COMBINE)
#define INV_MOE_COMBINE_BWD(T)                                                                                          \
	static void inv_moe_combine_bwd_##T(void *f, void **a)                                                            \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, const float *, T *, float *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AI(6)); \
	}
INV_BOTH(INV_MOE_COMBINE_BWD)
#define INV_MOE_PERMUTE_BWD(T) \
	static void inv_moe_permute_bwd_##T(void *f, void **a) { FN((const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AI(3)); }
INV_BOTH(INV_MOE_PERMUTE_BWD)

static uint32_t order_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* A routing of T tokens to K of E experts and what the dispatch pipeline derives from it, on
 * the host (moe_count.cu's rules): the inputs of the routing kernels, consistent with each
 * other. Patterns: RT_RANDOM skews the load (u^2), never picks experts e % 5 == 3 (when E
 * leaves room: experts with no tokens), masks every 7th token (all K ids -1) and gives every
 * 11th token an out-of-range id (>= E) in its last slot; RT_ONE routes every token to expert
 * E/2 (the maximum load, T pairs) plus K-1 others; RT_TIED is RT_RANDOM with weights from
 * {1,2,3,4}/8 (ties for low_prob). cap/policy: moe_scan/moe_route/moe_capacity's capacity. */
enum { RT_RANDOM, RT_ONE, RT_TIED };

struct route {
	int E, K, T, P, nblk, R, ndrop;
	int *ids, *counts, *offsets, *dest, *row_src, *hist, *blk_base, *scratch;
	float *w;
};

struct keyed {
	uint64_t key;
	int p;
};

static int keyed_desc(const void *a, const void *b)
{
	const uint64_t x = ((const struct keyed *)a)->key, y = ((const struct keyed *)b)->key;
	return x < y ? 1 : x > y ? -1 : 0;
}

static void route_free(struct route *r)
{
	free(r->ids);
	free(r->w);
	free(r->counts);
	free(r->offsets);
	free(r->dest);
	free(r->row_src);
	free(r->hist);
	free(r->blk_base);
	free(r->scratch);
}

static void route_make(struct route *r, int E, int K, int T, int pat, int cap, int policy)
{
	memset(r, 0, sizeof *r);
	r->E = E, r->K = K, r->T = T, r->P = T * K, r->nblk = (T + 255) / 256;
	const int P = r->P, estar = E / 2, dead = pat != RT_ONE && E - (E + 1) / 5 >= K + 1;
	r->ids = xcalloc((size_t)P, sizeof(int));
	r->w = xcalloc((size_t)P, sizeof(float));
	for (int t = 0; t < T; t++) {
		int *id = r->ids + (size_t)t * K;
		for (int k = 0; k < K; k++) {
			int e;
			for (;;) {
				double u = rnd_unif();
				e = pat == RT_ONE && k == 0 ? estar : (int)(u * u * E);
				if (e >= E)
					e = E - 1;
				if (dead && e % 5 == 3)
					continue;
				if (pat == RT_ONE && k > 0 && e == estar)
					continue;
				int dup = 0;
				for (int j = 0; j < k; j++)
					dup |= id[j] == e;
				if (!dup)
					break;
			}
			id[k] = e;
			r->w[(size_t)t * K + k] = pat == RT_TIED ? (float)(1 + rnd_int(4)) * 0.125f : (float)(0.05 + rnd_unif());
		}
		if (pat != RT_ONE && t % 7 == 3)
			for (int k = 0; k < K; k++)
				id[k] = -1;
		else if (pat != RT_ONE && t % 11 == 5)
			id[K - 1] = E + t % 3;
	}
	r->counts = xcalloc((size_t)E, sizeof(int));
	r->offsets = xcalloc((size_t)E + 1, sizeof(int));
	r->hist = xcalloc((size_t)r->nblk * E, sizeof(int));
	r->blk_base = xcalloc((size_t)r->nblk * E, sizeof(int));
	r->scratch = xcalloc((size_t)P, sizeof(int));
	r->dest = xmalloc((size_t)P * sizeof(int));
	for (int p = 0; p < P; p++) {
		const int e = r->ids[p];
		r->dest[p] = -1;
		if ((unsigned)e < (unsigned)E) {
			r->counts[e]++;
			r->hist[(size_t)(p / K / 256) * E + e]++;
		}
	}
	for (int e = 0; e < E; e++) {
		int run = 0;
		for (int b = 0; b < r->nblk; b++) {
			r->blk_base[(size_t)b * E + e] = run;
			run += r->hist[(size_t)b * E + e];
		}
		const int kept = cap > 0 && r->counts[e] > cap ? cap : r->counts[e];
		r->offsets[e + 1] = r->offsets[e] + kept;
		r->ndrop += r->counts[e] - kept;
	}
	r->R = r->offsets[E];
	r->row_src = xcalloc((size_t)(r->R ? r->R : 1), sizeof(int));
	/* each expert's pairs in token order: the dropless slots (pair_scratch) */
	int *start = xcalloc((size_t)E + 1, sizeof(int)), *fill = xcalloc((size_t)E, sizeof(int));
	for (int e = 0; e < E; e++)
		start[e + 1] = start[e] + r->counts[e];
	for (int p = 0; p < P; p++) {
		const int e = r->ids[p];
		if ((unsigned)e < (unsigned)E)
			r->scratch[start[e] + fill[e]++] = p;
	}
	/* the kept pairs: late_tokens (and dropless) the first ones, low_prob the highest
	 * (weight, earlier token) keys; kept rows in token order either way */
	unsigned char *keep = xcalloc((size_t)P, 1);
	struct keyed *ks = xcalloc((size_t)P, sizeof *ks);
	for (int e = 0; e < E; e++) {
		const int n = r->counts[e], nk = r->offsets[e + 1] - r->offsets[e];
		const int *seg = r->scratch + start[e];
		if (cap > 0 && policy == 1 && n > nk) {
			for (int i = 0; i < n; i++)
				ks[i] = (struct keyed){((uint64_t)order_bits(r->w[seg[i]]) << 32) | (0xffffffffu - (uint32_t)(seg[i] / K)), seg[i]};
			qsort(ks, (size_t)n, sizeof *ks, keyed_desc);
			for (int i = 0; i < nk; i++)
				keep[ks[i].p] = 1;
		} else {
			for (int i = 0; i < nk; i++)
				keep[seg[i]] = 1;
		}
		for (int i = 0, row = r->offsets[e]; i < n; i++)
			if (keep[seg[i]]) {
				r->dest[seg[i]] = row;
				r->row_src[row++] = seg[i];
			}
	}
	free(keep);
	free(ks);
	free(start);
	free(fill);
}
/* the routing shapes of moe_count / moe_scan / moe_route / moe_capacity: 40000 tokens give
 * moe_scan more token blocks than it has thread groups, and moe_capacity experts with more
 * pairs than its 1024 threads */
static const struct {
	int rows, pat;
} route_cases[] = {{1, RT_RANDOM},    {37, RT_RANDOM}, {256, RT_RANDOM}, {1000, RT_RANDOM}, {40000, RT_RANDOM},
		   {1000, RT_ONE}, {40000, RT_ONE}, {1000, RT_TIED}};
static const char *const route_what[] = {"random", "one-expert", "tied"};
#define NROUTE (sizeof route_cases / sizeof route_cases[0])

/* case ci of the routing shapes; with a capacity, two more: one expert with exactly CAPACITY
 * pairs (nothing dropped) and with CAPACITY + 1 (one dropped) */
static int route_case(size_t ci, long cap, int *rows, int *pat)
{
	if (ci < NROUTE) {
		*rows = route_cases[ci].rows;
		*pat = route_cases[ci].pat;
		return 1;
	}
	if (cap <= 0 || ci >= NROUTE + 2 || cap > 1000000)
		return 0;
	*rows = (int)cap + (int)(ci - NROUTE);
	*pat = RT_ONE;
	return 1;
}

static void route_shape(struct tcase *c, const struct route *r, int cap)
{
	int empty = 0;
	for (int e = 0; e < r->E; e++)
		empty += r->counts[e] == 0;
	moert_adderr(c->shape, sizeof c->shape, " empty=%d", empty);
	if (cap > 0)
		moert_adderr(c->shape, sizeof c->shape, " dropped=%d", r->ndrop);
}

/* The loop of the routing drivers: every routing shape (route_case) with its routing
 * (route_make with the driver's K, capacity and drop policy) in the case's shape; `body` adds
 * the buffers and arguments and runs the case. */
typedef void route_body(struct kctx *x, struct tcase *c, const struct route *r, long E);

static void route_cases_run(struct kctx *x, long E, int K, long cap, int policy, route_body *body)
{
	int T, pat;
	for (size_t ci = 0; route_case(ci, cap, &T, &pat); ci++) {
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[pat]);
		struct route r;
		route_make(&r, (int)E, K, T, pat, (int)cap, policy);
		route_shape(c, &r, (int)cap);
		body(x, c, &r, E);
		route_free(&r);
	}
}

static void moe_count_case(struct kctx *x, struct tcase *c, const struct route *r, long E)
{
	int bid = tb_copy(c, "topk_ids", DT_I32, (size_t)r->P, R_IN, r->ids);
	int bc = tb_out(c, "blk_count", DT_I32, (size_t)r->nblk * E, TOL_EXACT);
	ta_bufs(c, "topk_ids", bid, "blk_count", bc, NULL);
	tc_run_n(x, c, "rows", r->T, ceil_div(r->T, 256), 1, 256);
}

static void drv_moe_count(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	route_cases_run(x, E, (int)K, 0, 0, moe_count_case); /* no capacity: the plain shapes */
}

static void moe_scan_case(struct kctx *x, struct tcase *c, const struct route *r, long E)
{
	int bc = tb_copy(c, "blk_count", DT_I32, (size_t)r->nblk * E, R_INOUT, r->hist);
	int bn = tb_out(c, "counts", DT_I32, (size_t)E, TOL_EXACT);
	int bo = tb_out(c, "offsets", DT_I32, (size_t)E + 1, TOL_EXACT);
	int bd = tb_out(c, "n_dropped", DT_I32, 1, TOL_EXACT);
	tb_exact(c, bc);
	ta_bufs(c, "blk_count", bc, "counts", bn, "offsets", bo, "n_dropped", bd, NULL);
	tc_run_n(x, c, "rows", r->T, 1, 1, 1024);
}

static void drv_moe_scan(struct kctx *x)
{
	NEED(E, "E");
	NEED(CAP, "CAPACITY");
	/* histograms of some routing (moe_scan has no K), late_tokens */
	route_cases_run(x, E, E >= 2 ? 2 : 1, CAP, 2, moe_scan_case);
}

static void moe_route_case(struct kctx *x, struct tcase *c, const struct route *r, long E)
{
	long CAP, POL;
	kconst_int(x->k, "CAPACITY", &CAP); /* drv_moe_route checked both */
	kconst_int(x->k, "DROP_POLICY", &POL);
	int bid = tb_copy(c, "topk_ids", DT_I32, (size_t)r->P, R_IN, r->ids);
	int bb = tb_copy(c, "blk_base", DT_I32, (size_t)r->nblk * E, R_IN, r->blk_base);
	int bn = tb_copy(c, "counts", DT_I32, (size_t)E, R_IN, r->counts);
	int bo = tb_copy(c, "offsets", DT_I32, (size_t)E + 1, R_IN, r->offsets);
	int bd = tb_out(c, "dest", DT_I32, (size_t)r->P, TOL_EXACT);
	int brs = tb_out(c, "row_src", DT_I32, (size_t)r->R, TOL_EXACT);
	/* pair_scratch: low_prob only ("else unused, may be NULL": NULL it is) */
	int bps = CAP > 0 && POL == 1 ? tb_out(c, "pair_scratch", DT_I32, (size_t)r->P, TOL_EXACT) : -1;
	ta_bufs(c, "topk_ids", bid, "blk_base", bb, "counts", bn, "offsets", bo, "dest", bd, "row_src", brs, "pair_scratch",
		bps, NULL);
	tc_run_n(x, c, "rows", r->T, ceil_div(r->T, 256), 1, 256);
}

static void drv_moe_route(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(CAP, "CAPACITY");
	NEED(POL, "DROP_POLICY");
	route_cases_run(x, E, (int)K, CAP, (int)POL, moe_route_case);
}

static void moe_capacity_case(struct kctx *x, struct tcase *c, const struct route *r, long E)
{
	int bw = tb_copy(c, "topk_w", DT_F32, (size_t)r->P, R_IN, r->w);
	int bn = tb_copy(c, "counts", DT_I32, (size_t)E, R_IN, r->counts);
	int bo = tb_copy(c, "offsets", DT_I32, (size_t)E + 1, R_IN, r->offsets);
	int bs = tb_copy(c, "pair_scratch", DT_I32, (size_t)r->P, R_IN, r->scratch);
	/* dest as moe_route leaves it: -1 for invalid ids, the rest for moe_capacity */
	int bd = tb_add(c, "dest", DT_I32, (size_t)r->P, R_INOUT);
	sentinel(&c->b[bd]);
	for (int p = 0; p < r->P; p++)
		if ((unsigned)r->ids[p] >= (unsigned)E)
			tb_i32(c, bd)[p] = -1;
	int brs = tb_out(c, "row_src", DT_I32, (size_t)r->R, TOL_EXACT);
	tb_exact(c, bd);
	ta_bufs(c, "topk_w", bw, "counts", bn, "offsets", bo, "pair_scratch", bs, "dest", bd, "row_src", brs, NULL);
	tg(c, E, 1, 1024);
	run_case(x, c);
}

static void drv_moe_capacity(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(CAP, "CAPACITY");
	route_cases_run(x, E, (int)K, CAP, 1, moe_capacity_case); /* low_prob */
}

/* permute / combine and their backward: any dest works; routings of 8 experts (dropless
 * with masked tokens, the maximum load, and with capacity drops, late_tokens) */
static const struct {
	int rows, pat, drops;
} perm_cases[] = {{1, RT_RANDOM, 0},   {37, RT_RANDOM, 0}, {256, RT_RANDOM, 0}, {1000, RT_RANDOM, 0},
		  {256, RT_ONE, 0}, {1000, RT_RANDOM, 1}};

static struct tcase *perm_case(struct kctx *x, size_t ci, long K, struct route *r)
{
	const int T = perm_cases[ci].rows, Er = (int)(K * 2 > 8 ? K * 2 : 8);
	const int cap = perm_cases[ci].drops ? imax(1, T * (int)K / Er / 2) : 0;
	struct tcase *c = tc_new(x, "rows=%d %s%s", T, route_what[perm_cases[ci].pat], cap ? " drops" : "");
	route_make(r, Er, (int)K, T, perm_cases[ci].pat, cap, 2);
	if (cap)
		moert_adderr(c->shape, sizeof c->shape, "=%d", r->ndrop);
	return c;
}

static int perm_dest(struct tcase *c, const struct route *r)
{
	return tb_copy(c, "dest", DT_I32, (size_t)r->P, R_IN, r->dest);
}

/* The loop of the four drivers below: every perm_cases shape; `body` adds the buffers and
 * the arguments but rows, which they all end with (and launch on: 8 tokens per block). */
typedef void perm_body(struct kctx *x, struct tcase *c, const struct route *r, long H);

/* --time (kvt_core.c): T = 4096 and 32768 tokens routed balanced or skewed over the build's
 * experts, dropless: dest in token order within each expert, as moe_route leaves it */
static void perm_time_run(struct kctx *x, perm_body *body, int K, long H)
{
	const int E = g_experts;
	K = imin(K, E);
	for (int i = 0; i < TIME_CASES; i++) {
		int T, skewed;
		struct tcase *c = tc_time(x, i, &T, &skewed);
		if (!c)
			continue;
		struct route r;
		memset(&r, 0, sizeof r);
		r.E = E, r.K = K, r.T = T, r.P = r.R = T * K;
		r.ids = xcalloc((size_t)r.P, sizeof(int));
		r.w = xcalloc((size_t)r.P, sizeof(float));
		r.counts = xcalloc((size_t)E, sizeof(int));
		r.offsets = xcalloc((size_t)E + 1, sizeof(int));
		r.dest = xcalloc((size_t)r.P, sizeof(int));
		time_route(E, K, T, skewed, r.ids);
		for (int p = 0; p < r.P; p++) {
			r.counts[r.ids[p]]++;
			r.w[p] = 1.0f / (float)K;
		}
		int *fill = xcalloc((size_t)E, sizeof *fill);
		for (int e = 0; e < E; e++)
			r.offsets[e + 1] = r.offsets[e] + r.counts[e];
		for (int p = 0; p < r.P; p++)
			r.dest[p] = r.offsets[r.ids[p]] + fill[r.ids[p]]++;
		free(fill);
		snprintf(c->note, sizeof c->note, "rows %d", r.P);
		body(x, c, &r, H);
		tc_run_n(x, c, "rows", T, ceil_div(T, 8), 1, 256);
		route_free(&r);
	}
}

static void perm_cases_run(struct kctx *x, perm_body *body)
{
	NEED(K, "K");
	NEED(H, "H");
	if (g_time) {
		perm_time_run(x, body, (int)K, H);
		return;
	}
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		body(x, c, &r, H);
		tc_run_n(x, c, "rows", r.T, ceil_div(r.T, 8), 1, 256);
		route_free(&r);
	}
}

static void moe_permute_case(struct kctx *x, struct tcase *c, const struct route *r, long H)
{
	int bx = tb_in(c, "x", x->adt, (size_t)r->T * H, 0, 1);
	int bd = perm_dest(c, r);
	int bp = tb_out(c, "x_perm", x->adt, (size_t)r->R * H, TOL_EXACT); /* a row copy */
	ta_bufs(c, "x", bx, "dest", bd, "x_perm", bp, NULL);
}

static void moe_combine_case(struct kctx *x, struct tcase *c, const struct route *r, long H)
{
	int byp = tb_in(c, "y_perm", x->adt, (size_t)r->R * H, 0, 1);
	int bd = perm_dest(c, r);
	int bw = tb_copy(c, "topk_w", DT_F32, (size_t)r->P, R_IN, r->w);
	/* k-order sums; the GPU may fuse w * y + acc */
	int by = tb_out(c, "y", x->adt, (size_t)r->T * H, act_tol(x, TOL_F32_RED));
	ta_bufs(c, "y_perm", byp, "dest", bd, "topk_w", bw, "y", by, NULL);
}

static void moe_combine_bwd_case(struct kctx *x, struct tcase *c, const struct route *r, long H)
{
	int bdy = tb_in(c, "dy", x->adt, (size_t)r->T * H, 0, 1);
	int byp = tb_in(c, "y_perm", x->adt, (size_t)r->R * H, 0, 1);
	int bd = perm_dest(c, r);
	int bw = tb_copy(c, "topk_w", DT_F32, (size_t)r->P, R_IN, r->w);
	int bdyp = tb_out(c, "dy_perm", x->adt, (size_t)r->R * H, act_tol(x, TOL_F32_EW)); /* one product each */
	int bdw = tb_out(c, "dtopk_w", DT_F32, (size_t)r->P, TOL_F32_RED);                /* dot products */
	ta_bufs(c, "dy", bdy, "y_perm", byp, "dest", bd, "topk_w", bw, "dy_perm", bdyp, "dtopk_w", bdw, NULL);
}

static void moe_permute_bwd_case(struct kctx *x, struct tcase *c, const struct route *r, long H)
{
	int bxp = tb_in(c, "dx_perm", x->adt, (size_t)r->R * H, 0, 1);
	int bd = perm_dest(c, r);
	int bdx = tb_out(c, "dx", x->adt, (size_t)r->T * H, act_tol(x, TOL_F32_RED));
	ta_bufs(c, "dx_perm", bxp, "dest", bd, "dx", bdx, NULL);
}

/* ep_regroup: the received rows of one rank between arrival and expert-major order, both
 * directions, with tables laid out as runtime/ep.c's (ep.h; built here, since this program
 * links no MPI, which ep.c's route pulls in) from counts per (source rank, local expert) of
 * E = ep x E_LOCAL blocks. ep = 2, 4 and 8 where E allows (the instance fixes only E); a third
 * of the blocks empty, or every row in one block. */
static const struct {
	int ep, rows, one; /* one: every row in one block, the rest empty */
} ep_cases[] = {{2, 37, 0}, {2, 1000, 0}, {4, 300, 1}, {4, 4096, 0}, {8, 1000, 0}, {8, 1, 1}};

static void ep_route_counts(int *from, int nb, int rows, int one)
{
	for (int b = 0; b < nb; b++)
		from[b] = 0;
	if (one) {
		from[rnd_int(nb)] = rows;
		return;
	}
	int live = 0, last = 0, left = rows;
	for (int b = 0; b < nb; b++) /* a third of the blocks get no rows */
		if ((from[b] = rnd_int(3) != 0))
			live++, last = b;
	for (int b = 0; b < last; b++) /* the live blocks' rows, about rows / live each; the last the rest */
		if (from[b]) {
			int n = rnd_int(2 * rows / (live ? live : 1) + 1);
			from[b] = n < left ? n : left;
			left -= from[b];
		}
	from[last] = left;
}

/* One direction's table (kernels/ep_regroup.cu): the blocks in destination order, their
 * first destination rows (then the total), then their first source rows. Dispatch
 * (to_em): arrival order [s][j] -> expert-major [j][s]; combine the reverse. */
static void ep_table(const int *from, int ep, int el, int to_em, int *table)
{
	const int nb = ep * el;
	for (int s = 0; s < ep; s++)
		for (int j = 0; j < el; j++) {
			int arr = 0, em = 0; /* block (s, j)'s first row in either order */
			for (int b = 0; b < s * el + j; b++)
				arr += from[b];
			for (int jj = 0; jj < el; jj++)
				for (int ss = 0; ss < ep; ss++)
					em += (jj < j || (jj == j && ss < s)) ? from[ss * el + jj] : 0;
			const int at = to_em ? j * ep + s : s * el + j;
			table[at] = to_em ? em : arr;
			table[nb + 1 + at] = to_em ? arr : em;
		}
	table[nb] = 0;
	for (int b = 0; b < nb; b++)
		table[nb] += from[b];
	/* the twin on both sides would agree on a table that drops or repeats rows: check it is a
	 * permutation, destination runs ascending and every source row used once */
	const int rows = table[nb];
	char *seen = xcalloc((size_t)rows + 1, 1);
	for (int b = 0; b < nb; b++) {
		const int n = table[b + 1] - table[b];
		for (int i = (n < 0 || table[0]) ? -1 : 0; i < n; i++)
			if (i < 0 || table[nb + 1 + b] + i >= rows || seen[table[nb + 1 + b] + i]++) {
				fprintf(stderr, "kernel_vs_twin: ep_table is not a permutation (block %d)\n", b);
				exit(2);
			}
	}
	free(seen);
}

static void drv_ep_regroup(struct kctx *x)
{
	NEED(E, "E");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof ep_cases / sizeof ep_cases[0]; ci++) {
		const int ep = ep_cases[ci].ep, rows = ep_cases[ci].rows;
		if (E % ep || over_max_rows(x, "rows", rows))
			continue;
		for (int dir = 1; dir >= 0; dir--) { /* dispatch's table, then combine's */
			int *from = xcalloc((size_t)E, sizeof *from), *table = xcalloc((size_t)(2 * E + 1), sizeof *table);
			struct tcase *c = tc_new(x, "ep=%d rows=%d %s%s", ep, rows, dir ? "dispatch" : "combine",
						 ep_cases[ci].one ? " one-block" : "");
			ep_route_counts(from, (int)E, rows, ep_cases[ci].one);
			ep_table(from, ep, (int)(E / ep), dir, table);
			int bs = tb_in(c, "src", x->adt, (size_t)rows * H, 0, 1);
			int bt = tb_copy(c, "table", DT_I32, (size_t)(2 * E + 1), R_IN, table);
			int bd = tb_out(c, "dst", x->adt, (size_t)rows * H, TOL_EXACT); /* a row copy */
			ta_bufs(c, "src", bs, "table", bt, "dst", bd, NULL);
			tc_run_n(x, c, "rows", rows, ceil_div(rows, 8), 1, 256);
			free(from);
			free(table);
		}
	}
}

static void drv_moe_permute(struct kctx *x) { perm_cases_run(x, moe_permute_case); }
static void drv_moe_combine(struct kctx *x) { perm_cases_run(x, moe_combine_case); }
static void drv_moe_combine_bwd(struct kctx *x) { perm_cases_run(x, moe_combine_bwd_case); }
static void drv_moe_permute_bwd(struct kctx *x) { perm_cases_run(x, moe_permute_bwd_case); }

const struct driver kvt_dispatch_drivers[] = {
	{"moe_count", "const int *topk_ids, int *blk_count, int rows", drv_moe_count, NOACT(moe_count)},
	{"moe_scan", "int *blk_count, int *counts, int *offsets, int *n_dropped, int rows", drv_moe_scan, NOACT(moe_scan)},
	{"moe_route",
	 "const int *topk_ids, const int *blk_base, const int *counts, const int *offsets, int *dest, int *row_src, "
	 "int *pair_scratch, int rows",
	 drv_moe_route, NOACT(moe_route)},
	{"moe_capacity",
	 "const float *topk_w, const int *counts, const int *offsets, const int *pair_scratch, int *dest, int *row_src",
	 drv_moe_capacity, NOACT(moe_capacity)},
	{"moe_permute", "const act_t *x, const int *dest, act_t *x_perm, int rows", drv_moe_permute, ACT(moe_permute), 1},
	{"ep_regroup", "const act_t *src, const int *table, act_t *dst, int rows", drv_ep_regroup, ACT(ep_regroup)},
	{"moe_combine", "const act_t *y_perm, const int *dest, const float *topk_w, act_t *y, int rows", drv_moe_combine,
	 ACT(moe_combine), 1},
	{"moe_combine_bwd",
	 "const act_t *dy, const act_t *y_perm, const int *dest, const float *topk_w, act_t *dy_perm, float *dtopk_w, int rows",
	 drv_moe_combine_bwd, ACT(moe_combine_bwd), 1},
	{"moe_permute_bwd", "const act_t *dx_perm, const int *dest, act_t *dx, int rows", drv_moe_permute_bwd,
	 ACT(moe_permute_bwd), 1},
	{NULL},
};

/* kvt_dispatch.c - drivers of the MoE dispatch pipeline: moe_count, moe_scan, moe_route,
 * moe_capacity (on host-made routings, consistent across the steps), and moe_permute,
 * moe_combine and their backward. */
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
	sadd(c->shape, sizeof c->shape, " empty=%d", empty);
	if (cap > 0)
		sadd(c->shape, sizeof c->shape, " dropped=%d", r->ndrop);
}

static void drv_moe_count(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	for (size_t ci = 0; ci < sizeof route_cases / sizeof route_cases[0]; ci++) {
		const int T = route_cases[ci].rows;
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[route_cases[ci].pat]);
		struct route r;
		route_make(&r, (int)E, (int)K, T, route_cases[ci].pat, 0, 0);
		route_shape(c, &r, 0);
		int bid = tb_add(c, "topk_ids", DT_I32, (size_t)r.P, R_IN);
		memcpy(c->b[bid].init, r.ids, (size_t)r.P * 4);
		int bc = tb_add(c, "blk_count", DT_I32, (size_t)r.nblk * E, R_OUT);
		tb_exact(c, bc);
		ta_buf(c, "topk_ids", bid);
		ta_buf(c, "blk_count", bc);
		ta_int(c, "rows", T);
		tv(c, "rows", T);
		tg(c, ceil_div(T, 256), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_scan(struct kctx *x)
{
	NEED(E, "E");
	NEED(CAP, "CAPACITY");
	const int K = E >= 2 ? 2 : 1; /* histograms of some routing; moe_scan has no K */
	int T, pat;
	for (size_t ci = 0; route_case(ci, CAP, &T, &pat); ci++) {
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[pat]);
		struct route r;
		route_make(&r, (int)E, K, T, pat, (int)CAP, 2);
		route_shape(c, &r, (int)CAP);
		int bc = tb_add(c, "blk_count", DT_I32, (size_t)r.nblk * E, R_INOUT);
		memcpy(c->b[bc].init, r.hist, (size_t)r.nblk * E * 4);
		int bn = tb_add(c, "counts", DT_I32, (size_t)E, R_OUT);
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_OUT);
		int bd = tb_add(c, "n_dropped", DT_I32, 1, R_OUT);
		tb_exact(c, bc);
		tb_exact(c, bn);
		tb_exact(c, bo);
		tb_exact(c, bd);
		ta_buf(c, "blk_count", bc);
		ta_buf(c, "counts", bn);
		ta_buf(c, "offsets", bo);
		ta_buf(c, "n_dropped", bd);
		ta_int(c, "rows", T);
		tv(c, "rows", T);
		tg(c, 1, 1, 1024);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_route(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(CAP, "CAPACITY");
	NEED(POL, "DROP_POLICY");
	const int low_prob = CAP > 0 && POL == 1;
	int T, pat;
	for (size_t ci = 0; route_case(ci, CAP, &T, &pat); ci++) {
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[pat]);
		struct route r;
		route_make(&r, (int)E, (int)K, T, pat, (int)CAP, (int)POL);
		route_shape(c, &r, (int)CAP);
		int bid = tb_add(c, "topk_ids", DT_I32, (size_t)r.P, R_IN);
		int bb = tb_add(c, "blk_base", DT_I32, (size_t)r.nblk * E, R_IN);
		int bn = tb_add(c, "counts", DT_I32, (size_t)E, R_IN);
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_IN);
		memcpy(c->b[bid].init, r.ids, (size_t)r.P * 4);
		memcpy(c->b[bb].init, r.blk_base, (size_t)r.nblk * E * 4);
		memcpy(c->b[bn].init, r.counts, (size_t)E * 4);
		memcpy(c->b[bo].init, r.offsets, ((size_t)E + 1) * 4);
		int bd = tb_add(c, "dest", DT_I32, (size_t)r.P, R_OUT);
		int brs = tb_add(c, "row_src", DT_I32, (size_t)r.R, R_OUT);
		/* pair_scratch: low_prob only ("else unused, may be NULL": NULL it is) */
		int bps = low_prob ? tb_add(c, "pair_scratch", DT_I32, (size_t)r.P, R_OUT) : -1;
		tb_exact(c, bd);
		tb_exact(c, brs);
		if (bps >= 0)
			tb_exact(c, bps);
		ta_buf(c, "topk_ids", bid);
		ta_buf(c, "blk_base", bb);
		ta_buf(c, "counts", bn);
		ta_buf(c, "offsets", bo);
		ta_buf(c, "dest", bd);
		ta_buf(c, "row_src", brs);
		ta_buf(c, "pair_scratch", bps);
		ta_int(c, "rows", T);
		tv(c, "rows", T);
		tg(c, ceil_div(T, 256), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_capacity(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(CAP, "CAPACITY");
	int T, pat;
	for (size_t ci = 0; route_case(ci, CAP, &T, &pat); ci++) {
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[pat]);
		struct route r;
		route_make(&r, (int)E, (int)K, T, pat, (int)CAP, 1);
		route_shape(c, &r, (int)CAP);
		int bw = tb_add(c, "topk_w", DT_F32, (size_t)r.P, R_IN);
		int bn = tb_add(c, "counts", DT_I32, (size_t)E, R_IN);
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_IN);
		int bs = tb_add(c, "pair_scratch", DT_I32, (size_t)r.P, R_IN);
		memcpy(c->b[bw].init, r.w, (size_t)r.P * 4);
		memcpy(c->b[bn].init, r.counts, (size_t)E * 4);
		memcpy(c->b[bo].init, r.offsets, ((size_t)E + 1) * 4);
		memcpy(c->b[bs].init, r.scratch, (size_t)r.P * 4);
		/* dest as moe_route leaves it: -1 for invalid ids, the rest for moe_capacity */
		int bd = tb_add(c, "dest", DT_I32, (size_t)r.P, R_INOUT);
		sentinel(&c->b[bd]);
		for (int p = 0; p < r.P; p++)
			if ((unsigned)r.ids[p] >= (unsigned)E)
				tb_i32(c, bd)[p] = -1;
		int brs = tb_add(c, "row_src", DT_I32, (size_t)r.R, R_OUT);
		tb_exact(c, bd);
		tb_exact(c, brs);
		ta_buf(c, "topk_w", bw);
		ta_buf(c, "counts", bn);
		ta_buf(c, "offsets", bo);
		ta_buf(c, "pair_scratch", bs);
		ta_buf(c, "dest", bd);
		ta_buf(c, "row_src", brs);
		tg(c, E, 1, 1024);
		run_case(x, c);
		route_free(&r);
	}
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
		sadd(c->shape, sizeof c->shape, "=%d", r->ndrop);
	return c;
}

static int perm_dest(struct tcase *c, const struct route *r)
{
	int bd = tb_add(c, "dest", DT_I32, (size_t)r->P, R_IN);
	memcpy(c->b[bd].init, r->dest, (size_t)r->P * 4);
	return bd;
}

static void drv_moe_permute(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int bx = tb_add(c, "x", x->adt, (size_t)r.T * H, R_IN);
		tb_normal(c, bx, 0, 1);
		int bd = perm_dest(c, &r);
		int bp = tb_add(c, "x_perm", x->adt, (size_t)r.R * H, R_OUT);
		tb_exact(c, bp); /* a row copy */
		ta_buf(c, "x", bx);
		ta_buf(c, "dest", bd);
		ta_buf(c, "x_perm", bp);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_combine(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int byp = tb_add(c, "y_perm", x->adt, (size_t)r.R * H, R_IN);
		tb_normal(c, byp, 0, 1);
		int bd = perm_dest(c, &r);
		int bw = tb_add(c, "topk_w", DT_F32, (size_t)r.P, R_IN);
		memcpy(c->b[bw].init, r.w, (size_t)r.P * 4);
		int by = tb_add(c, "y", x->adt, (size_t)r.T * H, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_RED)); /* k-order sums; the GPU may fuse w * y + acc */
		ta_buf(c, "y_perm", byp);
		ta_buf(c, "dest", bd);
		ta_buf(c, "topk_w", bw);
		ta_buf(c, "y", by);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_combine_bwd(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int bdy = tb_add(c, "dy", x->adt, (size_t)r.T * H, R_IN);
		int byp = tb_add(c, "y_perm", x->adt, (size_t)r.R * H, R_IN);
		tb_normal(c, bdy, 0, 1);
		tb_normal(c, byp, 0, 1);
		int bd = perm_dest(c, &r);
		int bw = tb_add(c, "topk_w", DT_F32, (size_t)r.P, R_IN);
		memcpy(c->b[bw].init, r.w, (size_t)r.P * 4);
		int bdyp = tb_add(c, "dy_perm", x->adt, (size_t)r.R * H, R_OUT);
		int bdw = tb_add(c, "dtopk_w", DT_F32, (size_t)r.P, R_OUT);
		tb_nmse(c, bdyp, act_tol(x, TOL_F32_EW)); /* one product each */
		tb_nmse(c, bdw, TOL_F32_RED);             /* dot products */
		ta_buf(c, "dy", bdy);
		ta_buf(c, "y_perm", byp);
		ta_buf(c, "dest", bd);
		ta_buf(c, "topk_w", bw);
		ta_buf(c, "dy_perm", bdyp);
		ta_buf(c, "dtopk_w", bdw);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_permute_bwd(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int bxp = tb_add(c, "dx_perm", x->adt, (size_t)r.R * H, R_IN);
		tb_normal(c, bxp, 0, 1);
		int bd = perm_dest(c, &r);
		int bdx = tb_add(c, "dx", x->adt, (size_t)r.T * H, R_OUT);
		tb_nmse(c, bdx, act_tol(x, TOL_F32_RED));
		ta_buf(c, "dx_perm", bxp);
		ta_buf(c, "dest", bd);
		ta_buf(c, "dx", bdx);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}


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
	{"moe_permute", "const act_t *x, const int *dest, act_t *x_perm, int rows", drv_moe_permute, ACT(moe_permute)},
	{"moe_combine", "const act_t *y_perm, const int *dest, const float *topk_w, act_t *y, int rows", drv_moe_combine,
	 ACT(moe_combine)},
	{"moe_combine_bwd",
	 "const act_t *dy, const act_t *y_perm, const int *dest, const float *topk_w, act_t *dy_perm, float *dtopk_w, int rows",
	 drv_moe_combine_bwd, ACT(moe_combine_bwd)},
	{"moe_permute_bwd", "const act_t *dx_perm, const int *dest, act_t *dx, int rows", drv_moe_permute_bwd,
	 ACT(moe_permute_bwd)},
	{NULL},
};

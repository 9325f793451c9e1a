/* kvt_router.c - drivers of router_fwd and router_bwd, on logits whose routing has no
 * near-ties. */
#include "kvt.h"

static void inv_router_fwd(void *f, void **a)
{
	FN((const float *, const float *, int *, float *, float *, int *, int *, float *, void *, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AP(8), AI(9));
}
static void inv_router_bwd(void *f, void **a)
{
	FN((const float *, const int *, const float *, const float *, float, float *, int))
	(AP(0), AP(1), AP(2), AP(3), AF(4), AP(5), AI(6));
}
/* Router logits of one token whose routing has no near-ties, and its picks: router_fwd.cu's
 * selection recomputed in double; a draw is kept when the choices (score + bias) of the K
 * picks and the best unpicked eligible expert are pairwise apart by 1e-4 relative (+1e-7),
 * and so are the group scores at the TOPK_GROUP boundary: orders of magnitude above the
 * fp32 difference of the GPU's and the twin's scores (expf, sums in another order), so the
 * picks cannot legitimately differ. boost: added to expert `hot`'s logit (the maximum load). */
static void router_logits(float *l, const float *bias, int E, int K, int sigmoid, int ngroup, int topkg, int hot, double boost,
			  int *picks)
{
	double *sc = xcalloc((size_t)E, sizeof(double)), *ch = xcalloc((size_t)E, sizeof(double));
	unsigned char *elig = xcalloc((size_t)E, 1);
	double *gs = xcalloc((size_t)(ngroup > 0 ? ngroup : 1), sizeof(double));
	for (int tries = 0;; tries++) {
		if (tries == 10000) {
			fprintf(stderr, "kernel_vs_twin: cannot draw tie-free router logits (E=%d K=%d)\n", E, K);
			exit(2);
		}
		for (int e = 0; e < E; e++)
			l[e] = (float)(1.5 * rnd_normal() + (e == hot ? boost : 0));
		double m = -INFINITY, se = 0;
		for (int e = 0; e < E; e++)
			m = l[e] > m ? l[e] : m;
		for (int e = 0; e < E; e++)
			se += exp(l[e] - m);
		for (int e = 0; e < E; e++) {
			sc[e] = sigmoid ? 1.0 / (1.0 + exp(-(double)l[e])) : exp(l[e] - m) / se;
			ch[e] = sc[e] + (bias ? bias[e] : 0.0f);
			elig[e] = 1;
		}
		int ok = 1;
		if (ngroup > 1) {
			const int G = E / ngroup;
			for (int g = 0; g < ngroup; g++) {
				double t1 = -INFINITY, t2 = -INFINITY;
				for (int e = g * G; e < g * G + G; e++) {
					if (ch[e] > t1)
						t2 = t1, t1 = ch[e];
					else if (ch[e] > t2)
						t2 = ch[e];
				}
				gs[g] = t1 + t2;
			}
			unsigned gmask = 0;
			double last = 0;
			for (int r = 0; r <= topkg && r < ngroup; r++) {
				int bi = -1;
				for (int g = 0; g < ngroup; g++)
					if (!(gmask >> g & 1) && (bi < 0 || gs[g] > gs[bi]))
						bi = g;
				if (r == topkg) { /* the best dropped group must be clearly below the last kept one */
					if (last - gs[bi] < 1e-4 * fabs(last) + 1e-7)
						ok = 0;
					break;
				}
				gmask |= 1u << bi;
				last = gs[bi];
			}
			for (int e = 0; e < E; e++)
				if (!(gmask >> (e / G) & 1))
					elig[e] = 0;
		}
		double prev = 0;
		for (int k = 0; k <= K && ok; k++) {
			int best = -1;
			for (int e = 0; e < E; e++)
				if (elig[e] && (best < 0 || ch[e] > ch[best]))
					best = e;
			if (best < 0)
				break; /* exactly K eligible */
			if (k > 0 && prev - ch[best] < 1e-4 * fabs(prev) + 1e-7)
				ok = 0;
			if (k == K)
				break;
			elig[best] = 0;
			picks[k] = best;
			prev = ch[best];
		}
		if (ok)
			break;
	}
	free(sc);
	free(ch);
	free(elig);
	free(gs);
}
/* router_fwd: near-tie-free logits (router_logits), bias, the maximum load */
static void drv_router_fwd(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(SIG, "ROUTER_SIGMOID");
	NEED(NG, "N_GROUP");
	NEED(TG, "TOPK_GROUP");
	const struct {
		int rows, bias, hot;
	} cs[] = {{0, 0, 0}, {1, 0, 0}, {37, 0, 0}, {256, 0, 0}, {1000, 0, 0}, {256, 1, 0}, {1000, 0, 1}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, nblk = imax(1, (int)ceil_div(rows, 64));
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s%s", rows, cs[ci].bias ? " bias" : "", cs[ci].hot ? " one-expert" : "");
		int bb = -1;
		if (cs[ci].bias) {
			bb = tb_add(c, "bias", DT_F32, (size_t)E, R_IN);
			tb_normal(c, bb, 0, 0.05);
		}
		int bl = tb_add(c, "logits", DT_F32, (size_t)rows * E, R_IN);
		int *picks = xcalloc((size_t)K, sizeof(int));
		for (int t = 0; t < rows; t++)
			router_logits(tb_f32(c, bl) + (size_t)t * E, bb >= 0 ? tb_f32(c, bb) : NULL, (int)E, (int)K, (int)SIG,
				      (int)NG, (int)TG, (int)(E / 3), cs[ci].hot ? 8.0 : 0.0, picks);
		free(picks);
		int bid = tb_out(c, "topk_ids", DT_I32, (size_t)rows * K, TOL_EXACT);
		int bw = tb_out(c, "topk_w", DT_F32, (size_t)rows * K, TOL_F32_RED);
		int bps = tb_out(c, "prob_sum", DT_F32, (size_t)E, TOL_F32_RED);
		int bsc = tb_out(c, "sel_count", DT_I32, (size_t)K * E, TOL_EXACT);
		int bec = tb_out(c, "expert_count", DT_I32, (size_t)E, TOL_EXACT);
		int bz = tb_out(c, "z_sum", DT_F32, 1, TOL_F32_RED);
		/* ws: zero-filled once; every launch must leave the accumulators zero again */
		const size_t wsb = 8 * (size_t)E + 4 * (size_t)K * E + 4 + 4 * (size_t)nblk;
		int bws = tb_add(c, "ws", DT_U32, wsb / 4, R_SCRATCH);
		tb_exact(c, bws);
		c->b[bws].ncmp = (8 * (size_t)E + 4 * (size_t)K * E + 4) / 4;
		ta_bufs(c, "logits", bl, "bias", bb, "topk_ids", bid, "topk_w", bw, "prob_sum", bps, "sel_count", bsc,
			"expert_count", bec, "z_sum", bz, "ws", bws, NULL);
		tc_run_n(x, c, "rows", rows, nblk, 1, 256);
	}
}

static void drv_router_bwd(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(SIG, "ROUTER_SIGMOID");
	const struct {
		int rows, aux;
		float dz;
	} cs[] = {{1, 1, 0.3f}, {37, 1, 0.3f}, {256, 1, 0.3f}, {1000, 1, 0.3f}, {37, 0, 0.3f}, {256, 0, 0.0f}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s dz=%g", rows, cs[ci].aux ? " aux" : " dprob_sum=NULL", cs[ci].dz);
		int bl = tb_add(c, "logits", DT_F32, (size_t)rows * E, R_IN);
		int bid = tb_add(c, "topk_ids", DT_I32, (size_t)rows * K, R_IN);
		for (int t = 0; t < rows; t++) /* the picks router_fwd makes of these logits */
			router_logits(tb_f32(c, bl) + (size_t)t * E, NULL, (int)E, (int)K, (int)SIG, 1, 1, 0, 0.0,
				      tb_i32(c, bid) + (size_t)t * K);
		int bdw = tb_in(c, "dtopk_w", DT_F32, (size_t)rows * K, 0, 1);
		int bdp = -1;
		if (cs[ci].aux) {
			bdp = tb_add(c, "dprob_sum", DT_F32, (size_t)E, R_IN);
			tb_normal(c, bdp, 0, 0.1);
		}
		int bdl = tb_out(c, "dlogits", DT_F32, (size_t)rows * E, TOL_F32_RED);
		ta_bufs(c, "logits", bl, "topk_ids", bid, "dtopk_w", bdw, "dprob_sum", bdp, NULL);
		ta_float(c, "dz_sum", cs[ci].dz);
		ta_buf(c, "dlogits", bdl);
		tc_run_n(x, c, "rows", rows, ceil_div(rows, 8), 1, 256);
	}
}


const struct driver kvt_router_drivers[] = {
	{"router_fwd",
	 "const float *logits, const float *bias, int *topk_ids, float *topk_w, float *prob_sum, int *sel_count, "
	 "int *expert_count, float *z_sum, void *ws, int rows",
	 drv_router_fwd, NOACT(router_fwd)},
	{"router_bwd",
	 "const float *logits, const int *topk_ids, const float *dtopk_w, const float *dprob_sum, float dz_sum, "
	 "float *dlogits, int rows",
	 drv_router_bwd, NOACT(router_bwd)},
	{NULL},
};

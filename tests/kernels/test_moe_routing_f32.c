/* test_moe_routing_f32.c - the MoE routing twins (router_fwd/bwd, moe_count/scan/route/
 * capacity, moe_permute/_bwd, moe_combine/_bwd) in fp32 against plain double-precision
 * references and central finite differences.
 *
 * T = tokens, E = routed experts, K = top-k, H = hidden.
 *
 * Tolerances (fp32 twins vs double references):
 *   router weights / probabilities: a softmax over E <= 256 terms in fp32 carries a relative
 *     error of a few ulp per term plus the sum's ~E*eps/2 worst case (~1.5e-5 at E=256); 3e-5
 *     relative bounds it. prob_sum accumulates in double, so its error is the per-row one.
 *   z_sum: lse = m + log(sum) has an absolute error ~E*eps; lse^2 relative 3e-5.
 *   router_bwd vs FD of the double reference (h = 1e-5: truncation ~1e-10, far below): the
 *     fp32 gradient is a difference of terms as large as the largest gradient, so the bound is
 *     relative to the row's largest |gradient|: 2e-4 * max|g| + 1e-4 * |g|.
 *   combine: K products summed in fp32: 1e-5 relative to sum |w * y| per element.
 *   dispatch (integers, copies): exact.
 */
#define ACT_BF16 0
#include "moec_host.h"
#include "testing.h"

#include <stdio.h>
#include <stdlib.h>

#include "moe_routing_ref.h"

/* ---- router instances ---- */
/* Qwen3-MoE tiny example: softmax, top-2 of 8, renormalized. */
#define ROUTER_INST r_tiny
#define E 8
#define K 2
#define ROUTER_SIGMOID 0
#define NORM_TOPK 1
#define ROUTED_SCALE 1.0f
#define N_GROUP 1
#define TOPK_GROUP 1
#include "moe_routing_twins.h"
/* Qwen3-30B-A3B: softmax, top-8 of 128. */
#define ROUTER_INST r_qwen30b
#define E 128
#define K 8
#define ROUTER_SIGMOID 0
#define NORM_TOPK 1
#define ROUTED_SCALE 1.0f
#define N_GROUP 1
#define TOPK_GROUP 1
#include "moe_routing_twins.h"
/* E not a multiple of 32, no renormalization, a scale. */
#define ROUTER_INST r_e40
#define E 40
#define K 3
#define ROUTER_SIGMOID 0
#define NORM_TOPK 0
#define ROUTED_SCALE 1.5f
#define N_GROUP 1
#define TOPK_GROUP 1
#include "moe_routing_twins.h"
/* DeepSeek-V3: sigmoid, 8 groups of 32, 4 groups kept, top-8, renormalized, x2.5. */
#define ROUTER_INST r_dsv3
#define E 256
#define K 8
#define ROUTER_SIGMOID 1
#define NORM_TOPK 1
#define ROUTED_SCALE 2.5f
#define N_GROUP 8
#define TOPK_GROUP 4
#include "moe_routing_twins.h"
/* Sigmoid, groups, no renormalization. */
#define ROUTER_INST r_sig64
#define E 64
#define K 6
#define ROUTER_SIGMOID 1
#define NORM_TOPK 0
#define ROUTED_SCALE 1.0f
#define N_GROUP 4
#define TOPK_GROUP 2
#include "moe_routing_twins.h"
/* Softmax with group-limited selection, top-1. */
#define ROUTER_INST r_grp_k1
#define E 32
#define K 1
#define ROUTER_SIGMOID 0
#define NORM_TOPK 1
#define ROUTED_SCALE 1.0f
#define N_GROUP 4
#define TOPK_GROUP 1
#include "moe_routing_twins.h"

static const struct router_inst *const routers[] = {&r_tiny_desc, &r_qwen30b_desc, &r_e40_desc,
						     &r_dsv3_desc, &r_sig64_desc, &r_grp_k1_desc};

/* ---- dispatch / combine instances ---- */
#define MOE_INST m_tiny /* the tiny example, dropless */
#define E 8
#define K 2
#define H 128
#define CAPACITY 0
#define DROP_POLICY 0
#include "moe_routing_twins.h"
#define MOE_INST m_late /* late_tokens drops; H not a multiple of 4 */
#define E 8
#define K 2
#define H 13
#define CAPACITY 40
#define DROP_POLICY 2
#include "moe_routing_twins.h"
#define MOE_INST m_lowp /* low_prob drops */
#define E 8
#define K 2
#define H 13
#define CAPACITY 40
#define DROP_POLICY 1
#include "moe_routing_twins.h"
#define MOE_INST m_qwen /* Qwen3-30B routing shape, dropless */
#define E 128
#define K 8
#define H 64
#define CAPACITY 0
#define DROP_POLICY 0
#include "moe_routing_twins.h"
#define MOE_INST m_qwen_lowp
#define E 128
#define K 8
#define H 64
#define CAPACITY 30
#define DROP_POLICY 1
#include "moe_routing_twins.h"
#define MOE_INST m_qwen_late
#define E 128
#define K 8
#define H 64
#define CAPACITY 30
#define DROP_POLICY 2
#include "moe_routing_twins.h"
#define MOE_INST m_e40_lowp /* tiny capacity: most pairs dropped */
#define E 40
#define K 3
#define H 20
#define CAPACITY 2
#define DROP_POLICY 1
#include "moe_routing_twins.h"

#define MOE_INST m_cap2_lowp /* capacity 2: the by-hand cases */
#define E 8
#define K 2
#define H 4
#define CAPACITY 2
#define DROP_POLICY 1
#include "moe_routing_twins.h"
#define MOE_INST m_cap2_late
#define E 8
#define K 2
#define H 4
#define CAPACITY 2
#define DROP_POLICY 2
#include "moe_routing_twins.h"

static const struct moe_inst *const moes[] = {&m_tiny_desc,      &m_late_desc,      &m_lowp_desc,      &m_qwen_desc,
					      &m_qwen_lowp_desc, &m_qwen_late_desc, &m_e40_lowp_desc, &m_cap2_lowp_desc,
					      &m_cap2_late_desc};

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- router forward ---- */

/* Runs twin and reference on `logits`, checks picks, weights and statistics. */
static void check_router_fwd(const struct router_inst *ri, const float *logits, const float *bias, int T,
			     const char *what)
{
	const int E = ri->E, K = ri->K;
	int *ids = xcalloc((size_t)T * K, sizeof(int)), *sel = xcalloc((size_t)K * E, sizeof(int));
	int *cnt = xcalloc((size_t)E, sizeof(int));
	float *w = xcalloc((size_t)T * K, sizeof(float)), *psum = xcalloc((size_t)E, sizeof(float)), z = -1.f;
	int *rids = xcalloc((size_t)T * K, sizeof(int)), *rsel = xcalloc((size_t)K * E, sizeof(int));
	int *rcnt = xcalloc((size_t)E, sizeof(int));
	double *rw = xcalloc((size_t)T * K, sizeof(double)), *rpsum = xcalloc((size_t)E, sizeof(double)), rz = 0;
	double l[REF_MAX_E], prob[REF_MAX_E], lse;

	/* poison the statistics: the twin must overwrite them */
	for (int i = 0; i < K * E; i++)
		sel[i] = -7;
	for (int e = 0; e < E; e++) {
		cnt[e] = -7;
		psum[e] = -7.f;
	}
	ri->fwd(logits, bias, ids, w, psum, sel, cnt, &z, NULL, T);

	for (int t = 0; t < T; t++) {
		for (int e = 0; e < E; e++)
			l[e] = logits[(size_t)t * E + e];
		ref_router_token(ri, l, bias, rids + (size_t)t * K, rw + (size_t)t * K, prob, &lse);
		for (int e = 0; e < E; e++)
			rpsum[e] += prob[e];
		for (int k = 0; k < K; k++) {
			rsel[k * E + rids[(size_t)t * K + k]]++;
			rcnt[rids[(size_t)t * K + k]]++;
		}
		rz += lse * lse;
	}
	int ids_ok = !memcmp(ids, rids, (size_t)T * K * sizeof(int));
	if (!ids_ok)
		fprintf(stderr, "  %s %s T=%d: topk_ids differ\n", ri->name, what, T);
	EXPECT(ids_ok);
	EXPECT(near_all("topk_w", w, rw, (size_t)T * K, 3e-5, 1e-7));
	EXPECT(near_all("prob_sum", psum, rpsum, (size_t)E, 3e-5, 1e-6));
	EXPECT(!memcmp(sel, rsel, (size_t)K * E * sizeof(int)));
	EXPECT(!memcmp(cnt, rcnt, (size_t)E * sizeof(int)));
	EXPECT_NEAR(z, rz, 3e-5);
	if (T > 0 && ri->norm) { /* the K weights sum to the scale */
		double s = 0;
		for (int k = 0; k < K; k++)
			s += w[k];
		EXPECT_NEAR(s, ri->scale, 1e-5);
	}
	free(ids), free(sel), free(cnt), free(w), free(psum), free(rids), free(rsel), free(rcnt), free(rw), free(rpsum);
}

static void test_router_forward(void)
{
	static const int Ts[] = {0, 1, 37, 300};
	for (int r = 0; r < NELEM(routers); r++) {
		const struct router_inst *ri = routers[r];
		const int E = ri->E;
		float *bias = xcalloc((size_t)E, sizeof(float));
		for (int e = 0; e < E; e++)
			bias[e] = (float)(0.05 * rng_normal());
		for (int ti = 0; ti < NELEM(Ts); ti++) {
			const int T = Ts[ti];
			float *logits = xcalloc((size_t)T * E, sizeof(float));
			rng_seed(1000 + 10 * r + ti);
			for (int i = 0; i < T * E; i++)
				logits[i] = (float)(1.5 * rng_normal());
			check_router_fwd(ri, logits, NULL, T, "random");
			check_router_fwd(ri, logits, bias, T, "random+bias");
			/* exact ties: integer logits in {-1, 0, 1}; all-equal rows */
			for (int i = 0; i < T * E; i++)
				logits[i] = (float)(rng_int(3) - 1);
			for (int i = 0; i < (T < 3 ? T : 3) * E; i++)
				logits[i] = 0.f;
			check_router_fwd(ri, logits, NULL, T, "ties");
			free(logits);
		}
		free(bias);
	}
}

/* With all logits equal every expert ties: picks are 0..K-1 (lower index first; with groups,
 * the lowest groups first) and the renormalized weights are scale / K. */
static void test_router_tie_rule(void)
{
	for (int r = 0; r < NELEM(routers); r++) {
		const struct router_inst *ri = routers[r];
		const int E = ri->E, K = ri->K;
		float *logits = xcalloc((size_t)2 * E, sizeof(float)), w[64], psum[REF_MAX_E], z;
		int ids[64], *sel = xcalloc((size_t)K * E, sizeof(int)), cnt[REF_MAX_E];
		ri->fwd(logits, NULL, ids, w, psum, sel, cnt, &z, NULL, 2);
		for (int t = 0; t < 2; t++)
			for (int k = 0; k < K; k++) {
				EXPECT_INT(ids[t * K + k], k);
				if (ri->norm)
					EXPECT_NEAR(w[t * K + k], ri->scale / K, 1e-6);
			}
		EXPECT_INT(cnt[0], 2);
		EXPECT_INT(cnt[E - 1], K == E ? 2 : 0);
		free(logits), free(sel);
	}
}

/* ---- router backward vs finite differences ---- */

/* The scalar loss of one token: sum_k c_k w_k + sum_e a_e prob_e + beta * lse^2 (double). */
static double ref_token_loss(const struct router_inst *ri, const double *l, const float *bias, const float *c,
			     const float *a, double beta, int *ids)
{
	double w[32], prob[REF_MAX_E], lse, L = 0;
	ref_router_token(ri, l, bias, ids, w, prob, &lse);
	for (int k = 0; k < ri->K; k++)
		L += (double)c[k] * w[k];
	for (int e = 0; e < ri->E; e++)
		L += (double)a[e] * prob[e];
	return L + beta * lse * lse;
}

static void test_router_backward(void)
{
	for (int r = 0; r < NELEM(routers); r++) {
		const struct router_inst *ri = routers[r];
		const int E = ri->E, K = ri->K, T = E >= 128 ? 3 : 6;
		rng_seed(2000 + r);
		float *logits = xcalloc((size_t)T * E, sizeof(float)), *bias = xcalloc((size_t)E, sizeof(float));
		float *c = xcalloc((size_t)T * K, sizeof(float)), *a = xcalloc((size_t)E, sizeof(float));
		float *dl = xcalloc((size_t)T * E, sizeof(float));
		int *ids = xcalloc((size_t)T * K, sizeof(int));
		int perm[REF_MAX_E];
		/* Well-separated logits (a permuted even grid, spacing >= 0.02) so that a step of h
		 * never switches the top-k or the kept groups (checked below). */
		for (int t = 0; t < T; t++) {
			rng_perm(perm, E);
			for (int e = 0; e < E; e++)
				logits[(size_t)t * E + e] = (float)(-3.0 + 6.0 * perm[e] / (E - 1));
		}
		for (int e = 0; e < E; e++) {
			bias[e] = ri->sigmoid ? (float)(0.01 * rng_normal()) : 0.f;
			a[e] = (float)rng_normal();
		}
		for (int i = 0; i < T * K; i++)
			c[i] = (float)rng_normal();
		const float beta = 0.37f;

		/* forward picks (the twin's), then the backward */
		{
			float *w = xcalloc((size_t)T * K, sizeof(float)), psum[REF_MAX_E], z;
			int *sel = xcalloc((size_t)K * E, sizeof(int)), cnt[REF_MAX_E];
			ri->fwd(logits, ri->sigmoid ? bias : NULL, ids, w, psum, sel, cnt, &z, NULL, T);
			free(w), free(sel);
		}
		ri->bwd(logits, ids, c, a, beta, dl, T);

		const double h = 1e-5;
		int switched = 0, bad = 0;
		double l[REF_MAX_E], fd[REF_MAX_E];
		int rid[32];
		for (int t = 0; t < T; t++) {
			double gmax = 0;
			for (int e = 0; e < E; e++) {
				for (int j = 0; j < E; j++)
					l[j] = logits[(size_t)t * E + j];
				const double l0 = l[e];
				l[e] = l0 + h;
				const double Lp = ref_token_loss(ri, l, ri->sigmoid ? bias : NULL, c + (size_t)t * K, a, beta, rid);
				switched += memcmp(rid, ids + (size_t)t * K, (size_t)K * sizeof(int)) != 0;
				l[e] = l0 - h;
				const double Lm = ref_token_loss(ri, l, ri->sigmoid ? bias : NULL, c + (size_t)t * K, a, beta, rid);
				switched += memcmp(rid, ids + (size_t)t * K, (size_t)K * sizeof(int)) != 0;
				fd[e] = (Lp - Lm) / (2 * h);
				gmax = fmax(gmax, fabs(fd[e]));
			}
			for (int e = 0; e < E; e++) {
				const double g = dl[(size_t)t * E + e];
				if (!(fabs(g - fd[e]) <= 2e-4 * gmax + 1e-4 * fabs(fd[e]) + 1e-6)) {
					if (!bad)
						fprintf(stderr, "  %s: dlogits[%d,%d] = %.9g, FD %.9g\n", ri->name, t, e, g, fd[e]);
					bad++;
				}
			}
		}
		EXPECT_INT(switched, 0); /* the FD is valid */
		EXPECT_INT(bad, 0);

		/* Each term alone, through the same check: routing weights only (no aux, no z). */
		ri->bwd(logits, ids, c, NULL, 0.f, dl, T);
		float *zero = xcalloc((size_t)E, sizeof(float));
		bad = 0;
		for (int t = 0; t < T; t++) {
			double gmax = 0;
			for (int e = 0; e < E; e++) {
				for (int j = 0; j < E; j++)
					l[j] = logits[(size_t)t * E + j];
				const double l0 = l[e];
				l[e] = l0 + h;
				const double Lp = ref_token_loss(ri, l, ri->sigmoid ? bias : NULL, c + (size_t)t * K, zero, 0, rid);
				l[e] = l0 - h;
				const double Lm = ref_token_loss(ri, l, ri->sigmoid ? bias : NULL, c + (size_t)t * K, zero, 0, rid);
				fd[e] = (Lp - Lm) / (2 * h);
				gmax = fmax(gmax, fabs(fd[e]));
			}
			for (int e = 0; e < E; e++)
				bad += !(fabs(dl[(size_t)t * E + e] - fd[e]) <= 2e-4 * gmax + 1e-4 * fabs(fd[e]) + 1e-6);
		}
		EXPECT_INT(bad, 0);
		free(zero), free(logits), free(bias), free(c), free(a), free(dl), free(ids);
	}
}

/* ---- dispatch ---- */

static void check_dispatch(const struct moe_inst *mi, int T, int masked, int tied)
{
	const int E = mi->E, K = mi->K, H = mi->H, P = T * K;
	int *ids = xcalloc((size_t)P, sizeof(int)), *dest = xcalloc((size_t)P, sizeof(int));
	int *row_src = xcalloc((size_t)P, sizeof(int)), *counts = xcalloc((size_t)E, sizeof(int));
	int *offsets = xcalloc((size_t)E + 1, sizeof(int)), *rdest = xcalloc((size_t)P, sizeof(int));
	int *rrow = xcalloc((size_t)P, sizeof(int)), *rcounts = xcalloc((size_t)E, sizeof(int));
	int *roff = xcalloc((size_t)E + 1, sizeof(int));
	float *w = xcalloc((size_t)P, sizeof(float));
	gen_routes(E, K, T, masked, tied, ids, w);

	const int nd = run_dispatch(mi, ids, w, T, dest, row_src, counts, offsets);
	const int rnd = ref_dispatch(E, K, mi->capacity, mi->drop_policy, ids, w, T, rdest, rrow, rcounts, roff);
	const int ok = nd == rnd && !memcmp(counts, rcounts, (size_t)E * sizeof(int)) &&
		       !memcmp(offsets, roff, (size_t)(E + 1) * sizeof(int)) && !memcmp(dest, rdest, (size_t)P * sizeof(int)) &&
		       !memcmp(row_src, rrow, (size_t)roff[E] * sizeof(int));
	if (!ok)
		fprintf(stderr, "  %s T=%d masked=%d tied=%d: dispatch differs (drops %d vs %d)\n", mi->name, T, masked, tied,
			nd, rnd);
	EXPECT(ok);
	if (mi->capacity == 0 && !masked)
		EXPECT_INT(offsets[E], P);
	if (mi->capacity > 0)
		for (int e = 0; e < E; e++)
			EXPECT(offsets[e + 1] - offsets[e] <= mi->capacity);

	/* the gather: each kept row is its token's row, bit for bit */
	act_t *x = xcalloc((size_t)T * H, sizeof(act_t)), *xp = xcalloc((size_t)roff[E] + 1, H * sizeof(act_t));
	for (int i = 0; i < T * H; i++)
		act_store(&x[i], (float)rng_normal());
	mi->permute(x, dest, xp, T);
	int same = 1;
	for (int r = 0; r < roff[E]; r++)
		same &= !memcmp(xp + (size_t)r * H, x + (size_t)(rrow[r] / K) * H, H * sizeof(act_t));
	EXPECT(same);
	free(ids), free(dest), free(row_src), free(counts), free(offsets), free(rdest), free(rrow), free(rcounts),
		free(roff), free(w), free(x), free(xp);
}

static void test_dispatch(void)
{
	static const int Ts[] = {0, 1, 7, 256, 257, 600, 1000};
	for (int m = 0; m < NELEM(moes); m++)
		for (int ti = 0; ti < NELEM(Ts); ti++)
			for (int mode = 0; mode < 3; mode++) {
				rng_seed(3000 + 100 * m + 10 * ti + mode);
				check_dispatch(moes[m], Ts[ti], mode == 1, mode == 2);
			}
}

/* Capacity cases small enough to check by hand (E = 8, K = 2, capacity 2): 4 tokens, each
 * choosing experts 0 and 1, weights on expert 0: 0.1 0.4 0.4 0.3, on expert 1: 0.9 0.6 0.6 0.7.
 * low_prob keeps expert 0's tokens 1, 2 and expert 1's tokens 0, 3; late_tokens keeps tokens
 * 0, 1 on both. Then a tie at the cut (all weights equal): low_prob keeps the earlier tokens. */
static void test_capacity_by_hand(void)
{
	const int ids[8] = {0, 1, 0, 1, 0, 1, 0, 1};
	const float w[8] = {0.1f, 0.9f, 0.4f, 0.6f, 0.4f, 0.6f, 0.3f, 0.7f};
	int dest[8], row_src[8], counts[8], offsets[9];
	int nd = run_dispatch(&m_cap2_lowp_desc, ids, w, 4, dest, row_src, counts, offsets);
	EXPECT_INT(nd, 4);
	EXPECT_INT(counts[0], 4);
	EXPECT_INT(counts[1], 4);
	EXPECT_INT(counts[2], 0);
	EXPECT_INT(offsets[1], 2);
	EXPECT_INT(offsets[2], 4);
	EXPECT_INT(offsets[8], 4);
	static const int want_low[8] = {-1, 2, 0, -1, 1, -1, -1, 3};
	for (int p = 0; p < 8; p++)
		EXPECT_INT(dest[p], want_low[p]);
	static const int want_low_rows[4] = {2, 4, 1, 7};
	for (int r = 0; r < 4; r++)
		EXPECT_INT(row_src[r], want_low_rows[r]);

	nd = run_dispatch(&m_cap2_late_desc, ids, w, 4, dest, row_src, counts, offsets);
	EXPECT_INT(nd, 4);
	static const int want_late[8] = {0, 2, 1, 3, -1, -1, -1, -1};
	for (int p = 0; p < 8; p++)
		EXPECT_INT(dest[p], want_late[p]);

	const float w3[8] = {0.4f, 0.6f, 0.4f, 0.6f, 0.4f, 0.6f, 0.4f, 0.6f};
	nd = run_dispatch(&m_cap2_lowp_desc, ids, w3, 4, dest, row_src, counts, offsets);
	EXPECT_INT(nd, 4);
	for (int p = 0; p < 8; p++)
		EXPECT_INT(dest[p], want_late[p]);
}

/* ---- combine, its backward, the permute backward ---- */

/* One instance: dispatch random routes, then check combine against a reference and the
 * backward kernels against central differences of L = sum c * y (combine) and
 * L = sum c * x_perm (permute). Both maps are linear, so FD in double is exact up to
 * rounding; sampled entries keep the cost small. */
static void check_combine(const struct moe_inst *mi, int T)
{
	const int E = mi->E, K = mi->K, H = mi->H, P = T * K;
	int *ids = xcalloc((size_t)P, sizeof(int)), *dest = xcalloc((size_t)P, sizeof(int));
	int *row_src = xcalloc((size_t)P, sizeof(int)), *counts = xcalloc((size_t)E, sizeof(int));
	int *offsets = xcalloc((size_t)E + 1, sizeof(int));
	float *w = xcalloc((size_t)P, sizeof(float));
	gen_routes(E, K, T, 1, 0, ids, w);
	run_dispatch(mi, ids, w, T, dest, row_src, counts, offsets);
	const int R = offsets[E];

	act_t *yp = xcalloc((size_t)R + 1, H * sizeof(act_t)), *y = xcalloc((size_t)T + 1, H * sizeof(act_t));
	act_t *dy = xcalloc((size_t)T + 1, H * sizeof(act_t)), *dyp = xcalloc((size_t)R + 1, H * sizeof(act_t));
	act_t *dx = xcalloc((size_t)T + 1, H * sizeof(act_t));
	float *dw = xcalloc((size_t)P + 1, sizeof(float));
	for (size_t i = 0; i < (size_t)R * H; i++)
		yp[i] = (float)rng_normal();
	for (size_t i = 0; i < (size_t)T * H; i++)
		dy[i] = (float)rng_normal();

	/* forward */
	mi->combine(yp, dest, w, y, T);
	int bad = 0;
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			double s = 0, mag = 0;
			for (int k = 0; k < K; k++) {
				const int d = dest[t * K + k];
				if (d >= 0) {
					s += (double)w[t * K + k] * yp[(size_t)d * H + h];
					mag += fabs((double)w[t * K + k] * yp[(size_t)d * H + h]);
				}
			}
			bad += !(fabs(y[(size_t)t * H + h] - s) <= 1e-5 * mag + 1e-30);
		}
	EXPECT_INT(bad, 0);

	/* backward: analytic from the twin, FD of L(yp, w) = sum dy * combine(yp, w) in double */
	mi->combine_bwd(dy, yp, dest, w, dyp, dw, T);
#define COMBINE_LOSS(out)                                                                         \
	do {                                                                                          \
		double L_ = 0;                                                                        \
		for (int t_ = 0; t_ < T; t_++)                                                        \
			for (int k_ = 0; k_ < K; k_++) {                                              \
				const int d_ = dest[t_ * K + k_];                                     \
				if (d_ < 0)                                                           \
					continue;                                                     \
				for (int h_ = 0; h_ < H; h_++)                                        \
					L_ += (double)dy[(size_t)t_ * H + h_] * wd[t_ * K + k_] *     \
					      ypd[(size_t)d_ * H + h_];                               \
			}                                                                             \
		(out) = L_;                                                                           \
	} while (0)
	double *wd = xcalloc((size_t)P + 1, sizeof(double)), *ypd = xcalloc((size_t)R * H + 1, sizeof(double));
	for (int i = 0; i < P; i++)
		wd[i] = w[i];
	for (size_t i = 0; i < (size_t)R * H; i++)
		ypd[i] = yp[i];
	const double hstep = 1e-3;
	bad = 0;
	for (int s = 0; s < 40 && R > 0; s++) { /* dy_perm entries */
		const size_t i = (size_t)rng_int(R * H);
		double Lp, Lm;
		const double v = ypd[i];
		ypd[i] = v + hstep;
		COMBINE_LOSS(Lp);
		ypd[i] = v - hstep;
		COMBINE_LOSS(Lm);
		ypd[i] = v;
		const double fd = (Lp - Lm) / (2 * hstep);
		bad += !(fabs(dyp[i] - fd) <= 1e-5 * fabs(fd) + 1e-6);
	}
	for (int p = 0; p < P; p++) { /* every dtopk_w, including dropped pairs (0) */
		double Lp, Lm;
		const double v = wd[p];
		wd[p] = v + hstep;
		COMBINE_LOSS(Lp);
		wd[p] = v - hstep;
		COMBINE_LOSS(Lm);
		wd[p] = v;
		const double fd = (Lp - Lm) / (2 * hstep);
		bad += !(fabs(dw[p] - fd) <= 1e-5 * fabs(fd) + 1e-5 * sqrt((double)H));
		if (dest[p] < 0)
			bad += dw[p] != 0.f;
	}
#undef COMBINE_LOSS
	EXPECT_INT(bad, 0);

	/* permute backward: dx = d/dx sum(c * permute(x)) with c = dy_perm from above */
	mi->permute_bwd(dyp, dest, dx, T);
	bad = 0;
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			/* x[t,h] appears in x_perm at rows dest[t, k] >= 0: the FD of a linear map */
			double fd = 0;
			for (int k = 0; k < K; k++)
				if (dest[t * K + k] >= 0)
					fd += dyp[(size_t)dest[t * K + k] * H + h];
			bad += !(fabs(dx[(size_t)t * H + h] - fd) <= 1e-6 * fabs(fd) + 1e-30);
		}
	EXPECT_INT(bad, 0);
	/* and a true FD through the twin permute for a few entries */
	act_t *x = xcalloc((size_t)T + 1, H * sizeof(act_t)), *xp = xcalloc((size_t)R + 1, H * sizeof(act_t));
	bad = 0;
	for (int s = 0; s < 10 && T > 0; s++) {
		const int t = rng_int(T), h = rng_int(H);
		double L[2];
		for (int sign = 0; sign < 2; sign++) {
			memset(x, 0, (size_t)T * H * sizeof(act_t));
			x[(size_t)t * H + h] = sign ? -0.5f : 0.5f;
			mi->permute(x, dest, xp, T);
			L[sign] = 0;
			for (int k = 0; k < K; k++)
				if (dest[t * K + k] >= 0)
					L[sign] += (double)dyp[(size_t)dest[t * K + k] * H + h] * xp[(size_t)dest[t * K + k] * H + h];
		}
		const double fd = (L[0] - L[1]) / 1.0;
		bad += !(fabs(dx[(size_t)t * H + h] - fd) <= 1e-6 * fabs(fd) + 1e-30);
	}
	EXPECT_INT(bad, 0);
	free(ids), free(dest), free(row_src), free(counts), free(offsets), free(w), free(yp), free(y), free(dy),
		free(dyp), free(dx), free(dw), free(wd), free(ypd), free(x), free(xp);
}

static void test_combine(void)
{
	static const int Ts[] = {0, 1, 33, 300};
	for (int m = 0; m < NELEM(moes); m++)
		for (int ti = 0; ti < NELEM(Ts); ti++) {
			rng_seed(4000 + 10 * m + ti);
			check_combine(moes[m], Ts[ti]);
		}
}

int main(void)
{
	test_router_forward();
	test_router_tie_rule();
	test_router_backward();
	test_dispatch();
	test_capacity_by_hand();
	test_combine();
	return testing_report();
}

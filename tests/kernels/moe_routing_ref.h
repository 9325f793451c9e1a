/* moe_routing_ref.h - what the MoE routing twin tests share: the instance descriptors that
 * moe_routing_twins.h fills, a seeded RNG, plain double-precision references for the router
 * and the dispatch, and a runner for the twin dispatch pipeline. Include after moec_host.h
 * (act_t must be defined) and testing.h; once per test executable.
 *
 * T = tokens, E = routed experts, K = top-k, H = hidden, pair p = t*K + k. */
#ifndef MOE_ROUTING_REF_H
#define MOE_ROUTING_REF_H

#include <stdint.h>
#include <stdlib.h>

struct router_inst {
	const char *name;
	int E, K, sigmoid, norm;
	float scale;
	int n_group, topk_group;
	void (*fwd)(const float *logits, const float *bias, int *topk_ids, float *topk_w, float *prob_sum,
		    int *sel_count, int *expert_count, float *z_sum, void *ws, int rows);
	void (*bwd)(const float *logits, const int *topk_ids, const float *dtopk_w, const float *dprob_sum,
		    float dz_sum, float *dlogits, int rows);
};

struct moe_inst {
	const char *name;
	int E, K, H, capacity, drop_policy;
	void (*count)(const int *topk_ids, int *blk_count, int rows);
	void (*scan)(int *blk_count, int *counts, int *offsets, int *n_dropped, int rows);
	void (*route)(const int *topk_ids, const int *blk_base, const int *counts, const int *offsets, int *dest,
		      int *row_src, int *pair_scratch, int rows);
	void (*capacity_sel)(const float *topk_w, const int *counts, const int *offsets, const int *pair_scratch,
			     int *dest, int *row_src); /* NULL unless CAPACITY > 0 and DROP_POLICY 1 */
	void (*permute)(const act_t *x, const int *dest, act_t *x_perm, int rows);
	void (*permute_bwd)(const act_t *dx_perm, const int *dest, act_t *dx, int rows);
	void (*combine)(const act_t *y_perm, const int *dest, const float *topk_w, act_t *y, int rows);
	void (*combine_bwd)(const act_t *dy, const act_t *y_perm, const int *dest, const float *topk_w,
			    act_t *dy_perm, float *dtopk_w, int rows);
};

/* ---- deterministic RNG (xorshift64*) ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline void rng_seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ull + 1; }
static inline uint64_t rng_u64(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}
static inline double rng_uniform(void) { return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0); }
static inline int rng_int(int n) { return (int)(rng_u64() % (uint64_t)n); }
static inline double rng_normal(void)
{
	double u = rng_uniform(), v = rng_uniform();
	if (u < 1e-300)
		u = 1e-300;
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
static inline void rng_perm(int *a, int n)
{
	for (int i = 0; i < n; i++)
		a[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = rng_int(i + 1), t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static inline void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* |got - want| <= rel * |want| + abs_tol, counted as one expectation per array. */
static inline int near_all(const char *what, const float *got, const double *want, size_t n, double rel, double abs_tol)
{
	size_t bad = 0, first = 0;
	for (size_t i = 0; i < n; i++) {
		if (!(fabs((double)got[i] - want[i]) <= rel * fabs(want[i]) + abs_tol)) {
			if (!bad)
				first = i;
			bad++;
		}
	}
	if (bad)
		fprintf(stderr, "  %s: %zu of %zu differ, first [%zu] got %.9g want %.9g\n", what, bad, n, first,
			(double)got[first], want[first]);
	return bad == 0;
}

/* ---- reference router (double) ---- */
#define REF_MAX_E 1024

/* One token. l [E] logits; outputs ids [K], w [K] (normalized and scaled), prob [E] (the
 * statistic's probability), *lse. Tie rule: larger choice first, then the lower index. */
static inline void ref_router_token(const struct router_inst *ri, const double *l, const float *bias, int *ids, double *w,
			     double *prob, double *lse)
{
	const int E = ri->E, K = ri->K;
	double sc[REF_MAX_E], ch[REF_MAX_E];
	int elig[REF_MAX_E];
	double m = l[0];
	for (int e = 1; e < E; e++)
		m = fmax(m, l[e]);
	double se = 0;
	for (int e = 0; e < E; e++)
		se += exp(l[e] - m);
	*lse = m + log(se);
	if (ri->sigmoid) {
		double ss = 0;
		for (int e = 0; e < E; e++) {
			sc[e] = 1.0 / (1.0 + exp(-l[e]));
			ss += sc[e];
		}
		for (int e = 0; e < E; e++)
			prob[e] = sc[e] / (ss + 1e-20);
	} else {
		for (int e = 0; e < E; e++)
			prob[e] = sc[e] = exp(l[e] - m) / se;
	}
	for (int e = 0; e < E; e++) {
		ch[e] = sc[e] + (bias ? (double)bias[e] : 0.0);
		elig[e] = 1;
	}
	if (ri->n_group > 1) {
		const int G = E / ri->n_group;
		double gs[32];
		int keep[32] = {0};
		for (int g = 0; g < ri->n_group; g++) {
			/* sum of the two largest: sort the group's choices */
			double a = -INFINITY, b = -INFINITY;
			for (int e = g * G; e < (g + 1) * G; e++) {
				if (ch[e] > a) {
					b = a;
					a = ch[e];
				} else if (ch[e] > b) {
					b = ch[e];
				}
			}
			gs[g] = a + b;
		}
		for (int r = 0; r < ri->topk_group; r++) {
			int bi = -1;
			for (int g = 0; g < ri->n_group; g++)
				if (!keep[g] && (bi < 0 || gs[g] > gs[bi]))
					bi = g;
			keep[bi] = 1;
		}
		for (int e = 0; e < E; e++)
			elig[e] = keep[e / G];
	}
	double sum = 0;
	for (int k = 0; k < K; k++) {
		int best = -1;
		for (int e = 0; e < E; e++)
			if (elig[e] && (best < 0 || ch[e] > ch[best]))
				best = e;
		elig[best] = 0;
		ids[k] = best;
		w[k] = sc[best];
		sum += w[k];
	}
	for (int k = 0; k < K; k++) {
		if (ri->norm)
			w[k] /= ri->sigmoid ? sum + 1e-20 : sum;
		w[k] *= ri->scale;
	}
}

/* ---- reference dispatch ---- */
struct ref_pair {
	float w;
	int t, p;
};
static inline int ref_pair_cmp(const void *a, const void *b) /* higher w first, then earlier token */
{
	const struct ref_pair *x = a, *y = b;
	if (x->w != y->w)
		return x->w > y->w ? -1 : 1;
	return x->t - y->t;
}

/* dest [T*K], row_src [T*K], counts [E], offsets [E+1] (caller-allocated); returns drops. */
static inline int ref_dispatch(int E, int K, int cap, int policy, const int *ids, const float *w, int T, int *dest,
			int *row_src, int *counts, int *offsets)
{
	struct ref_pair *list = xcalloc((size_t)T * K, sizeof *list);
	int *keep = xcalloc((size_t)T * K, sizeof *keep);
	int drops = 0, row = 0;
	for (int p = 0; p < T * K; p++)
		dest[p] = -1;
	for (int e = 0; e < E; e++) {
		int n = 0;
		for (int t = 0; t < T; t++)
			for (int k = 0; k < K; k++)
				if (ids[t * K + k] == e) {
					list[n].w = w[t * K + k];
					list[n].t = t;
					list[n].p = t * K + k;
					n++;
				}
		counts[e] = n;
		offsets[e] = row;
		for (int i = 0; i < n; i++)
			keep[i] = 1;
		if (cap > 0 && n > cap) {
			drops += n - cap;
			if (policy == 2) {
				for (int i = cap; i < n; i++)
					keep[i] = 0;
			} else {
				/* sort a copy by priority, mark the losers, list stays in token order */
				struct ref_pair *s = xcalloc((size_t)n, sizeof *s);
				memcpy(s, list, (size_t)n * sizeof *s);
				qsort(s, (size_t)n, sizeof *s, ref_pair_cmp);
				for (int i = cap; i < n; i++)
					for (int j = 0; j < n; j++)
						if (list[j].p == s[i].p)
							keep[j] = 0;
				free(s);
			}
		}
		for (int i = 0; i < n; i++) {
			if (!keep[i])
				continue;
			dest[list[i].p] = row;
			row_src[row] = list[i].p;
			row++;
		}
	}
	offsets[E] = row;
	free(list);
	free(keep);
	return drops;
}

/* Token routes: K distinct experts per token, skewed so some experts get many tokens and
 * those with e % 5 == 3 (when E allows) none; masked tokens (every 7th when `masked`) get
 * -1 ids. Weights drawn from few values when `tied` (ties for the low_prob policy). */
static inline void gen_routes(int E, int K, int T, int masked, int tied, int *ids, float *w)
{
	const int skip = E - (E + 1) / 5 >= K; /* can we leave experts unused? */
	for (int t = 0; t < T; t++) {
		for (int k = 0; k < K; k++) {
			int e;
			for (;;) {
				double u = rng_uniform();
				e = (int)(u * u * E); /* skew toward low experts */
				if (skip && e % 5 == 3)
					continue;
				int dup = 0;
				for (int j = 0; j < k; j++)
					dup |= ids[t * K + j] == e;
				if (!dup)
					break;
			}
			ids[t * K + k] = e;
			w[t * K + k] = tied ? (float)(1 + rng_int(4)) * 0.125f : (float)(0.05 + rng_uniform());
		}
		if (masked && t % 7 == 3)
			for (int k = 0; k < K; k++)
				ids[t * K + k] = -1;
	}
}

/* The twin dispatch pipeline, as the trainer runs it. Outputs are caller-allocated:
 * dest [T*K], row_src [T*K], counts [E], offsets [E+1]; returns n_dropped. Poisons dest and
 * row_src first so that an unwritten entry shows. */
static inline int run_dispatch(const struct moe_inst *mi, const int *ids, const float *w, int T, int *dest, int *row_src,
			int *counts, int *offsets)
{
	const int nblk = (T + 255) / 256;
	int *blk = xcalloc((size_t)nblk * mi->E, sizeof(int));
	int *scratch = xcalloc((size_t)T * mi->K, sizeof(int));
	int ndrop = -1;
	for (int p = 0; p < T * mi->K; p++)
		dest[p] = row_src[p] = 0x7fffffff;
	mi->count(ids, blk, T);
	mi->scan(blk, counts, offsets, &ndrop, T);
	mi->route(ids, blk, counts, offsets, dest, row_src, scratch, T);
	if (mi->capacity_sel)
		mi->capacity_sel(w, counts, offsets, scratch, dest, row_src);
	free(blk);
	free(scratch);
	return ndrop;
}

#endif

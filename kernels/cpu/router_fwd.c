// router_fwd.c - CPU twin of router_fwd.cu: scores, (group-limited) top-k, renorm and scale,
// and the balance-loss and z-loss statistics.
// moec: constants E K ROUTER_SIGMOID NORM_TOPK ROUTED_SCALE N_GROUP TOPK_GROUP
// moec: launch grid=(max(1, ceil(rows/64))) block=(256)
//
// T = rows, E = routed experts, K = top-k
// Shapes: logits [T, E] float, bias [E] float or NULL, topk_ids [T, K] int, topk_w [T, K]
// float, prob_sum [E] float, sel_count [K, E] int, expert_count [E] int, z_sum [1] float,
// ws: the GPU kernel's workspace, unused here (may be NULL).
// Semantics, tie rules and statistics: see router_fwd.cu; this twin computes the same values
// (picks identical up to float rounding differences in exp between CPU and GPU; statistics
// accumulated in double, so they differ from the GPU's fixed-point sums in the last bits).
#include "moec_host.h"

_Static_assert(K >= 1 && K <= 32 && K <= E, "router_fwd: need 1 <= K <= min(32, E)");
_Static_assert(N_GROUP >= 1 && E % N_GROUP == 0, "router_fwd: E must be a multiple of N_GROUP");
_Static_assert(N_GROUP <= 32 && TOPK_GROUP >= 1 && TOPK_GROUP <= N_GROUP, "router_fwd: bad TOPK_GROUP");
_Static_assert(N_GROUP == 1 || E / N_GROUP >= 2, "router_fwd: a group score is a top-2 sum");
_Static_assert(N_GROUP == 1 || TOPK_GROUP * (E / N_GROUP) >= K, "router_fwd: kept groups must hold K experts");

void MOEC_KERNEL_CPU(const float *logits, const float *bias, int *topk_ids, float *topk_w, float *prob_sum,
		     int *sel_count, int *expert_count, float *z_sum, void *ws, int rows)
{
	(void)ws;
	double psum[E], zsum = 0.0;
	float sc[E], ch[E];
	unsigned char elig[E];
	for (int e = 0; e < E; e++)
		psum[e] = 0.0;
	for (int i = 0; i < K * E; i++)
		sel_count[i] = 0;

	for (int t = 0; t < rows; t++) {
		const float *l = logits + (size_t)t * E;
		float m = l[0];
		for (int e = 1; e < E; e++)
			m = fmaxf(m, l[e]);
		float se = 0.f;
		for (int e = 0; e < E; e++) {
			sc[e] = expf(l[e] - m);
			se += sc[e];
		}
		const float lse = m + logf(se);
		zsum += (double)lse * lse;
#if ROUTER_SIGMOID
		float ss = 0.f;
		for (int e = 0; e < E; e++) {
			sc[e] = 1.f / (1.f + expf(-l[e]));
			ss += sc[e];
		}
		ss += 1e-20f;
		for (int e = 0; e < E; e++)
			psum[e] += sc[e] / ss;
#else
		for (int e = 0; e < E; e++) {
			sc[e] = sc[e] / se;
			psum[e] += sc[e];
		}
#endif
		for (int e = 0; e < E; e++) {
			ch[e] = sc[e] + (bias ? bias[e] : 0.f);
			elig[e] = 1;
		}
#if N_GROUP > 1
		{
			enum { G = E / N_GROUP };
			float gs[N_GROUP];
			for (int g = 0; g < N_GROUP; g++) {
				float t1 = -INFINITY, t2 = -INFINITY;
				for (int e = g * G; e < g * G + G; e++) {
					if (ch[e] > t1) {
						t2 = t1;
						t1 = ch[e];
					} else if (ch[e] > t2) {
						t2 = ch[e];
					}
				}
				gs[g] = t1 + t2;
			}
			unsigned int gmask = 0;
			for (int r = 0; r < TOPK_GROUP; r++) {
				int bi = -1;
				for (int g = 0; g < N_GROUP; g++)
					if (!(gmask >> g & 1) && (bi < 0 || gs[g] > gs[bi]))
						bi = g;
				gmask |= 1u << bi;
			}
			for (int e = 0; e < E; e++)
				if (!(gmask >> (e / G) & 1))
					elig[e] = 0;
		}
#endif
		int *ids = topk_ids + (size_t)t * K;
		float *w = topk_w + (size_t)t * K;
		float wsum = 0.f;
		for (int k = 0; k < K; k++) {
			int best = -1;
			for (int e = 0; e < E; e++)
				if (elig[e] && (best < 0 || ch[e] > ch[best]))
					best = e;
			elig[best] = 0;
			ids[k] = best;
			w[k] = sc[best];
			wsum += w[k];
			(void)wsum; /* used by NORM_TOPK only */
			sel_count[k * E + best]++;
		}
		for (int k = 0; k < K; k++) {
#if NORM_TOPK && ROUTER_SIGMOID
			w[k] = w[k] / (wsum + 1e-20f);
#elif NORM_TOPK
			w[k] = w[k] / wsum;
#endif
			w[k] *= ROUTED_SCALE;
		}
	}

	for (int e = 0; e < E; e++) {
		prob_sum[e] = (float)psum[e];
		int c = 0;
		for (int k = 0; k < K; k++)
			c += sel_count[k * E + e];
		expert_count[e] = c;
	}
	*z_sum = (float)zsum;
}

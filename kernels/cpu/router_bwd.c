// router_bwd.c - CPU twin of router_bwd.cu: d(loss)/d(router logits) through the routing
// weights (top-k renorm and scale), the balance-loss statistics and the z-loss.
// moec: constants E K ROUTER_SIGMOID NORM_TOPK ROUTED_SCALE
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// T = rows, E = routed experts, K = top-k
// Shapes: logits [T, E] float, topk_ids [T, K] int, dtopk_w [T, K] float, dprob_sum [E] float
// or NULL, dz_sum scalar, dlogits [T, E] float (overwritten).
// What the host passes as dprob_sum and dz_sum, and the math: see router_bwd.cu.
#include "moec_host.h"

_Static_assert(K >= 1 && K <= 32 && K <= E, "router_bwd: need 1 <= K <= min(32, E)");

void MOEC_KERNEL_CPU(const float *logits, const int *topk_ids, const float *dtopk_w, const float *dprob_sum,
		     float dz_sum, float *dlogits, int rows)
{
	float p[E], ds[E];
#if ROUTER_SIGMOID
	float s[E];
#else
	float *s = p;  // softmax router: the score is the probability
	(void)s;
#endif
	for (int t = 0; t < rows; t++) {
		const float *l = logits + (size_t)t * E;
		const int *ids = topk_ids + (size_t)t * K;
		float *dl = dlogits + (size_t)t * E;
		float m = l[0];
		for (int e = 1; e < E; e++)
			m = fmaxf(m, l[e]);
		float se = 0.f;
		for (int e = 0; e < E; e++) {
			p[e] = expf(l[e] - m);
			se += p[e];
		}
		const float lse = m + logf(se);
		for (int e = 0; e < E; e++)
			p[e] = p[e] / se;
#if ROUTER_SIGMOID
		for (int e = 0; e < E; e++)
			s[e] = 1.f / (1.f + expf(-l[e]));
#endif
		for (int e = 0; e < E; e++)
			ds[e] = 0.f;
#if NORM_TOPK
		float a = 0.f, c = 0.f;
		for (int k = 0; k < K; k++) {
			a += s[ids[k]];
			c += dtopk_w[(size_t)t * K + k] * ROUTED_SCALE * s[ids[k]];
		}
#if ROUTER_SIGMOID
		const float D = a + 1e-20f;
#else
		const float D = a;
#endif
		const float dot = c / D;
		for (int k = 0; k < K; k++)
			ds[ids[k]] = (dtopk_w[(size_t)t * K + k] * ROUTED_SCALE - dot) / D;
#else
		for (int k = 0; k < K; k++)
			ds[ids[k]] = dtopk_w[(size_t)t * K + k] * ROUTED_SCALE;
#endif
		if (dprob_sum) {
#if ROUTER_SIGMOID
			float sa = 0.f;
			for (int e = 0; e < E; e++)
				sa += s[e];
			const float Da = sa + 1e-20f;
			float c2 = 0.f;
			for (int e = 0; e < E; e++)
				c2 += dprob_sum[e] * (s[e] / Da);
			for (int e = 0; e < E; e++)
				ds[e] += (dprob_sum[e] - c2) / Da;
#else
			for (int e = 0; e < E; e++)
				ds[e] += dprob_sum[e];
#endif
		}
		const float zc = 2.f * dz_sum * lse;
#if ROUTER_SIGMOID
		for (int e = 0; e < E; e++)
			dl[e] = ds[e] * s[e] * (1.f - s[e]) + zc * p[e];
#else
		float c3 = 0.f;
		for (int e = 0; e < E; e++)
			c3 += p[e] * ds[e];
		for (int e = 0; e < E; e++)
			dl[e] = p[e] * (ds[e] - c3) + zc * p[e];
#endif
	}
}

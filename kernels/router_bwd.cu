// router_bwd.cu - MoE router backward: d(loss)/d(router logits) through the routing weights
// (top-k renorm and scale), the balance-loss statistics and the z-loss.
// moec: constants E K ROUTER_SIGMOID NORM_TOPK ROUTED_SCALE
// moec: launch grid=(ceil(rows/8)) block=(256)
//
// T = rows, E = routed experts, K = top-k
// Shapes: logits [T, E] float (the forward's input), topk_ids [T, K] int (the forward's
// picks), dtopk_w [T, K] float (d loss / d topk_w, from moe_combine_bwd; 0 for dropped pairs),
// dprob_sum [E] float or NULL, dz_sum scalar, dlogits [T, E] float (overwritten).
//
// The selection (top-k, groups, selection bias) is piecewise constant: no gradient flows
// through it, and the picks are read from topk_ids rather than recomputed. The scores are
// recomputed from the logits (E floats per token: cheaper than saving them).
//
// Loss terms and what the host passes (router_fwd.cu defines prob_sum, sel_count, z_sum):
//   routing weights: dtopk_w.
//   balance loss, HF Qwen3-MoE semantics (aux over ALL MoE layers' rows concatenated):
//     R = rows summed over layers (and micro-batches in the loss), S[e] = sum over layers of
//     prob_sum[e], C[e] = sum over layers and k of sel_count[k][e] (f[k][e] = sel_count/R);
//     aux = E * sum_k sum_e f[k][e] * P[e] = E * sum_e (C[e] / R) * (S[e] / R).
//     f is a count (no gradient), so for every layer
//     dprob_sum[e] = d(coef * aux) / d prob_sum_layer[e] = coef * E * C[e] / R^2.
//     Per-layer scope (Megatron): the same with that layer's C and R.
//     NULL: no balance loss (the kernel skips the term).
//   z-loss (ST-MoE): z = coef_z * (1/R) * sum_t lse_t^2, so dz_sum = coef_z / R (0: none).
// The kernel adds, per token, dprob_sum[e] to d prob[t, e] and dz_sum to d (lse_t^2).
//
// Math per token (s = score, g_k = ROUTED_SCALE * dtopk_w[t, k], S = picked set):
//   NORM_TOPK: w_k = s_k / D, D = sum_S s (+1e-20 sigmoid): ds_k = (g_k - sum_j g_j w_j) / D
//   else:      ds_k = g_k
//   softmax router:  ds += dprob_sum;  dl = p * (ds - sum_e p ds)
//   sigmoid router:  q = s / Da, Da = sum_e s + 1e-20: ds += (dprob_sum - sum_e dprob_sum q) / Da;
//                    dl = ds * s * (1 - s)
//   z: dl += dz_sum * 2 * lse * softmax(l)
// One warp per token; lane owns experts lane + 32*j, as in router_fwd.
#include "moec_device.cuh"

#define RB_EPL ((E + 31) / 32)

static_assert(K >= 1 && K <= 32 && K <= E, "router_bwd: need 1 <= K <= min(32, E)");
static_assert(RB_EPL <= 32, "router_bwd: E <= 1024");

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const float *logits, const int *topk_ids, const float *dtopk_w, const float *dprob_sum,
	    float dz_sum, float *dlogits, int rows)
{
	const int lane = threadIdx.x & 31;
	const int t = blockIdx.x * 8 + (threadIdx.x >> 5);
	if (t >= rows)
		return;  // the whole warp
	const float neg_inf = __int_as_float(0xff800000);

	unsigned int valid = 0;
	float l[RB_EPL];
#pragma unroll
	for (int j = 0; j < RB_EPL; j++) {
		const int e = lane + 32 * j;
		if (e < E)
			valid |= 1u << j;
		l[j] = e < E ? logits[(size_t)t * E + e] : neg_inf;
	}
	int my_id = -1;
	float my_g = 0.f;
	if (lane < K) {
		my_id = topk_ids[(size_t)t * K + lane];
		my_g = dtopk_w[(size_t)t * K + lane] * ROUTED_SCALE;
	}

	float m = neg_inf;
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		m = fmaxf(m, l[j]);
	m = warp_max(m);
	float p[RB_EPL], se = 0.f;
#pragma unroll
	for (int j = 0; j < RB_EPL; j++) {
		p[j] = (valid >> j & 1) ? expf(l[j] - m) : 0.f;
		se += p[j];
	}
	se = warp_sum(se);
	const float lse = m + logf(se);
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		p[j] = p[j] / se;
#if ROUTER_SIGMOID
	float s[RB_EPL];
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		s[j] = (valid >> j & 1) ? 1.f / (1.f + expf(-l[j])) : 0.f;
#else
	float (&s)[RB_EPL] = p;  // softmax router: the score is the probability
	(void)s;                 // read only by the NORM_TOPK and sigmoid paths
#endif

	// ds starts as g on the picked experts.
	float ds[RB_EPL];
	unsigned int sel = 0;
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		ds[j] = 0.f;
#pragma unroll
	for (int k = 0; k < K; k++) {
		const int id = __shfl_sync(0xffffffffu, my_id, k);
		const float g = __shfl_sync(0xffffffffu, my_g, k);
#pragma unroll
		for (int j = 0; j < RB_EPL; j++) {
			if (lane + 32 * j == id) {
				ds[j] = g;
				sel |= 1u << j;
			}
		}
	}
#if NORM_TOPK
	float a = 0.f, c = 0.f;
#pragma unroll
	for (int j = 0; j < RB_EPL; j++) {
		if (sel >> j & 1) {
			a += s[j];
			c += ds[j] * s[j];
		}
	}
	a = warp_sum(a);
	c = warp_sum(c);
#if ROUTER_SIGMOID
	const float D = a + 1e-20f;
#else
	const float D = a;
#endif
	const float dot = c / D;
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		ds[j] = (sel >> j & 1) ? (ds[j] - dot) / D : 0.f;
#else
	(void)sel;  // without renormalization ds is g on the picks, 0 elsewhere
#endif

	if (dprob_sum) {  // warp-uniform
		float dq[RB_EPL];
#pragma unroll
		for (int j = 0; j < RB_EPL; j++)
			dq[j] = (valid >> j & 1) ? dprob_sum[lane + 32 * j] : 0.f;
#if ROUTER_SIGMOID
		float sa = 0.f;
#pragma unroll
		for (int j = 0; j < RB_EPL; j++)
			sa += s[j];
		const float Da = warp_sum(sa) + 1e-20f;
		float c2 = 0.f;
#pragma unroll
		for (int j = 0; j < RB_EPL; j++)
			c2 += dq[j] * (s[j] / Da);
		c2 = warp_sum(c2);
#pragma unroll
		for (int j = 0; j < RB_EPL; j++)
			ds[j] += (dq[j] - c2) / Da;
#else
#pragma unroll
		for (int j = 0; j < RB_EPL; j++)
			ds[j] += dq[j];
#endif
	}

	float dl[RB_EPL];
#if ROUTER_SIGMOID
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		dl[j] = ds[j] * s[j] * (1.f - s[j]);
#else
	float c3 = 0.f;
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		c3 += p[j] * ds[j];
	c3 = warp_sum(c3);
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		dl[j] = p[j] * (ds[j] - c3);
#endif
	const float zc = 2.f * dz_sum * lse;
#pragma unroll
	for (int j = 0; j < RB_EPL; j++)
		if (valid >> j & 1)
			dlogits[(size_t)t * E + lane + 32 * j] = dl[j] + zc * p[j];
}

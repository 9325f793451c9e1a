// router_fwd.cu - MoE router: scores, (group-limited) top-k, renorm and scale, and the
// balance-loss and z-loss statistics, in one pass over the router logits.
// moec: constants E K ROUTER_SIGMOID NORM_TOPK ROUTED_SCALE N_GROUP TOPK_GROUP
// moec: launch grid=(max(1, ceil(rows/64))) block=(256)
//
// T = rows (tokens of the micro-batch on this rank), E = routed experts, K = top-k
// Shapes: logits [T, E] float (x @ W_gate^T, computed by a GEMM outside), bias [E] float or
// NULL, topk_ids [T, K] int, topk_w [T, K] float, prob_sum [E] float, sel_count [K, E] int,
// expert_count [E] int, z_sum [1] float, ws: the workspace described below.
//
// Per token (HF Qwen3-MoE / Mixtral: ROUTER_SIGMOID=0, N_GROUP=1, bias NULL;
// DeepSeek-V3 noaux_tc: ROUTER_SIGMOID=1, N_GROUP=8, TOPK_GROUP=4, bias = e_score_correction_bias):
//   score[e]  = softmax(logits[t])[e] in fp32             (ROUTER_SIGMOID=0)
//             = sigmoid(logits[t, e])                    (ROUTER_SIGMOID=1)
//   choice[e] = score[e] + (bias ? bias[e] : 0): the bias steers the selection only; the
//               weights below come from the unbiased score.
//   N_GROUP > 1: experts form N_GROUP contiguous groups of E/N_GROUP; a group's score is the
//               sum of its two largest choices; only the TOPK_GROUP best groups stay eligible
//               (DeepSeek's official code masks the others with -inf, as here).
//   topk_ids[t, 0..K-1] = the K eligible experts with the largest choice, in decreasing order;
//               ties go to the lower expert index (groups too), so the result is deterministic.
//   w_k = score[id_k]; NORM_TOPK: w_k /= sum_k w_k (+ 1e-20 for sigmoid, as DeepSeek; none for
//               softmax, as HF); topk_w[t, k] = ROUTED_SCALE * w_k.
// Statistics over the T rows, overwritten by every launch (the host sums layers/micro-batches):
//   prob_sum[e]     = sum_t prob[t, e]; prob = the softmax for a softmax router, and for a
//                     sigmoid router sigmoid / (sum_e sigmoid + 1e-20) (Megatron's aux scores)
//   sel_count[k, e] = number of rows whose k-th choice is e (HF's f[k][e] times rows)
//   expert_count[e] = sum_k sel_count[k, e] (rows routed to e, before any capacity drop)
//   z_sum           = sum_t logsumexp(logits[t])^2 (ST-MoE z-loss numerator; any router)
// router_bwd.cu says how the host turns them into the loss gradients it takes.
//
// Determinism: bitwise reproducible for a given input. Each warp owns 8 consecutive tokens and
// each block reduces its 64 tokens in a fixed order; the block then adds its per-expert
// probability sums into 64-bit fixed-point (2^-32) integer accumulators (integer atomics
// commute, float atomics would not), its selection counts into int accumulators and its z
// partial into its own slot; the last block to finish (a counter) converts and writes the
// outputs and returns the accumulators to zero.
//
// ws: 8-byte aligned, zero-filled ONCE when allocated; every launch leaves it zero again.
// One ws per launch that may run concurrently (e.g. per stream). Layout:
//   unsigned long long prob_acc[E] | int cnt_acc[K*E] | unsigned int done | float zpart[nblk]
//   bytes = 8*E + 4*K*E + 4 + 4*nblk, nblk = max(1, ceil(rows/64)) (size it for the largest rows)
// With rows = 0 the single block writes zero statistics and no token output.
//
// Layout inside a warp: lane owns experts lane + 32*j, j < EPL, so loads are coalesced and
// every per-expert value lives in registers indexed by compile-time j only (no local memory).
// The k-th pick is two warp reductions (redux.sync, sm_80+): the largest order-preserving key,
// then the smallest expert index holding it.
#include "moec_device.cuh"

#define RF_WARPS 8
#define RF_TOK_PER_WARP 8
#define RF_TOK_PER_BLOCK (RF_WARPS * RF_TOK_PER_WARP)
#define RF_EPL ((E + 31) / 32)
#define RF_GSIZE (E / N_GROUP)
#define RF_NONE 0xffffffffu

static_assert(K >= 1 && K <= 32 && K <= E, "router_fwd: need 1 <= K <= min(32, E)");
static_assert(N_GROUP >= 1 && E % N_GROUP == 0, "router_fwd: E must be a multiple of N_GROUP");
static_assert(N_GROUP <= 32 && TOPK_GROUP >= 1 && TOPK_GROUP <= N_GROUP, "router_fwd: bad TOPK_GROUP");
static_assert(N_GROUP == 1 || RF_GSIZE >= 2, "router_fwd: a group score is a top-2 sum");
static_assert(N_GROUP == 1 || TOPK_GROUP * RF_GSIZE >= K, "router_fwd: kept groups must hold K experts");
static_assert(RF_EPL <= 32, "router_fwd: E <= 1024");
static_assert((K * E + RF_WARPS * E) * 4 + 64 <= 48 * 1024, "router_fwd: static smem (K + 8) * E * 4 bytes over 48 KB");

// Maps a float to an unsigned int with the same order (for non-NaN values).
__device__ __forceinline__ unsigned int rf_order_key(float f)
{
	unsigned int u = __float_as_uint(f);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const float *logits, const float *bias, int *topk_ids, float *topk_w, float *prob_sum,
	    int *sel_count, int *expert_count, float *z_sum, void *ws, int rows)
{
	__shared__ int s_cnt[K * E];           // this block's selections per (k, e)
	__shared__ float s_prob[RF_WARPS][E];  // per-warp probability sums
	__shared__ float s_z[RF_WARPS];
	__shared__ unsigned int s_last;

	unsigned long long *prob_acc = (unsigned long long *)ws;
	int *cnt_acc = (int *)(prob_acc + E);
	unsigned int *done = (unsigned int *)(cnt_acc + K * E);
	float *zpart = (float *)(done + 1);

	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const float neg_inf = __int_as_float(0xff800000);

	for (int i = tid; i < K * E; i += blockDim.x)
		s_cnt[i] = 0;
	__syncthreads();

	unsigned int valid = 0;     // bit j: expert lane + 32j exists
	float b[RF_EPL], acc[RF_EPL], nl[RF_EPL];
#pragma unroll
	for (int j = 0; j < RF_EPL; j++) {
		const int e = lane + 32 * j;
		if (e < E)
			valid |= 1u << j;
		acc[j] = 0.f;
		b[j] = (bias && e < E) ? bias[e] : 0.f;
	}
	float zacc = 0.f;

	const int t0 = blockIdx.x * RF_TOK_PER_BLOCK + warp * RF_TOK_PER_WARP;
	// Software pipelining: the next token's logits are in flight while this one is processed.
#pragma unroll
	for (int j = 0; j < RF_EPL; j++)
		nl[j] = (t0 < rows && (valid >> j & 1)) ? logits[(size_t)t0 * E + lane + 32 * j] : neg_inf;

	for (int i = 0; i < RF_TOK_PER_WARP; i++) {
		const int t = t0 + i;
		if (t >= rows)
			break;  // warp-uniform
		float l[RF_EPL];
#pragma unroll
		for (int j = 0; j < RF_EPL; j++) {
			l[j] = nl[j];
			nl[j] = (i + 1 < RF_TOK_PER_WARP && t + 1 < rows && (valid >> j & 1))
					? logits[(size_t)(t + 1) * E + lane + 32 * j] : neg_inf;
		}

		// Softmax pieces (the z-loss needs logsumexp whatever the router).
		float m = neg_inf;
#pragma unroll
		for (int j = 0; j < RF_EPL; j++)
			m = fmaxf(m, l[j]);
		m = warp_max(m);
		float ex[RF_EPL], se = 0.f;
#pragma unroll
		for (int j = 0; j < RF_EPL; j++) {
			ex[j] = (valid >> j & 1) ? expf(l[j] - m) : 0.f;
			se += ex[j];
		}
		se = warp_sum(se);
		const float lse = m + logf(se);
		if (lane == 0)
			zacc += lse * lse;

		float sc[RF_EPL];  // score: the weight source
#if ROUTER_SIGMOID
		float ss = 0.f;
#pragma unroll
		for (int j = 0; j < RF_EPL; j++) {
			sc[j] = (valid >> j & 1) ? 1.f / (1.f + expf(-l[j])) : 0.f;
			ss += sc[j];
		}
		ss = warp_sum(ss) + 1e-20f;
#pragma unroll
		for (int j = 0; j < RF_EPL; j++)
			acc[j] += sc[j] / ss;
#else
#pragma unroll
		for (int j = 0; j < RF_EPL; j++) {
			sc[j] = ex[j] / se;
			acc[j] += sc[j];
		}
#endif
		float ch[RF_EPL];  // choice: the selection key
#pragma unroll
		for (int j = 0; j < RF_EPL; j++)
			ch[j] = sc[j] + b[j];
		unsigned int elig = valid;

#if N_GROUP > 1
		// Group score = sum of the group's two largest choices (butterfly top-2 merge, so
		// every lane ends with every group score), then keep the TOPK_GROUP best groups.
		float gs[N_GROUP];
#pragma unroll
		for (int g = 0; g < N_GROUP; g++) {
			float t1 = neg_inf, t2 = neg_inf;
#pragma unroll
			for (int j = 0; j < RF_EPL; j++) {
				if ((valid >> j & 1) && (lane + 32 * j) / RF_GSIZE == g) {
					const float v = ch[j];
					if (v > t1) {
						t2 = t1;
						t1 = v;
					} else if (v > t2) {
						t2 = v;
					}
				}
			}
#pragma unroll
			for (int o = 16; o > 0; o >>= 1) {
				const float u1 = __shfl_xor_sync(0xffffffffu, t1, o);
				const float u2 = __shfl_xor_sync(0xffffffffu, t2, o);
				const float second = fmaxf(fminf(t1, u1), fmaxf(t2, u2));
				t1 = fmaxf(t1, u1);
				t2 = second;
			}
			gs[g] = t1 + t2;
		}
		unsigned int gmask = 0;
#pragma unroll
		for (int r = 0; r < TOPK_GROUP; r++) {
			int bi = -1;
			float bv = 0.f;
#pragma unroll
			for (int g = 0; g < N_GROUP; g++) {
				if (!(gmask >> g & 1) && (bi < 0 || gs[g] > bv)) {
					bi = g;
					bv = gs[g];
				}
			}
			gmask |= 1u << bi;
		}
#pragma unroll
		for (int j = 0; j < RF_EPL; j++)
			if ((valid >> j & 1) && !(gmask >> ((lane + 32 * j) / RF_GSIZE) & 1))
				elig &= ~(1u << j);
#endif

		// Top-K: K rounds of (largest key, then lowest index); lane k keeps pick k.
		int my_id = 0;
		float my_w = 0.f;
#pragma unroll
		for (int k = 0; k < K; k++) {
			unsigned int bk = 0, be = RF_NONE;
#pragma unroll
			for (int j = 0; j < RF_EPL; j++) {
				const unsigned int key = rf_order_key(ch[j]);
				if ((elig >> j & 1) && (be == RF_NONE || key > bk)) {
					bk = key;
					be = lane + 32 * j;
				}
			}
			const unsigned int gk = __reduce_max_sync(0xffffffffu, bk);
			const unsigned int ge = __reduce_min_sync(0xffffffffu, (be != RF_NONE && bk == gk) ? be : RF_NONE);
			float wv = 0.f;
#pragma unroll
			for (int j = 0; j < RF_EPL; j++) {
				if ((unsigned int)(lane + 32 * j) == ge) {
					elig &= ~(1u << j);
					wv = sc[j];
				}
			}
			const float w = __shfl_sync(0xffffffffu, wv, ge & 31);
			if (lane == k) {
				my_id = (int)ge;
				my_w = w;
			}
			if (lane == 0)
				atomicAdd(&s_cnt[k * E + ge], 1);
		}
#if NORM_TOPK
		const float wsum = warp_sum(lane < K ? my_w : 0.f);
#if ROUTER_SIGMOID
		my_w = my_w / (wsum + 1e-20f);
#else
		my_w = my_w / wsum;
#endif
#endif
		if (lane < K) {
			topk_ids[(size_t)t * K + lane] = my_id;
			topk_w[(size_t)t * K + lane] = my_w * ROUTED_SCALE;
		}
	}

	// Block reduction in a fixed order, then the fixed-point / integer accumulators.
#pragma unroll
	for (int j = 0; j < RF_EPL; j++)
		if (valid >> j & 1)
			s_prob[warp][lane + 32 * j] = acc[j];
	if (lane == 0)
		s_z[warp] = zacc;
	__syncthreads();
	for (int e = tid; e < E; e += blockDim.x) {
		float v = 0.f;
#pragma unroll
		for (int w = 0; w < RF_WARPS; w++)
			v += s_prob[w][e];
		if (v != 0.f)
			atomicAdd(&prob_acc[e], (unsigned long long)((double)v * 4294967296.0));
	}
	for (int i = tid; i < K * E; i += blockDim.x)
		if (s_cnt[i])
			atomicAdd(&cnt_acc[i], s_cnt[i]);
	if (tid == 0) {
		float z = 0.f;
#pragma unroll
		for (int w = 0; w < RF_WARPS; w++)
			z += s_z[w];
		zpart[blockIdx.x] = z;
	}
	__threadfence();
	__syncthreads();
	if (tid == 0)
		s_last = atomicAdd(done, 1u) == gridDim.x - 1;
	__syncthreads();
	if (!s_last)
		return;

	// The last block: every other block's atomics and zpart stores are visible now.
	__threadfence();
	for (int e = tid; e < E; e += blockDim.x)
		prob_sum[e] = (float)((double)atomicExch(&prob_acc[e], 0ull) * (1.0 / 4294967296.0));
	for (int i = tid; i < K * E; i += blockDim.x) {
		const int c = atomicExch(&cnt_acc[i], 0);
		s_cnt[i] = c;
		sel_count[i] = c;
	}
	float z = 0.f;
	for (int bk = tid; bk < (int)gridDim.x; bk += blockDim.x)
		z += __ldcg(&zpart[bk]);
	z = warp_sum(z);
	__syncthreads();
	if (lane == 0)
		s_z[warp] = z;
	__syncthreads();
	for (int e = tid; e < E; e += blockDim.x) {
		int c = 0;
#pragma unroll
		for (int k = 0; k < K; k++)
			c += s_cnt[k * E + e];
		expert_count[e] = c;
	}
	if (tid == 0) {
		float zt = 0.f;
#pragma unroll
		for (int w = 0; w < RF_WARPS; w++)
			zt += s_z[w];
		*z_sum = zt;
		atomicExch(done, 0u);
	}
}

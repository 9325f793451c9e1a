// moe_capacity.cu - low_prob capacity drops: per expert, keep the CAPACITY highest-weight
// pairs, and lay the kept ones out in token order: step 3b of the dispatch (moe_count.cu).
// moec: constants E K CAPACITY
// moec: launch grid=(E) block=(1024), only when CAPACITY > 0 and DROP_POLICY == 1, after moe_route
//
// T = tokens, K = top-k, pair p = t*K + k
// Shapes: topk_w [T, K] float; counts [E], offsets [E+1] int from moe_scan; pair_scratch
// [T*K] int from moe_route (expert e's pairs in token order at [start_e, start_e + counts[e]),
// start_e = sum of counts before e); dest [T, K] int and row_src [offsets[E]] int, as moe_route
// writes them for the other policies (-1 in dest = dropped).
//
// Priority: higher topk_w first, ties to the earlier token (Megatron's "probs" drop policy, made
// deterministic). The 64-bit key (order-preserving bits of w) << 32 | (0xffffffff - t) is unique
// per pair, so block e finds the CAPACITY-th largest key exactly with a radix select (8-bit
// digits from the top, a shared histogram per pass, stopping as soon as the digit's bucket is
// kept whole), then compacts keys >= it in token order (ballot + block scan).
#include "moec_device.cuh"

static_assert(CAPACITY > 0 && K >= 1 && E >= 1, "moe_capacity: only for CAPACITY > 0");

__device__ __forceinline__ unsigned long long mc_key(const float *topk_w, int p)
{
	const unsigned int u = __float_as_uint(topk_w[p]);
	const unsigned int w = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
	return ((unsigned long long)w << 32) | (unsigned long long)(0xffffffffu - (unsigned int)(p / K));
}

extern "C" __global__ void __launch_bounds__(1024)
MOEC_KERNEL(const float *topk_w, const int *counts, const int *offsets, const int *pair_scratch, int *dest,
	    int *row_src)
{
	__shared__ int s_hist[256];
	__shared__ int s_warp[32];
	__shared__ int s_start, s_need, s_digit, s_bucket, s_total;
	__shared__ unsigned long long s_prefix;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int e = blockIdx.x;

	// start_e = sum of the counts before e.
	int part = 0;
	for (int i = tid; i < e; i += 1024)
		part += counts[i];
	part = __reduce_add_sync(0xffffffffu, part);
	if (lane == 0)
		s_warp[warp] = part;
	__syncthreads();
	if (tid == 0) {
		int s = 0;
		for (int w = 0; w < 32; w++)
			s += s_warp[w];
		s_start = s;
		s_need = CAPACITY;
		s_prefix = 0ull;
	}
	__syncthreads();
	const int n = counts[e], base = offsets[e];
	const int *seg = pair_scratch + s_start;

	if (n <= CAPACITY) {  // nothing to drop: rows in token order
		for (int i = tid; i < n; i += 1024) {
			const int p = seg[i];
			dest[p] = base + i;
			row_src[base + i] = p;
		}
		return;
	}

	// Radix select: after each pass, s_prefix holds the selected high digits and s_need the
	// rank (from the top, 1-based) still to find among the keys sharing them.
	for (int shift = 56; shift >= 0; shift -= 8) {
		if (tid < 256)
			s_hist[tid] = 0;
		__syncthreads();
		const unsigned long long prefix = s_prefix;
		const unsigned long long hmask = shift == 56 ? 0ull : ~0ull << (shift + 8);
		for (int i = tid; i < n; i += 1024) {
			const unsigned long long key = mc_key(topk_w, seg[i]);
			if ((key & hmask) == prefix)
				atomicAdd(&s_hist[(key >> shift) & 255], 1);
		}
		__syncthreads();
		if (warp == 0) {  // lane owns digits 8*lane .. 8*lane+7; find where the count from the top reaches need
			const int need = s_need;  // read before the shuffles: the finding lane rewrites it after them
			int h[8], loc = 0;
#pragma unroll
			for (int q = 0; q < 8; q++) {
				h[q] = s_hist[8 * lane + q];
				loc += h[q];
			}
			int suf = loc;  // keys in digits >= 8*lane
#pragma unroll
			for (int o = 1; o < 32; o <<= 1) {
				const int v = __shfl_down_sync(0xffffffffu, suf, o);
				if (lane + o < 32)
					suf += v;
			}
			int above = suf - loc;  // keys in digits >= 8*lane + 8
#pragma unroll
			for (int q = 7; q >= 0; q--) {
				if (above < need && above + h[q] >= need) {
					s_digit = 8 * lane + q;
					s_need = need - above;
					s_bucket = h[q];
				}
				above += h[q];
			}
		}
		__syncthreads();
		const bool whole = s_bucket == s_need;  // every key left in the bucket is kept
		if (tid == 0)
			s_prefix = prefix | ((unsigned long long)s_digit << shift);
		__syncthreads();
		if (whole)
			break;  // block-uniform
	}
	const unsigned long long thr = s_prefix;  // keep iff key >= thr

	// Compaction in token order.
	const unsigned int below = (1u << lane) - 1u;
	int run = 0;
	for (int c = 0; c < n; c += 1024) {
		const int i = c + tid;
		const bool in = i < n;
		const int p = in ? seg[i] : 0;
		const bool keep = in && mc_key(topk_w, p) >= thr;
		const unsigned int bal = __ballot_sync(0xffffffffu, keep);
		if (lane == 0)
			s_warp[warp] = __popc(bal);
		__syncthreads();
		if (warp == 0) {
			const int v = s_warp[lane];
			int inc = v;
#pragma unroll
			for (int o = 1; o < 32; o <<= 1) {
				const int u = __shfl_up_sync(0xffffffffu, inc, o);
				if (lane >= o)
					inc += u;
			}
			s_warp[lane] = inc - v;
			if (lane == 31)
				s_total = inc;
		}
		__syncthreads();
		if (in) {
			if (keep) {
				const int row = base + run + s_warp[warp] + __popc(bal & below);
				dest[p] = row;
				row_src[row] = p;
			} else {
				dest[p] = -1;
			}
		}
		run += s_total;
		__syncthreads();
	}
}

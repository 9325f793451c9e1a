// moe_scan.cu - expert counts, capacity-clipped row offsets, drops, and each token block's
// base rank inside every expert: step 2 of the dispatch (see moe_count.cu).
// moec: constants E CAPACITY
// moec: launch grid=(1) block=(1024)
//
// T = rows, E = routed experts, nblk = ceil(T/256)
// Shapes: blk_count [nblk, E] int: in, moe_count's histograms; out, the exclusive prefix over
// blocks (the rank, inside expert e, of block b's first pair). counts [E] int: pairs routed
// to e (before drops). offsets [E+1] int: exclusive prefix of kept rows per expert, kept =
// min(count, CAPACITY) (CAPACITY 0: dropless, kept = count); offsets[E] = rows of x_perm.
// n_dropped [1] int: pairs dropped by the capacity.
//
// One block: the work is nblk*E integers (128 x 128 at 32k tokens). The 1024 threads split
// blocks into G = 1024/E groups per expert so that many loads are in flight: pass 1 sums each
// group's chunk, pass 2 scans groups per expert, pass 3 rewrites the chunk with running bases.
#include "moec_device.cuh"

#define MS_THREADS 1024
#define MS_GROUPS (E >= MS_THREADS ? 1 : MS_THREADS / E)
#define MS_PER ((E + MS_THREADS - 1) / MS_THREADS)  // experts per thread in the offsets scan

static_assert(E >= 1 && CAPACITY >= 0, "moe_scan: bad E/CAPACITY");
static_assert((MS_GROUPS + 1) * E * 4 + 256 <= 48 * 1024, "moe_scan: static smem over 48 KB");

extern "C" __global__ void __launch_bounds__(MS_THREADS)
MOEC_KERNEL(int *blk_count, int *counts, int *offsets, int *n_dropped, int rows)
{
	__shared__ int s_part[MS_GROUPS * E];
	__shared__ int s_kept[E];
	__shared__ int s_warp[32];
	__shared__ int s_drop;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int nblk = (rows + 255) / 256;
	const int chunk = (nblk + MS_GROUPS - 1) / MS_GROUPS;
	if (tid == 0)
		s_drop = 0;

	for (int i = tid; i < MS_GROUPS * E; i += MS_THREADS) {
		const int g = i / E, e = i - g * E;
		const int b0 = g * chunk, b1 = min(nblk, b0 + chunk);
		int s = 0;
#pragma unroll 4
		for (int b = b0; b < b1; b++)
			s += blk_count[(size_t)b * E + e];
		s_part[i] = s;
	}
	__syncthreads();
	int drop = 0;
	for (int e = tid; e < E; e += MS_THREADS) {
		int run = 0;
		for (int g = 0; g < MS_GROUPS; g++) {
			const int v = s_part[g * E + e];
			s_part[g * E + e] = run;
			run += v;
		}
		counts[e] = run;
		const int kept = CAPACITY > 0 ? min(run, CAPACITY) : run;
		s_kept[e] = kept;
		drop += run - kept;
	}
	if (drop)
		atomicAdd(&s_drop, drop);
	__syncthreads();
	for (int i = tid; i < MS_GROUPS * E; i += MS_THREADS) {
		const int g = i / E, e = i - g * E;
		const int b0 = g * chunk, b1 = min(nblk, b0 + chunk);
		int run = s_part[i];
		for (int b = b0; b < b1; b++) {
			const int c = blk_count[(size_t)b * E + e];
			blk_count[(size_t)b * E + e] = run;
			run += c;
		}
	}

	// offsets = exclusive scan of s_kept: thread-local, then warp, then across warps.
	int loc[MS_PER], sum = 0;
#pragma unroll
	for (int q = 0; q < MS_PER; q++) {
		const int idx = tid * MS_PER + q;
		loc[q] = idx < E ? s_kept[idx] : 0;
		sum += loc[q];
	}
	int inc = sum;
#pragma unroll
	for (int o = 1; o < 32; o <<= 1) {
		const int n = __shfl_up_sync(0xffffffffu, inc, o);
		if (lane >= o)
			inc += n;
	}
	if (lane == 31)
		s_warp[warp] = inc;
	__syncthreads();
	if (warp == 0) {
		const int v = s_warp[lane];
		int wi = v;
#pragma unroll
		for (int o = 1; o < 32; o <<= 1) {
			const int n = __shfl_up_sync(0xffffffffu, wi, o);
			if (lane >= o)
				wi += n;
		}
		s_warp[lane] = wi;  // inclusive over warps
	}
	__syncthreads();
	int excl = inc - sum + (warp ? s_warp[warp - 1] : 0);
#pragma unroll
	for (int q = 0; q < MS_PER; q++) {
		const int idx = tid * MS_PER + q;
		if (idx < E)
			offsets[idx] = excl;
		excl += loc[q];
	}
	if (tid == MS_THREADS - 1) {
		offsets[E] = s_warp[31];
		*n_dropped = s_drop;
	}
}

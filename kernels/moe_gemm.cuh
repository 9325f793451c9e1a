// moe_gemm.cuh - the grouped-GEMM machinery shared by moec's six expert GEMM templates
// (moe_gate_up_fwd, moe_down_fwd, moe_down_bwd_data, moe_gate_up_bwd_data,
// moe_down_bwd_weight, moe_gate_up_bwd_weight): one CTA computes one output tile
//
//     C[BM, BN] = sum_k A[m, k] * B[n, k]      (fp32 accumulators in registers)
//
// and the template's own epilogue stores it. Included after the constant prelude, like
// moec_device.cuh; it reads ACT_BF16, H, I and the tile constants TILE_M TILE_N TILE_K
// STAGES PERSIST (defaults below when the emitter leaves them out).
//
// Legend: E = E_LOCAL experts on this rank, rows = runtime row count of the permuted
// (expert-contiguous) buffer, offsets [E+1] = exclusive prefix sums of rows per expert.
//
// Operands. Each GEMM operand is a logical [R, K] matrix stored one of two ways:
//   K-major  (`kmajor`): element (r, k) at p[row(r) * ld + k]   (x_perm, h, w[n][k], ...)
//   MN-major          : element (r, k) at p[k * ld + row(r)]   (w used as w^T, dy^T, ...)
// and a tile's R rows come in two halves: rows [0, R/2) start at global row r0, rows
// [R/2, R) at r1. A plain tile has r1 = r0 + R/2; the gate/up GEMM points the halves at
// gate rows j0.. and up rows I+j0.. of w_gate_up, so one thread holds gate(m, j) and
// up(m, j) in registers together and SwiGLU fuses into the epilogue. Every engine hands
// out its accumulators as "fragments": tile row r, column c within a half (0 <= c < BN/2,
// c even), and four values: (r, c), (r, c+1) of the first half, (r, BN/2+c), (r, BN/2+c+1)
// of the second.
//
// Three engines with the same interface (run(), NFRAG, frag(); run() = prefetch() then
// compute(), which a persistent kernel splits around its epilogue: PERSIST below):
//   moe_mma  (ACT_BF16=1): bf16 tensor cores, mma.sync.m16n8k16 (sm_80+), fp32 accumulators,
//            cp.async multi-stage pipeline (STAGES buffers of A and B tiles), XOR-swizzled
//            shared memory read with ldmatrix (.trans for MN-major operands), no bank
//            conflicts on either side. Warp tile 64x64; THREADS = BM*BN/128.
//   moe_simt (ACT_BF16=0): exact fp32 SIMT GEMM, 4x4 outputs per thread; THREADS = BM*BN/16.
//   moe_wgmma (ACT_BF16=1, sm_90a; moe_wgmma.cuh): Hopper warpgroup MMA (wgmma.mma_async
//            m64n256k16) reading both operands from 128-byte-swizzled shared memory filled
//            by the same cp.async pipeline; one warpgroup per 64 rows; THREADS = BM*BN/128
//            and SMEM_BYTES as moe_mma (TILE_N must be 256, TILE_K 64). Only wgmma reaches
//            the H100's tensor-core peak; mma.sync tops out far below it on sm_90.
//
// Out-of-range elements (ragged expert ends, K tails, N tails) are zero-filled in shared
// memory (cp.async with src-size 0), so the math never branches; epilogues mask stores.
#pragma once
#include "moec_device.cuh"
#include "swiglu.cuh" // moe_sigmoid and the gate_up epilogue's swiglu

// Default tiles, used where the emitter does not set them (it may, per target):
//   bf16: 128x256x64, 3 stages = 144 KB dynamic smem (> 48 KB: the host must raise
//         CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES; fits sm_80's 163 KB and sm_90's
//         227 KB, not sm_86/89's 99 KB: use 128x128x64 x 3 = 96 KB there), 8 warps of
//         64x64, 1 CTA per SM (220-245 registers); on sm_90a the same tile is 2 warpgroups
//         of 64x256 wgmma (156-176 registers, NVRTC 13).
//   fp32: 64x64x16 SIMT, 256 threads, 8.7 KB.
// The two engines want different tiles: an emitter that sets them must set them per dtype
// (bf16 tiles on the fp32 engine would ask for more than 1024 threads; a static_assert says so).
#ifndef TILE_M
#define TILE_M (ACT_BF16 ? 128 : 64)
#endif
#ifndef TILE_N
#define TILE_N (ACT_BF16 ? 256 : 64)
#endif
#ifndef TILE_K
#define TILE_K (ACT_BF16 ? 64 : 16)
#endif
#ifndef STAGES
#define STAGES 3
#endif
// PERSIST (tuning, off by default): 0 = one output tile per CTA (the launch lines' grid is
// the tile bound), each tile's run() filling its pipeline, multiplying, then storing; nothing
// overlaps the prologue or the epilogue on that SM (1 CTA per SM at 144 KB of stages). N > 0 =
// a persistent schedule: the grid is capped at N CTAs (the SM count, e.g. 132 on an H100) and
// each CTA walks its tiles with stride gridDim.x, issuing its next tile's prologue (the first
// stages' cp.async) right after the K loop, before the epilogue, so those loads fly while the
// epilogue stores (moe_gemm_tile). Worth most where K is short: moe_down_fwd's K = I = 768 is
// 12 K tiles of 64, and it ran at 440 TFLOP/s against 541-559 for the long-K GEMMs on an H100.
// Set with moec build --kernel-const 'moe_*:PERSIST=132'; measured by bench/gpu_session.sh's
// part tune (kit variants qwen30b_persist, qwen30b_persist_st4). Both bf16 engines split
// their run() for it (moe_wgmma, moe_mma: prefetch() = the barrier that frees the stages and
// the prologue, compute() = the K loop); moe_simt loads each K slice synchronously, so with
// PERSIST it only gets the capped grid. PERSIST = 0 keeps the tile walk, the pipeline and
// the order of every sum (run() keeps its loaders in locals, as before the split); NVRTC 13's
// registers on the 30B shapes: wgmma the same as before, mma.sync within -10..+3.
#ifndef PERSIST
#define PERSIST 0
#endif

// MOE_WGMMA: 1 where wgmma exists, i.e. the instance is compiled for sm_90a (NVRTC
// --gpu-architecture=sm_90a defines __CUDA_ARCH_FEAT_SM90_ALL; plain sm_90 and sm_100a do
// not: sm_90 has no wgmma, sm_100 replaced it). tests/kernels/moe_gemm_emu sets it to run the
// engine on the CPU.
#ifndef MOE_WGMMA
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOE_WGMMA 1
#else
#define MOE_WGMMA 0
#endif
#endif

// The engine for this instance's dtype and target; A_KM / B_KM: whether A / B are K-major in
// memory. The dynamic shared memory must be 1024-aligned for moe_wgmma (its swizzle atoms).
#if ACT_BF16 && MOE_WGMMA
#define MOE_GEMM(A_KM, B_KM) moe_wgmma<TILE_M, TILE_N, TILE_K, STAGES, A_KM, B_KM>
#elif ACT_BF16
#define MOE_GEMM(A_KM, B_KM) moe_mma<TILE_M, TILE_N, TILE_K, STAGES, A_KM, B_KM>
#else
#define MOE_GEMM(A_KM, B_KM) moe_simt<TILE_M, TILE_N, TILE_K, A_KM, B_KM>
#endif

// 16-byte chunks (bf16) and column pairs (both dtypes) need these.
static_assert(H % (ACT_BF16 ? 8 : 2) == 0 && I % (ACT_BF16 ? 8 : 2) == 0,
              "H and I must be multiples of 8 (bf16) or 2 (fp32)");

// ---------------------------------------------------------------------------------------
// Operands
// ---------------------------------------------------------------------------------------

struct moe_operand {
	const act_t *p;  // base of this expert's matrix
	long long ld;    // leading dimension, elements
	int r0, r1;      // global row of tile rows 0 and R/2
	int rv0, rv1;    // valid rows in each half (may be <= 0)
	int k0, kend;    // this CTA's K range [k0, kend)
};

// A plain tile of R rows starting at global row `row` of a matrix with `nrows` rows.
__device__ __forceinline__ moe_operand moe_op(const act_t *p, long long ld, int row, int nrows, int half,
                                              int k0, int kend)
{
	moe_operand o;
	o.p = p;
	o.ld = ld;
	o.r0 = row;
	o.r1 = row + half;
	o.rv0 = nrows - row;
	o.rv1 = nrows - row - half;
	o.k0 = k0;
	o.kend = kend;
	return o;
}

// ---------------------------------------------------------------------------------------
// Tile schedulers
// ---------------------------------------------------------------------------------------

// M-grouped GEMMs (forward, data gradients): the m-tiles of all experts, expert by expert,
// each expert's rows cut into ceil(rows_e / BM) tiles (the last one ragged, none for an
// empty expert). The prefix table of tiles per expert is built in-kernel from offsets by
// every CTA (E+1 loads, one warp scan, two barriers), so the host never reads counts.
// CTAs then walk the (m-tile, n-tile) list with stride gridDim.x: any grid size is correct.
// The bound sum_e ceil(rows_e/BM) <= ceil(rows/BM) + E gives one tile per CTA; when rows is
// a loose capacity, the host should cap the grid (e.g. 2 x the SM count) so surplus CTAs
// do not each pay the table build for nothing.
struct moe_mtile {
	int e;       // expert
	int row0;    // first row of the tile in the permuted buffer
	int row_end; // end of the expert's rows (the tile's valid rows: row_end - row0, capped at BM)
};

// Builds s_off[0..NE] (offsets clamped to [0, rows]; an inverted range counts as empty, so a
// corrupt table cannot send a CTA outside the buffer; the CPU twins clamp the same way) and
// s_pre[0..NE] (exclusive prefix sums of m-tiles per expert); returns the total m-tiles.
template <int NE, int BM, int THREADS>
__device__ __forceinline__ int moe_mtile_table(const int *offsets, int rows, int *s_off, int *s_pre)
{
	const int tid = threadIdx.x;
	for (int e = tid; e <= NE; e += THREADS) {
		int v = offsets[e];
		s_off[e] = v < 0 ? 0 : (v > rows ? rows : v);
	}
	__syncthreads();
	if (tid < 32) {
		int carry = 0;
		for (int c = 0; c < NE; c += 32) {
			int e = c + tid, n = 0;
			if (e < NE) {
				int cnt = s_off[e + 1] - s_off[e];
				n = cnt > 0 ? (cnt + BM - 1) / BM : 0;
			}
			for (int o = 1; o < 32; o <<= 1) {
				int y = __shfl_up_sync(0xffffffffu, n, o);
				if (tid >= o)
					n += y;
			}
			if (e < NE)
				s_pre[e + 1] = carry + n;
			carry += __shfl_sync(0xffffffffu, n, 31);
		}
		if (tid == 0)
			s_pre[0] = 0;
	}
	__syncthreads();
	return s_pre[NE];
}

// m-tile mt (< the total) of the table: the expert e with s_pre[e] <= mt < s_pre[e+1], by
// binary search (every thread, no barrier; empty experts have an empty range).
template <int NE, int BM>
__device__ __forceinline__ moe_mtile moe_mtile_at(int mt, const int *s_off, const int *s_pre)
{
	int lo = 0, hi = NE; // s_pre[lo] <= mt < s_pre[hi]
	while (hi - lo > 1) {
		const int mid = (lo + hi) >> 1;
		if (s_pre[mid] <= mt)
			lo = mid;
		else
			hi = mid;
	}
	moe_mtile t;
	t.e = lo;
	t.row0 = s_off[lo] + (mt - s_pre[lo]) * BM;
	t.row_end = s_off[lo + 1];
	return t;
}

// One output tile's product into g's accumulators, for a kernel whose CTAs walk tiles
// blockIdx.x, + gridDim.x, ... < tiles; call it from every thread (barriers), for the tiles
// that have a product. a, b: this tile's operands; operands(tile, a, b) sets another tile's
// and returns false for a tile with nothing to multiply (a weight-gradient tile of an empty
// expert; the kernel's loop handles those without calling here). ready: the tile whose
// prologue is in flight, -1 before the CTA's first tile; the kernel keeps it (and g) across
// its loop. PERSIST == 0: g.run(smem, a, b), the one-tile-per-CTA schedule. PERSIST > 0:
// the tile's prologue was issued before the previous tile's epilogue (or is issued now, for
// the CTA's first tile); after compute() the prologue of the CTA's next tile with a product
// is issued (prefetch(): a barrier, then cp.async into the stages the K loop just finished
// with), so it lands while the caller's epilogue, which reads only acc[] and global memory,
// runs. Empty tiles in between are skipped here and handled by the kernel's loop (global
// stores only): the prologue stays in flight across them. The conditions are uniform across
// the CTA (tile indices, the shared m-tile table, offsets), as the barriers need.
template <class G, class F>
__device__ __forceinline__ void moe_gemm_tile(G &g, void *smem, const moe_operand &a, const moe_operand &b, int tile,
                                              int tiles, int &ready, F operands)
{
#if PERSIST > 0
	if (tile != ready)
		g.prefetch(smem, a, b);
	g.compute(smem);
	ready = -1;
	moe_operand na, nb;
	for (int next = tile + (int)gridDim.x; next < tiles; next += gridDim.x)
		if (operands(next, na, nb)) {
			g.prefetch(smem, na, nb);
			ready = next;
			break;
		}
#else
	(void)tile;
	(void)tiles;
	(void)ready;
	(void)operands;
	g.run(smem, a, b);
#endif
}

// K-grouped GEMMs (weight gradients) need no table: output tile (e, m-tile, n-tile) reduces
// over the expert's rows [offsets[e], offsets[e+1]) and is skipped when that range is empty;
// CTAs walk the E * MT * NT tiles with stride gridDim.x.
struct moe_wtile {
	int e;      // expert
	int r0, r1; // the expert's rows [r0, r1), clamped to [0, rows] (the twins clamp the same way)
	int m0, n0; // the tile's first row and column in the expert's gradient
};

// Weight-gradient tile `tile` = (e * MT + m-tile) * NT + n-tile.
template <int MT, int NT>
__device__ __forceinline__ moe_wtile moe_wtile_at(int tile, const int *offsets, int rows)
{
	moe_wtile t;
	t.e = tile / (MT * NT);
	t.r0 = min(max(offsets[t.e], 0), rows);
	t.r1 = min(max(offsets[t.e + 1], 0), rows);
	t.m0 = tile / NT % MT * TILE_M;
	t.n0 = tile % NT * TILE_N;
	return t;
}

// operands(tile, a, b) for moe_gemm_tile in an M-grouped kernel (forward, data gradients):
// the tile's m-tile from the table and its n-tile's first column (TN per n-tile, NT n-tiles)
// handed to ops_of(m-tile, n0, a, b). Every tile of the table has rows: always true.
template <int NE, int BM, int NT, int TN, class F>
__device__ __forceinline__ auto moe_mtile_operands(const int *s_off, const int *s_pre, F ops_of)
{
	return [=](int tile, moe_operand &a, moe_operand &b) {
		ops_of(moe_mtile_at<NE, BM>(tile / NT, s_off, s_pre), tile % NT * TN, a, b);
		return true;
	};
}

// ---------------------------------------------------------------------------------------
// Engine 1: bf16 tensor cores (mma.sync m16n8k16, cp.async, ldmatrix)
// ---------------------------------------------------------------------------------------

// The PTX primitives. With MOEC_EMU, tests/kernels/moe_gemm_emu supplies CPU versions.
#ifndef MOEC_EMU
__device__ __forceinline__ unsigned moe_smem_addr(const void *p)
{
	return (unsigned)__cvta_generic_to_shared(p);
}

// 16-byte async copy global -> shared; ok == false writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void moe_cp_async16(void *dst, const void *src, bool ok)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(moe_smem_addr(dst)), "l"(src),
	             "r"(ok ? 16 : 0)
	             : "memory");
}

__device__ __forceinline__ void moe_cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void moe_cp_async_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void moe_ldsm_x4(unsigned r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(moe_smem_addr(p)));
}

__device__ __forceinline__ void moe_ldsm_x4_t(unsigned r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(moe_smem_addr(p)));
}

// d += a * b for one 16x8x16 bf16 tile, fp32 accumulate.
__device__ __forceinline__ void moe_mma_bf16(float d[4], const unsigned a[4], unsigned b0, unsigned b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
	             "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

// Element (row, col) of a shared tile W elements wide, as 16-byte chunks whose low three
// chunk-index bits are XORed with the row: the 8 rows an ldmatrix phase reads (and the 8
// chunks a cp.async row writes) fall in 8 different bank groups.
template <int W>
__device__ __forceinline__ int moe_swz(int row, int col)
{
	static_assert(W % 64 == 0, "a swizzled tile row must hold a multiple of 8 chunks");
	return row * W + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8 + (col & 7);
}

// Per-thread loader of one operand's tiles: copies the next BK slice of the tile into
// shared memory, async, as [R][BK] (K-major) or [BK][R] (MN-major), swizzled, and advances
// along K. Everything that does not change along K is computed once in init(), so the
// K loop costs one pointer add and a compare per 16-byte chunk. Chunks are valid or not as
// a whole: every dimension here is a multiple of 8 elements (the templates assert it).
//   K-major : thread owns chunk column kc = tid % CPR of rows tid / CPR + it * STEP;
//             the first ITERS/2 iterations fall in half 0, the rest in half 1.
//   MN-major: thread owns the 8 columns (tid % CPR) * 8 (one half, fixed) of k-rows
//             tid / CPR + it * STEP.
// WGL (the wgmma engine, moe_wgmma.cuh): the shared layouts wgmma reads with 128-byte
// swizzle. K-major is the same [R][BK] tile (BK = 64: one 128-byte swizzle row per tile
// row). MN-major is cut into R/64 blocks of 64 columns, each [BK][64] (128-byte k-rows,
// swizzled by k), block after block: element (k, c) at (c/64)*BK*64 + moe_swz<64>(k, c%64).
template <int R, int BK, int THREADS, bool KMAJOR, bool WGL = false>
struct moe_loader_bf16 {
	static constexpr int CPR = KMAJOR ? BK / 8 : R / 8; // 16-byte chunks per shared row
	static constexpr int STEP = THREADS / CPR;          // shared rows between a thread's chunks
	static constexpr int ITERS = (KMAJOR ? R : BK) / STEP;
	static constexpr int W = KMAJOR ? BK : (WGL ? 64 : R); // shared row width, elements
	static_assert(THREADS % CPR == 0 && (KMAJOR ? R : BK) % STEP == 0, "tile does not split over the CTA");
	static_assert(STEP % 8 == 0, "a thread's chunks must share one swizzle phase");
	static_assert(!KMAJOR || ITERS % 2 == 0, "each K-major iteration must lie in one half");
	static_assert(!WGL || (R % 64 == 0 && (!KMAJOR || BK == 64)), "wgmma layouts: R % 64 == 0, K-major BK == 64");

	const act_t *g0, *g1; // next chunk to load in half 0 / half 1 (MN-major: g0 only)
	long long ld;
	int v0, v1;           // K-major: rows left per half below this thread's row; MN-major: v0 = column in range
	int kv;               // elements of K left from this thread's next chunk
	int soff;             // shared offset of the thread's first chunk

	__device__ __forceinline__ void init(const moe_operand &op, int tid)
	{
		ld = op.ld;
		if (KMAJOR) {
			const int rr = tid / CPR, kc = (tid % CPR) * 8;
			g0 = op.p + ((long long)(op.r0 + rr) * op.ld + op.k0 + kc);
			g1 = op.p + ((long long)(op.r1 + rr) * op.ld + op.k0 + kc);
			v0 = op.rv0 - rr;
			v1 = op.rv1 - rr;
			kv = op.kend - op.k0 - kc;
			soff = moe_swz<W>(rr, kc);
		} else {
			const int kr = tid / CPR, c = (tid % CPR) * 8;
			const bool hi = c >= R / 2;
			const int hc = hi ? c - R / 2 : c;
			g0 = g1 = op.p + ((long long)(op.k0 + kr) * op.ld + (hi ? op.r1 : op.r0) + hc);
			v0 = v1 = hc < (hi ? op.rv1 : op.rv0);
			kv = op.kend - op.k0 - kr;
			soff = WGL ? c / 64 * (BK * 64) + moe_swz<W>(kr, c % 64) : moe_swz<W>(kr, c);
		}
	}

	__device__ __forceinline__ void load(bf16 *s)
	{
#pragma unroll
		for (int it = 0; it < ITERS; it++) {
			bool ok;
			const act_t *src;
			if (KMAJOR) {
				const bool hi = it >= ITERS / 2;
				const int ii = hi ? it - ITERS / 2 : it;
				ok = ii * STEP < (hi ? v1 : v0) && kv > 0;
				src = (hi ? g1 : g0) + ii * STEP * ld;
			} else {
				ok = v0 && it * STEP < kv;
				src = g0 + it * STEP * ld;
			}
			// Out of range: src-size 0 zero-fills and reads nothing (src is never dereferenced).
			moe_cp_async16(s + soff + it * STEP * W, src, ok);
		}
		if (KMAJOR) {
			g0 += BK;
			g1 += BK;
		} else {
			g0 += BK * ld;
		}
		kv -= BK;
	}
};

// The prologue of the bf16 engines' cp.async pipelines: initializes the loaders ra, rb on a
// and b and issues tiles 0 .. DIST-1 of the nk K tiles into stages 0 .. DIST-1 (stage s of A
// at sA + s * A_ELEMS, of B at sB + s * B_ELEMS), one cp.async group per tile, empty past
// nk, so that wait_group<DIST-1> in the K loop always means "tile kt landed". The caller has
// freed those stages (a barrier after every reader of the previous tile).
template <int DIST, int A_ELEMS, int B_ELEMS, class LA, class LB>
__device__ __forceinline__ void moe_prologue(bf16 *sA, bf16 *sB, const moe_operand &a, const moe_operand &b, int nk,
                                             LA &ra, LB &rb)
{
	const int tid = threadIdx.x;
	ra.init(a, tid);
	rb.init(b, tid);
#pragma unroll
	for (int s = 0; s < DIST; s++) {
		if (s < nk) {
			ra.load(sA + s * A_ELEMS);
			rb.load(sB + s * B_ELEMS);
		}
		moe_cp_async_commit();
	}
}

template <int BM, int BN, int BK, int NSTAGE, bool A_KMAJOR, bool B_KMAJOR>
struct moe_mma {
	static constexpr int WM = 64, WN = 64; // warp tile: 8 ldmatrix.x4 per 32 mma per k16
	static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN;
	static constexpr int THREADS = WARPS_M * WARPS_N * 32;
	static constexpr int MI = WM / 16, NI = WN / 8; // m16 x n8 mma tiles per warp
	static constexpr int A_ELEMS = BM * BK, B_ELEMS = BN * BK;
	static constexpr int SMEM_BYTES = NSTAGE * (A_ELEMS + B_ELEMS) * 2;
	static constexpr int NFRAG = MI * (NI / 2) * 2;
	static_assert(BM % WM == 0 && BN % WN == 0, "tile must be a multiple of the 64x64 warp tile");
	static_assert(THREADS <= 1024, "bf16 tiles give TILE_M*TILE_N/128 threads: at most 1024");
	static_assert(BK % 16 == 0 && NSTAGE >= 2, "BK must be a multiple of 16, NSTAGE >= 2");
	static_assert(!A_KMAJOR || BK % 64 == 0, "K-major A tile rows are swizzled: BK % 64 == 0");
	static_assert(!B_KMAJOR || BK % 64 == 0, "K-major B tile rows are swizzled: BK % 64 == 0");

	float acc[MI][NI][4];

	// Column of the tile where n8 block j of warp column wn starts: blocks 0..NI/2-1 in the
	// first half, NI/2..NI-1 at the same place in the second half.
	__device__ __forceinline__ static int ncol(int wn, int j)
	{
		return (j < NI / 2 ? 0 : BN / 2) + wn * (WN / 2) + (j % (NI / 2)) * 8;
	}

	// Accumulates over the whole K range of a (b has the same length). smem: SMEM_BYTES.
	// prefetch() then compute(), the loaders kept in locals here as they were before the
	// split (the default, one-tile-per-CTA path).
	__device__ __forceinline__ void run(void *smem, const moe_operand &a, const moe_operand &b)
	{
		zero();
		const int klen = a.kend - a.k0;
		const int kt = klen > 0 ? (klen + BK - 1) / BK : 0;
		__syncthreads(); // a CTA's previous tile may still be reading the stages refilled below
		moe_loader_bf16<BM, BK, THREADS, A_KMAJOR> ra;
		moe_loader_bf16<BN, BK, THREADS, B_KMAJOR> rb;
		prologue(smem, a, b, kt, ra, rb);
		kloop(smem, kt, ra, rb);
	}

	// The pipeline state prefetch() leaves for compute(): the loaders, NSTAGE-1 tiles along
	// K, and the tile count.
	moe_loader_bf16<BM, BK, THREADS, A_KMAJOR> la;
	moe_loader_bf16<BN, BK, THREADS, B_KMAJOR> lb;
	int ktiles;

	// The prologue of a tile for a persistent kernel (PERSIST): tiles 0 .. NSTAGE-2 of a and
	// b in flight, the loaders kept for compute(). Touches no accumulator, so the kernel
	// issues its next tile's prologue between compute() and the epilogue. Every thread of
	// the CTA must call it: its barrier is what lets every warp's ldmatrix of the previous
	// tile finish before a stage is refilled.
	__device__ __forceinline__ void prefetch(void *smem, const moe_operand &a, const moe_operand &b)
	{
		const int klen = a.kend - a.k0;
		ktiles = klen > 0 ? (klen + BK - 1) / BK : 0;
		__syncthreads(); // the CTA's previous tile may still be reading the stages refilled below
		prologue(smem, a, b, ktiles, la, lb);
	}

	// The K loop over the tiles prefetch() issued: acc = the tile's product. Returns after
	// cp.async.wait_group 0.
	__device__ __forceinline__ void compute(void *smem)
	{
		zero();
		kloop(smem, ktiles, la, lb);
	}

	__device__ __forceinline__ void zero(void)
	{
#pragma unroll
		for (int i = 0; i < MI; i++)
#pragma unroll
			for (int j = 0; j < NI; j++)
#pragma unroll
				for (int q = 0; q < 4; q++)
					acc[i][j][q] = 0.f;
	}

	// Pipeline: tile kt lives in stage kt % NSTAGE; NSTAGE-1 tiles are in flight while one is
	// being multiplied (moe_prologue issues the first NSTAGE-1).
	template <class LA, class LB>
	__device__ __forceinline__ static void prologue(void *smem, const moe_operand &a, const moe_operand &b, int nk,
	                                                LA &ra, LB &rb)
	{
		bf16 *sA = (bf16 *)smem;
		moe_prologue<NSTAGE - 1, A_ELEMS, B_ELEMS>(sA, sA + NSTAGE * A_ELEMS, a, b, nk, ra, rb);
	}

	// The K loop over nk tiles, the first NSTAGE-1 issued by prologue(); acc zeroed before.
	template <class LA, class LB>
	__device__ __forceinline__ void kloop(void *smem, const int nk, LA &ra, LB &rb)
	{
		bf16 *sA = (bf16 *)smem, *sB = sA + NSTAGE * A_ELEMS;
		const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
		const int wm = warp / WARPS_N, wn = warp % WARPS_N;
		int ld_stage = NSTAGE - 1, rd_stage = 0;
		// Not unrolled: with a short constant K (small H or I) full unrolling overlaps
		// iterations and spills; the body is large enough that the loop costs nothing.
#pragma unroll 1
		for (int kt = 0; kt < nk; kt++) {
			moe_cp_async_wait<NSTAGE - 2>();
			__syncthreads(); // tile kt visible to all; everyone is done with tile kt-1's stage
			if (kt + NSTAGE - 1 < nk) {
				ra.load(sA + ld_stage * A_ELEMS);
				rb.load(sB + ld_stage * B_ELEMS);
			}
			moe_cp_async_commit();
			ld_stage = ld_stage == NSTAGE - 1 ? 0 : ld_stage + 1;
			const bf16 *tA = sA + rd_stage * A_ELEMS, *tB = sB + rd_stage * B_ELEMS;
			rd_stage = rd_stage == NSTAGE - 1 ? 0 : rd_stage + 1;
#pragma unroll
			for (int kk = 0; kk < BK / 16; kk++) {
				unsigned af[MI][4], bfr[NI][2];
#pragma unroll
				for (int i = 0; i < MI; i++) {
					const int m = wm * WM + i * 16;
					if (A_KMAJOR) // matrices: (m0-7,k0-7) (m8-15,k0-7) (m0-7,k8-15) (m8-15,k8-15)
						moe_ldsm_x4(af[i], tA + moe_swz<BK>(m + (lane & 15), kk * 16 + (lane >> 4) * 8));
					else // [k][m] transposed: the same four matrices
						moe_ldsm_x4_t(af[i], tA + moe_swz<BM>(kk * 16 + (lane & 7) + (lane >> 4) * 8,
						                                      m + ((lane >> 3) & 1) * 8));
				}
#pragma unroll
				for (int j = 0; j < NI; j += 2) {
					const int n = ncol(wn, j); // n8 blocks j, j+1 are adjacent columns
					unsigned r[4];
					if (B_KMAJOR) // matrices: (n0-7,k0-7) (n0-7,k8-15) (n8-15,k0-7) (n8-15,k8-15)
						moe_ldsm_x4(r, tB + moe_swz<BK>(n + (lane & 7) + (lane >> 4) * 8,
						                                kk * 16 + ((lane >> 3) & 1) * 8));
					else
						moe_ldsm_x4_t(r, tB + moe_swz<BN>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
						                                  n + (lane >> 4) * 8));
					bfr[j][0] = r[0];
					bfr[j][1] = r[1];
					bfr[j + 1][0] = r[2];
					bfr[j + 1][1] = r[3];
				}
#pragma unroll
				for (int i = 0; i < MI; i++)
#pragma unroll
					for (int j = 0; j < NI; j++)
						moe_mma_bf16(acc[i][j], af[i], bfr[j][0], bfr[j][1]);
			}
		}
		moe_cp_async_wait<0>();
	}

	// Fragment f (0 <= f < NFRAG, a compile-time index after unrolling): see the file header.
	// mma C layout: lane (g = lane/4, t = lane%4) holds rows g and g+8, columns 2t, 2t+1.
	__device__ __forceinline__ void frag(int f, int &r, int &c, float v[4]) const
	{
		const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
		const int wm = warp / WARPS_N, wn = warp % WARPS_N;
		const int i = f / NI, j = (f % NI) / 2, h = f % 2; // h: row g or g+8
		r = wm * WM + i * 16 + (lane >> 2) + h * 8;
		c = ncol(wn, j) + (lane & 3) * 2;
		v[0] = acc[i][j][2 * h];
		v[1] = acc[i][j][2 * h + 1];
		v[2] = acc[i][j + NI / 2][2 * h];
		v[3] = acc[i][j + NI / 2][2 * h + 1];
	}
};

// Engine 3, the sm_90a wgmma engine: after the cp.async primitives and the loader it uses.
#include "moe_wgmma.cuh"

// ---------------------------------------------------------------------------------------
// Engine 2: exact fp32 SIMT (ACT_BF16=0)
// ---------------------------------------------------------------------------------------

// A BK slice of an operand tile into shared memory as [BK][LD] (k-major rows of R values).
template <int R, int LD, int BK, int THREADS, bool KMAJOR>
__device__ __forceinline__ void moe_load_tile_f32(float *s, const moe_operand &op, int kbase, int tid)
{
	constexpr int HALF = R / 2;
	for (int c = tid; c < R * BK; c += THREADS) {
		// K-major: consecutive threads walk k (contiguous in memory); MN-major: walk r.
		const int r = KMAJOR ? c / BK : c % R, kk = KMAJOR ? c % BK : c / R;
		const bool hi = r >= HALF;
		const int hr = hi ? r - HALF : r;
		const int k = kbase + kk;
		const long long row = (hi ? op.r1 : op.r0) + hr;
		float v = 0.f;
		if (hr < (hi ? op.rv1 : op.rv0) && k < op.kend)
			v = act_load(op.p + (KMAJOR ? row * op.ld + k : (long long)k * op.ld + row));
		s[kk * LD + r] = v;
	}
}

template <int BM, int BN, int BK, bool A_KMAJOR, bool B_KMAJOR>
struct moe_simt {
	static constexpr int TX = BN / 4, TY = BM / 4; // threads along n (one column pair per half), m
	static constexpr int THREADS = TX * TY;
	static constexpr int LDA = BM + 4, LDB = BN + 4; // padding: K-major stores hit 8 banks, not 1
	static constexpr int SMEM_BYTES = BK * (LDA + LDB) * 4;
	static constexpr int NFRAG = 4;
	static_assert(BM % 4 == 0 && BN % 8 == 0 && BK > 0, "fp32 tile shape");
	static_assert(THREADS % 32 == 0 && THREADS <= 1024,
	              "fp32 tiles give TILE_M*TILE_N/16 threads: at most 1024 (use e.g. 64x64x16, not the bf16 tiles)");

	float acc[4][4]; // [row ty + TY*i][first-half pair, second-half pair]
	moe_operand pa, pb; // the operands prefetch() was given

	// The interface of the pipelined engines (PERSIST): this engine loads each K slice
	// synchronously inside its loop, so there is no prologue to issue ahead; prefetch() keeps
	// the operands and compute() runs the tile. A persistent fp32 kernel only caps its grid.
	__device__ __forceinline__ void prefetch(void *, const moe_operand &a, const moe_operand &b)
	{
		pa = a;
		pb = b;
	}
	__device__ __forceinline__ void compute(void *smem) { run(smem, pa, pb); }

	__device__ __forceinline__ void run(void *smem, const moe_operand &a, const moe_operand &b)
	{
		float *sA = (float *)smem, *sB = sA + BK * LDA;
		const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
#pragma unroll
		for (int i = 0; i < 4; i++)
#pragma unroll
			for (int j = 0; j < 4; j++)
				acc[i][j] = 0.f;
		const int klen = a.kend - a.k0;
		for (int kb = 0; kb < klen; kb += BK) {
			__syncthreads(); // previous slice consumed
			moe_load_tile_f32<BM, LDA, BK, THREADS, A_KMAJOR>(sA, a, a.k0 + kb, tid);
			moe_load_tile_f32<BN, LDB, BK, THREADS, B_KMAJOR>(sB, b, b.k0 + kb, tid);
			__syncthreads();
#pragma unroll 4
			for (int k = 0; k < BK; k++) {
				const float *ra = sA + k * LDA + ty, *rb = sB + k * LDB + tx * 2;
				const float b0 = rb[0], b1 = rb[1], b2 = rb[BN / 2], b3 = rb[BN / 2 + 1];
#pragma unroll
				for (int i = 0; i < 4; i++) {
					const float av = ra[i * TY];
					acc[i][0] += av * b0;
					acc[i][1] += av * b1;
					acc[i][2] += av * b2;
					acc[i][3] += av * b3;
				}
			}
		}
	}

	__device__ __forceinline__ void frag(int f, int &r, int &c, float v[4]) const
	{
		const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
		r = ty + TY * f;
		c = tx * 2;
		v[0] = acc[f][0];
		v[1] = acc[f][1];
		v[2] = acc[f][2];
		v[3] = acc[f][3];
	}
};

// ---------------------------------------------------------------------------------------
// Epilogue helpers
// ---------------------------------------------------------------------------------------

// Stores (v0, v1) at p[col], p[col+1] where those columns are < n. bf16: one 4-byte store
// (col and n are even there, so the pair is all in or all out).
__device__ __forceinline__ void moe_store_pair(act_t *p, int col, int n, float v0, float v1)
{
#if ACT_BF16
	if (col < n) {
		unsigned lo = __bfloat16_as_ushort(__float2bfloat16_rn(v0));
		unsigned hi = __bfloat16_as_ushort(__float2bfloat16_rn(v1));
		*(unsigned *)(p + col) = lo | (hi << 16);
	}
#else
	if (col < n)
		p[col] = v0;
	if (col + 1 < n)
		p[col + 1] = v1;
#endif
}

// A pair p[col], p[col+1] as loaded, unconverted: epilogues that read saved activations load
// a batch of pairs first and convert them after (moe_unpack_pair), so the batch's loads are in
// flight together rather than one global-memory latency per fragment (a load after a store
// to another act_t pointer cannot be hoisted above it: they may alias).
#if ACT_BF16
typedef unsigned moe_raw_pair;
#else
typedef float2 moe_raw_pair;
#endif

__device__ __forceinline__ moe_raw_pair moe_load_raw_pair(const act_t *p, int col)
{
#if ACT_BF16
	return *(const unsigned *)(p + col);
#else
	return make_float2(p[col], p[col + 1]);
#endif
}

__device__ __forceinline__ void moe_unpack_pair(moe_raw_pair u, float *v0, float *v1)
{
#if ACT_BF16
	*v0 = __uint_as_float(u << 16);
	*v1 = __uint_as_float(u & 0xffff0000u);
#else
	*v0 = u.x;
	*v1 = u.y;
#endif
}

// dw[col], dw[col+1] += (v0, v1) (accumulate != 0) or = (v0, v1) (accumulate == 0: the
// gradient's first write in the optimizer step, which then needs no memset and no read) for
// the columns < n: the fp32 engine's weight gradients (any n; bf16 tiles go through
// moe_weight_grad_epilogue's batched path).
__device__ __forceinline__ void moe_put_pair(float *p, int col, int n, float v0, float v1, int accumulate)
{
	if (col < n)
		p[col] = accumulate ? p[col] + v0 : v0;
	if (col + 1 < n)
		p[col + 1] = accumulate ? p[col + 1] + v1 : v1;
}

// A tile's epilogue in batches of MOE_EPI_BATCH fragments: load(q, r, c) for every fragment q
// of a batch (the global reads the results need), then store(q, r, c, v) for each. Reads of
// a batch are in flight together: interleaved with stores through another pointer they would
// each wait a global-memory latency, since the compiler cannot move a load above a store
// that may alias it. (r, c): the fragment's row and first column (moe_mma's frag()).
#define MOE_EPI_BATCH 4
template <class G, class Load, class Store>
__device__ __forceinline__ void moe_epilogue_batched(const G &g, Load &&load, Store &&store)
{
#pragma unroll
	for (int f0 = 0; f0 < G::NFRAG; f0 += MOE_EPI_BATCH) {
#pragma unroll
		for (int q = 0; q < MOE_EPI_BATCH && f0 + q < G::NFRAG; q++) {
			int r, c;
			float v[4];
			g.frag(f0 + q, r, c, v);
			load(q, r, c);
		}
#pragma unroll
		for (int q = 0; q < MOE_EPI_BATCH && f0 + q < G::NFRAG; q++) {
			int r, c;
			float v[4];
			g.frag(f0 + q, r, c, v);
			store(q, r, c, v);
		}
	}
}

// A weight-gradient tile's epilogue: g's accumulators into the fp32 tile at dw (row stride
// ld; rows < m and columns < n of it are real), added to it (accumulate) or written over it.
// bf16 engines: batched (moe_epilogue_batched), the old values read only when adding.
// Columns: even pairs, all in or all out.
template <class G>
__device__ __forceinline__ void moe_weight_grad_epilogue(const G &g, float *dw, long long ld, int m, int n, int accumulate)
{
#if ACT_BF16
	float2 old[MOE_EPI_BATCH][2];
	moe_epilogue_batched(
		g,
		[&](int q, int r, int c) {
#pragma unroll
			for (int half = 0; half < 2; half++) {
				const int col = half * (TILE_N / 2) + c;
				old[q][half] = accumulate && r < m && col < n ? *(const float2 *)(dw + r * ld + col)
									     : make_float2(0.0f, 0.0f);
			}
		},
		[&](int q, int r, int c, const float *v) {
			if (r >= m)
				return;
#pragma unroll
			for (int half = 0; half < 2; half++) {
				const int col = half * (TILE_N / 2) + c;
				if (col < n) // overwriting stores v itself (a -0 stays -0, as the twin's beta 0)
					*(float2 *)(dw + r * ld + col) =
						accumulate ? make_float2(v[2 * half] + old[q][half].x, v[2 * half + 1] + old[q][half].y)
							   : make_float2(v[2 * half], v[2 * half + 1]);
			}
		});
#else
#pragma unroll
	for (int f = 0; f < G::NFRAG; f++) {
		int r, c;
		float v[4];
		g.frag(f, r, c, v);
		if (r >= m)
			continue;
		float *wr = dw + (long long)r * ld;
		moe_put_pair(wr, c, n, v[0], v[1], accumulate);
		moe_put_pair(wr, TILE_N / 2 + c, n, v[2], v[3], accumulate);
	}
#endif
}

// Zeroes the rows < m, columns < n of a TILE_M x TILE_N fp32 tile at p (row stride ld), the
// CTA's threads striding over it: a weight-gradient tile of an expert with no rows, when the
// kernel overwrites (nothing zeroed the gradient before it).
__device__ __forceinline__ void moe_zero_tile(float *p, long long ld, int m, int n)
{
	const int rows = min(m, TILE_M), cols = min(n, TILE_N);
	for (int i = threadIdx.x; i < rows * cols; i += blockDim.x)
		p[(long long)(i / cols) * ld + i % cols] = 0.0f;
}


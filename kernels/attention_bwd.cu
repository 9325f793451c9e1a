// attention_bwd.cu - causal GQA flash attention backward with document masking: dq, dk, dv.
// moec: constants NH NKV HD ACT_BF16 BLOCK_M BLOCK_N
// moec: launch grid=((NKV + NH) * ((tokens + BLOCK_M - 1) / BLOCK_M)) block=(2 * BLOCK_M) smem=(ACT_BF16 ? 2 * (2 * BLOCK_M + 4 * BLOCK_N) * (HD + 8) + 16 * BLOCK_N : 4 * (2 * BLOCK_M * HD + 2 * BLOCK_N * (HD + 1) + 2 * BLOCK_N + BLOCK_M * BLOCK_N))
//
// T = tokens (runtime, all micro-batch rows as one stream), NH query heads, NKV kv heads,
// HD head dim, G = NH / NKV query heads per kv head.
// Shapes: q [T, NH, HD], k, v [T, NKV, HD], dout [T, NH, HD] act_t; doc [T] int;
//         lse [NH, T] float (attention_fwd), delta [NH, T] float (attention_bwd_pre);
//         dq [T, NH, HD], dk, dv [T, NKV, HD] act_t (written, not accumulated into).
//
// Math (FlashAttention-2), per head h with kv head h / G and scale = HD^-0.5:
//   P = exp(scale Q K^T - lse) on the causal + document mask (0 elsewhere)
//   dV = P^T dO        dP = dO V^T        dS = P * (dP - delta)
//   dQ = scale dS K    dK = scale dS^T Q  (dK, dV summed over the G heads of the kv head)
// Same masking semantics and the same precondition as attention_fwd (documents are
// contiguous runs of tokens; tokens >= 1; pointers 16-byte aligned).
//
// One kernel, two kinds of blocks, no atomics, deterministic:
//   blocks [0, NKV * nb): dk/dv for BLOCK_M keys of one kv head (block b: key block b / NKV,
//     kv head b % NKV; key block 0 first, it has the most work). K and V stay in smem; the
//     block walks the G heads x the query tiles of BLOCK_N rows that can see its keys
//     (from the diagonal to the end of the keys' document), accumulating dK and dV in
//     registers, and writes them once.
//   blocks [NKV * nb, (NKV + NH) * nb): dq for BLOCK_M queries of one head (last query
//     block first), walking key tiles of BLOCK_N rows from the diagonal down to the start of
//     the queries' document; dQ accumulates in registers and is written once.
// where nb = ceil(T / BLOCK_M). dq recomputes S and dP (7 matmuls per tile pair instead of
// FA2's 5 with atomics), in exchange for no fp32 dq buffer, no conversion pass and bitwise
// reproducible gradients. Each warp owns 16 of the block's BLOCK_M rows, so every
// accumulator is warp-private; block = 2 * BLOCK_M threads.
//
// bf16 (ACT_BF16=1): mma.sync.m16n8k16 (sm_80+, runs on sm_90a), fp32 accumulators. The
// dk/dv blocks compute S^T = K Q^T directly (keys as rows), so P^T and dS^T come out of the
// accumulators already in the A-fragment layout of dV += P^T dO and dK += dS^T Q. Streamed
// tiles are double-buffered with cp.async (the next tile loads while this one computes).
// smem rows padded to HD + 8 elements (conflict-free ldmatrix).
// fp32 (ACT_BF16=0): SIMT, fp32 FMAs throughout (exp2 by ex2.approx, ~2 ulp); single-
// buffered tiles; a lane owns BLOCK_N / 32 columns of S and HD / 32 dims of the accumulators.
//
// Balance: a dk/dv block does G x (its document's query tiles) steps, so with one long
// document and a large G (Qwen3-235B: G = 16, T = SEQ = 4096) the first key blocks are the
// critical path, ~15% over a perfectly packed schedule by a count of tile steps; blocks
// are ordered heaviest first to hide most of it. Splitting those blocks over head groups
// needs a deterministic second reduction pass: the next step if measurements ask for it.
//
// Dynamic shared memory (bytes), passed at launch (the kernel traps if given less):
//   bf16: 2 * (2 * BLOCK_M + 4 * BLOCK_N) * (HD + 8) + 16 * BLOCK_N
//   fp32: 4 * (2 * BLOCK_M * HD + 2 * BLOCK_N * (HD + 1) + 2 * BLOCK_N + BLOCK_M * BLOCK_N)
// More than 48 KB needs cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)
// once after loading the module. Suggested: bf16 HD = 128: BLOCK_M = 64, BLOCK_N = 32
// (70,144 B; ~240 registers, two blocks per SM; BLOCK_N = 64 spills); bf16 HD <= 64:
// BLOCK_M = 64, BLOCK_N = 64 (HD = 32: 31,744 B); fp32: BLOCK_M = 32, BLOCK_N = 32
// (HD = 32: 20,992 B; HD = 128: 70,144 B).
#include "moec_device.cuh"
#include "mma_sm80.cuh"

#define ATTN_G (NH / NKV)
#define ATTN_WARPS (BLOCK_M / 16)
#define ATTN_THREADS (32 * ATTN_WARPS)
#define ATTN_LOG2E 1.4426950408889634f

static_assert(NH % NKV == 0, "attention_bwd: NH must be a multiple of NKV");
static_assert(HD % 16 == 0 && HD <= 256, "attention_bwd: HD must be a multiple of 16, at most 256");
static_assert(BLOCK_M % 16 == 0 && BLOCK_M >= 16 && BLOCK_M <= 256, "attention_bwd: BLOCK_M must be 16..256, a multiple of 16");

#if ACT_BF16
#define ATTN_LDS (HD + 8) // smem row stride (elements): 16 bytes of padding per row
#define ATTN_BWD_SMEM (2 * (2 * BLOCK_M + 4 * BLOCK_N) * ATTN_LDS + 16 * BLOCK_N)
static_assert(BLOCK_N % 16 == 0 && BLOCK_N >= 16, "attention_bwd: BLOCK_N must be a multiple of 16");
#else
#define ATTN_KLD (HD + 1) // fp32 streamed-tile row stride: lane-per-row reads hit distinct banks
#define ATTN_CPL (BLOCK_N / 32)
#define ATTN_DPL ((HD + 31) / 32)
#define ATTN_BWD_SMEM (4 * (2 * BLOCK_M * HD + 2 * BLOCK_N * ATTN_KLD + 2 * BLOCK_N + BLOCK_M * BLOCK_N))
static_assert(BLOCK_N % 32 == 0 && BLOCK_N >= 32, "attention_bwd: fp32 BLOCK_N must be a multiple of 32");
#endif
static_assert(ATTN_BWD_SMEM <= 227 * 1024, "attention_bwd: tiles need more shared memory than an SM has");

// Lowest key tile (of BLOCK_N keys) that a query row in [m0, ...) can see: key tile nb is dead
// when it ends before m0 in another document than m0's (contiguous documents: so is every
// earlier one). Parallel search over [0, nb_last) keeping the highest dead tile.
__device__ __forceinline__ int attn_first_live_key_tile(const int *doc, int m0, int nb_last, int *slot)
{
	if (threadIdx.x == 0)
		*slot = -1;
	__syncthreads();
	const int doc_m0 = __ldg(doc + m0);
	for (int nb = nb_last - 1 - (int)threadIdx.x; nb >= 0; nb -= ATTN_THREADS) {
		const int n_end = nb * BLOCK_N + BLOCK_N - 1;
		if (n_end < m0 && __ldg(doc + n_end) != doc_m0) {
			atomicMax(slot, nb);
			break;
		}
	}
	__syncthreads();
	return *slot + 1;
}

// One past the last query tile (of BLOCK_N rows) that can see a key in [.., n_last]: query
// tile mt is dead when it starts after n_last in another document than n_last's (and so is
// every later one). Parallel search over (mt_first, ntiles) keeping the lowest dead tile.
__device__ __forceinline__ int attn_end_live_query_tile(const int *doc, int n_last, int mt_first, int ntiles, int *slot)
{
	if (threadIdx.x == 0)
		*slot = ntiles;
	__syncthreads();
	const int doc_n = __ldg(doc + n_last);
	for (int mt = mt_first + 1 + (int)threadIdx.x; mt < ntiles; mt += ATTN_THREADS) {
		const int m0 = mt * BLOCK_N;
		if (m0 > n_last && __ldg(doc + m0) != doc_n) {
			atomicMin(slot, mt);
			break;
		}
	}
	__syncthreads();
	return *slot;
}

#if ACT_BF16

// ---------------------------------------------------------------------------------------
// bf16: tensor cores
// ---------------------------------------------------------------------------------------

// Rows [r0, r0 + NROWS) of one head of a [T, heads, HD] tensor (g at row 0 of the head,
// row_stride = heads * HD) into smem rows of ATTN_LDS elements; rows >= T get zeros.
template <int NROWS>
__device__ __forceinline__ void attn_load_rows(bf16 *s, const bf16 *g, int row_stride, int r0, int tokens)
{
	constexpr int CH = HD / 8;
	for (int c = threadIdx.x; c < NROWS * CH; c += ATTN_THREADS) {
		const int r = c / CH, cc = c % CH, row = r0 + r;
		const bool ok = row < tokens;
		attn_cp_async16(s + r * ATTN_LDS + cc * 8, g + (size_t)(ok ? row : 0) * row_stride + cc * 8, ok ? 16 : 0);
	}
}

// n rows [r0, r0 + n) of a [NH, T] fp32 row (g at element 0 of the head) into smem; zeros past T.
__device__ __forceinline__ void attn_load_stats(float *s, const float *g, int r0, int n, int tokens)
{
	for (int c = threadIdx.x; c < n; c += ATTN_THREADS) {
		const bool ok = r0 + c < tokens;
		attn_cp_async4(s + c, g + (ok ? r0 + c : 0), ok ? 4 : 0);
	}
}

// Write a warp's 16 x HD fp32 accumulator tile (times mul) as bf16 rows of smem.
__device__ __forceinline__ void attn_stage_rows(bf16 *s, const float acc[HD / 8][4], float mul, int warp, int lane)
{
	const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
	for (int dt = 0; dt < HD / 8; dt++) {
		*(unsigned *)(s + (warp * 16 + g) * ATTN_LDS + dt * 8 + 2 * t4) = attn_pack(acc[dt][0] * mul, acc[dt][1] * mul);
		*(unsigned *)(s + (warp * 16 + g + 8) * ATTN_LDS + dt * 8 + 2 * t4) = attn_pack(acc[dt][2] * mul, acc[dt][3] * mul);
	}
}

// Staged smem rows -> rows [r0, r0 + BLOCK_M) of one head of a [T, heads, HD] tensor, 16 bytes a thread.
__device__ __forceinline__ void attn_store_rows(bf16 *g, int row_stride, const bf16 *s, int r0, int tokens)
{
	constexpr int CH = HD / 8;
	for (int c = threadIdx.x; c < BLOCK_M * CH; c += ATTN_THREADS) {
		const int r = c / CH, cc = c % CH, row = r0 + r;
		if (row < tokens)
			*(uint4 *)(g + (size_t)row * row_stride + cc * 8) = *(const uint4 *)(s + r * ATTN_LDS + cc * 8);
	}
}

// c[BLOCK_N/8][4] += A (16 rows of smem sa at this warp's offset) x B^T (BLOCK_N rows of sb),
// both [rows][HD] in smem: S = Q K^T, S^T = K Q^T, dP = dO V^T, dP^T = V dO^T.
__device__ __forceinline__ void attn_mma_abt(float c[BLOCK_N / 8][4], const bf16 *sa, const bf16 *sb, int lane)
{
#pragma unroll
	for (int nt = 0; nt < BLOCK_N / 8; nt++)
		c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
		unsigned a[4];
		attn_ldsm_x4(a, sa + (lane & 15) * ATTN_LDS + kk * 16 + (lane >> 4) * 8);
#pragma unroll
		for (int nt2 = 0; nt2 < BLOCK_N / 16; nt2++) {
			unsigned b[4];
			attn_ldsm_x4(b, sb + (nt2 * 16 + (lane & 7) + (lane >> 4) * 8) * ATTN_LDS + kk * 16 + ((lane >> 3) & 1) * 8);
			attn_mma(c[2 * nt2], a, b[0], b[1]);
			attn_mma(c[2 * nt2 + 1], a, b[2], b[3]);
		}
	}
}

// acc[HD/8][4] += X (16 x BLOCK_N, fp32 accumulators, rounded to bf16) x B (BLOCK_N rows of
// smem sb, [rows][HD]): dV += P^T dO, dK += dS^T Q, dQ += dS K.
__device__ __forceinline__ void attn_mma_xb(float acc[HD / 8][4], const float x[BLOCK_N / 8][4], const bf16 *sb, int lane)
{
#pragma unroll
	for (int kc = 0; kc < BLOCK_N / 16; kc++) {
		unsigned a[4];
		a[0] = attn_pack(x[2 * kc][0], x[2 * kc][1]);
		a[1] = attn_pack(x[2 * kc][2], x[2 * kc][3]);
		a[2] = attn_pack(x[2 * kc + 1][0], x[2 * kc + 1][1]);
		a[3] = attn_pack(x[2 * kc + 1][2], x[2 * kc + 1][3]);
#pragma unroll
		for (int dt2 = 0; dt2 < HD / 16; dt2++) {
			unsigned b[4];
			attn_ldsm_x4_trans(b, sb + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ATTN_LDS + dt2 * 16 + (lane >> 4) * 8);
			attn_mma(acc[2 * dt2], a, b[0], b[1]);
			attn_mma(acc[2 * dt2 + 1], a, b[2], b[3]);
		}
	}
}

// dk, dv for keys [n0, n0 + BLOCK_M) of kv head kvh.
__device__ __forceinline__ void attn_bwd_dkdv(const bf16 *q, const bf16 *k, const bf16 *v, const int *doc, const bf16 *dout,
					      const float *lse, const float *delta, bf16 *dk, bf16 *dv, int tokens, int kb,
					      int kvh, unsigned char *smem, int *slot)
{
	bf16 *sK = (bf16 *)smem;                                  // [BLOCK_M][LDS]
	bf16 *sV = sK + BLOCK_M * ATTN_LDS;                       // [BLOCK_M][LDS]
	bf16 *sStream = sV + BLOCK_M * ATTN_LDS;                  // 2 x { Q, dO: [BLOCK_N][LDS] }
	float *sLse = (float *)(sStream + 4 * BLOCK_N * ATTN_LDS); // [2][BLOCK_N]
	float *sDel = sLse + 2 * BLOCK_N;                         // [2][BLOCK_N]

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const float scale2 = ATTN_LOG2E / sqrtf((float)HD);
	const int n0 = kb * BLOCK_M, n_last = min(n0 + BLOCK_M, tokens) - 1;
	const int mt_first = n0 / BLOCK_N;
	const int mt_end = attn_end_live_query_tile(doc, n_last, mt_first, (tokens + BLOCK_N - 1) / BLOCK_N, slot);
	const int ntiles = mt_end - mt_first; // query tiles per head, >= 1
	const int total = ATTN_G * ntiles;
	const int doc_n0 = __ldg(doc + n0);
	const int j0 = n0 + warp * 16 + g, j1 = j0 + 8; // this thread's two keys
	const int dj0 = __ldg(doc + min(j0, tokens - 1)), dj1 = __ldg(doc + min(j1, tokens - 1));

	attn_load_rows<BLOCK_M>(sK, k + kvh * HD, NKV * HD, n0, tokens);
	attn_load_rows<BLOCK_M>(sV, v + kvh * HD, NKV * HD, n0, tokens);
	{
		const int h = kvh * ATTN_G, m0 = mt_first * BLOCK_N;
		attn_load_rows<BLOCK_N>(sStream, q + h * HD, NH * HD, m0, tokens);
		attn_load_rows<BLOCK_N>(sStream + BLOCK_N * ATTN_LDS, dout + h * HD, NH * HD, m0, tokens);
		attn_load_stats(sLse, lse + (size_t)h * tokens, m0, BLOCK_N, tokens);
		attn_load_stats(sDel, delta + (size_t)h * tokens, m0, BLOCK_N, tokens);
	}
	attn_cp_async_commit();

	float acc_dk[HD / 8][4], acc_dv[HD / 8][4];
#pragma unroll
	for (int dt = 0; dt < HD / 8; dt++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			acc_dk[dt][e] = acc_dv[dt][e] = 0.f;

	for (int it = 0; it < total; it++) {
		const int st = it & 1;
		const int m0 = (mt_first + it % ntiles) * BLOCK_N;
		const bool need_mask = m0 < n_last || m0 + BLOCK_N > tokens || __ldg(doc + min(m0 + BLOCK_N, tokens) - 1) != doc_n0;
		if (it + 1 < total) { // prefetch the next (head, query tile) into the other stage
			const int h = kvh * ATTN_G + (it + 1) / ntiles, m0n = (mt_first + (it + 1) % ntiles) * BLOCK_N;
			bf16 *sn = sStream + (st ^ 1) * 2 * BLOCK_N * ATTN_LDS;
			attn_load_rows<BLOCK_N>(sn, q + h * HD, NH * HD, m0n, tokens);
			attn_load_rows<BLOCK_N>(sn + BLOCK_N * ATTN_LDS, dout + h * HD, NH * HD, m0n, tokens);
			attn_load_stats(sLse + (st ^ 1) * BLOCK_N, lse + (size_t)h * tokens, m0n, BLOCK_N, tokens);
			attn_load_stats(sDel + (st ^ 1) * BLOCK_N, delta + (size_t)h * tokens, m0n, BLOCK_N, tokens);
		}
		attn_cp_async_commit(); // possibly empty: keeps one group per iteration
		attn_cp_async_wait_one();
		__syncthreads();
		const bf16 *sQ = sStream + st * 2 * BLOCK_N * ATTN_LDS, *sdO = sQ + BLOCK_N * ATTN_LDS;
		const float *sl = sLse + st * BLOCK_N, *sd = sDel + st * BLOCK_N;

		// S^T = K Q^T: pt[nt][e] is key (e < 2 ? j0 : j1), query m0 + nt*8 + 2*t4 + (e & 1)
		float pt[BLOCK_N / 8][4];
		attn_mma_abt(pt, sK + warp * 16 * ATTN_LDS, sQ, lane);
		// P^T = exp(scale S^T - lse[query]), 0 off the mask
#pragma unroll
		for (int nt = 0; nt < BLOCK_N / 8; nt++) {
#pragma unroll
			for (int c = 0; c < 2; c++) {
				const int il = nt * 8 + 2 * t4 + c, i = m0 + il;
				const float lb = sl[il] * ATTN_LOG2E;
				float p0 = attn_exp2(fmaf(pt[nt][c], scale2, -lb));
				float p1 = attn_exp2(fmaf(pt[nt][2 + c], scale2, -lb));
				if (need_mask) {
					const int di = i < tokens ? __ldg(doc + i) : 0;
					if (!(j0 <= i && i < tokens && di == dj0))
						p0 = 0.f;
					if (!(j1 <= i && i < tokens && di == dj1))
						p1 = 0.f;
				}
				pt[nt][c] = p0;
				pt[nt][2 + c] = p1;
			}
		}
		// dV += P^T dO
		attn_mma_xb(acc_dv, pt, sdO, lane);
		// dP^T = V dO^T, then dS^T = P^T * (dP^T - delta[query]) in place
		float dst[BLOCK_N / 8][4];
		attn_mma_abt(dst, sV + warp * 16 * ATTN_LDS, sdO, lane);
#pragma unroll
		for (int nt = 0; nt < BLOCK_N / 8; nt++) {
#pragma unroll
			for (int c = 0; c < 2; c++) {
				const float dl = sd[nt * 8 + 2 * t4 + c];
				dst[nt][c] = pt[nt][c] * (dst[nt][c] - dl);
				dst[nt][2 + c] = pt[nt][2 + c] * (dst[nt][2 + c] - dl);
			}
		}
		// dK += dS^T Q (scaled at the end)
		attn_mma_xb(acc_dk, dst, sQ, lane);
		__syncthreads(); // everyone is done with stage st before it is refilled
	}

	attn_cp_async_wait_all();
	attn_stage_rows(sK, acc_dk, 1.f / sqrtf((float)HD), warp, lane);
	attn_stage_rows(sV, acc_dv, 1.f, warp, lane);
	__syncthreads();
	attn_store_rows(dk + kvh * HD, NKV * HD, sK, n0, tokens);
	attn_store_rows(dv + kvh * HD, NKV * HD, sV, n0, tokens);
}

// dq for queries [m0, m0 + BLOCK_M) of head h.
__device__ __forceinline__ void attn_bwd_dq(const bf16 *q, const bf16 *k, const bf16 *v, const int *doc, const bf16 *dout,
					    const float *lse, const float *delta, bf16 *dq, int tokens, int qb, int h,
					    unsigned char *smem, int *slot)
{
	bf16 *sQ = (bf16 *)smem;                  // [BLOCK_M][LDS]
	bf16 *sdO = sQ + BLOCK_M * ATTN_LDS;      // [BLOCK_M][LDS]
	bf16 *sStream = sdO + BLOCK_M * ATTN_LDS; // 2 x { K, V: [BLOCK_N][LDS] }

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const float scale2 = ATTN_LOG2E / sqrtf((float)HD);
	const int kvh = h / ATTN_G;
	const int m0 = qb * BLOCK_M, m_last = min(m0 + BLOCK_M, tokens) - 1;
	const int nb_last = m_last / BLOCK_N;
	const int nb_first = attn_first_live_key_tile(doc, m0, nb_last, slot);
	const int doc_mlast = __ldg(doc + m_last);
	const int row0 = m0 + warp * 16 + g, row1 = row0 + 8; // this thread's two queries
	const int doc0 = __ldg(doc + min(row0, tokens - 1)), doc1 = __ldg(doc + min(row1, tokens - 1));
	const float lb0 = row0 < tokens ? __ldg(lse + (size_t)h * tokens + row0) * ATTN_LOG2E : 0.f;
	const float lb1 = row1 < tokens ? __ldg(lse + (size_t)h * tokens + row1) * ATTN_LOG2E : 0.f;
	const float dl0 = row0 < tokens ? __ldg(delta + (size_t)h * tokens + row0) : 0.f;
	const float dl1 = row1 < tokens ? __ldg(delta + (size_t)h * tokens + row1) : 0.f;

	attn_load_rows<BLOCK_M>(sQ, q + h * HD, NH * HD, m0, tokens);
	attn_load_rows<BLOCK_M>(sdO, dout + h * HD, NH * HD, m0, tokens);
	attn_load_rows<BLOCK_N>(sStream, k + kvh * HD, NKV * HD, nb_last * BLOCK_N, tokens);
	attn_load_rows<BLOCK_N>(sStream + BLOCK_N * ATTN_LDS, v + kvh * HD, NKV * HD, nb_last * BLOCK_N, tokens);
	attn_cp_async_commit();

	float acc_dq[HD / 8][4];
#pragma unroll
	for (int dt = 0; dt < HD / 8; dt++)
		acc_dq[dt][0] = acc_dq[dt][1] = acc_dq[dt][2] = acc_dq[dt][3] = 0.f;

	for (int nb = nb_last, st = 0;; nb--, st ^= 1) {
		const int n0 = nb * BLOCK_N;
		const bool need_mask = n0 + BLOCK_N - 1 > m0 || n0 + BLOCK_N > tokens || __ldg(doc + n0) != doc_mlast;
		const bool more = nb > nb_first;
		if (more) {
			bf16 *sn = sStream + (st ^ 1) * 2 * BLOCK_N * ATTN_LDS;
			attn_load_rows<BLOCK_N>(sn, k + kvh * HD, NKV * HD, n0 - BLOCK_N, tokens);
			attn_load_rows<BLOCK_N>(sn + BLOCK_N * ATTN_LDS, v + kvh * HD, NKV * HD, n0 - BLOCK_N, tokens);
		}
		attn_cp_async_commit();
		attn_cp_async_wait_one();
		__syncthreads();
		const bf16 *sK = sStream + st * 2 * BLOCK_N * ATTN_LDS, *sV = sK + BLOCK_N * ATTN_LDS;

		// S = Q K^T: s[nt][e] is query (e < 2 ? row0 : row1), key n0 + nt*8 + 2*t4 + (e & 1)
		float s[BLOCK_N / 8][4];
		attn_mma_abt(s, sQ + warp * 16 * ATTN_LDS, sK, lane);
#pragma unroll
		for (int nt = 0; nt < BLOCK_N / 8; nt++) {
#pragma unroll
			for (int c = 0; c < 2; c++) {
				const int j = n0 + nt * 8 + 2 * t4 + c;
				float p0 = attn_exp2(fmaf(s[nt][c], scale2, -lb0));
				float p1 = attn_exp2(fmaf(s[nt][2 + c], scale2, -lb1));
				if (need_mask) {
					const int dj = j < tokens ? __ldg(doc + j) : 0;
					if (!(j <= row0 && j < tokens && dj == doc0))
						p0 = 0.f;
					if (!(j <= row1 && j < tokens && dj == doc1))
						p1 = 0.f;
				}
				s[nt][c] = p0;
				s[nt][2 + c] = p1;
			}
		}
		// dP = dO V^T, then dS = P * (dP - delta[query]) in place
		float ds[BLOCK_N / 8][4];
		attn_mma_abt(ds, sdO + warp * 16 * ATTN_LDS, sV, lane);
#pragma unroll
		for (int nt = 0; nt < BLOCK_N / 8; nt++) {
			ds[nt][0] = s[nt][0] * (ds[nt][0] - dl0);
			ds[nt][1] = s[nt][1] * (ds[nt][1] - dl0);
			ds[nt][2] = s[nt][2] * (ds[nt][2] - dl1);
			ds[nt][3] = s[nt][3] * (ds[nt][3] - dl1);
		}
		// dQ += dS K (scaled at the end)
		attn_mma_xb(acc_dq, ds, sK, lane);
		__syncthreads(); // everyone is done with stage st before it is refilled
		if (!more)
			break;
	}

	attn_cp_async_wait_all();
	attn_stage_rows(sQ, acc_dq, 1.f / sqrtf((float)HD), warp, lane);
	__syncthreads();
	attn_store_rows(dq + h * HD, NH * HD, sQ, m0, tokens);
}

#else

// ---------------------------------------------------------------------------------------
// fp32: SIMT
// ---------------------------------------------------------------------------------------

// Rows [r0, r0 + nrows) of one head of a [T, heads, HD] tensor into smem rows of stride ld.
__device__ __forceinline__ void attn_load_rows_f32(float *s, int ld, const float *g, int row_stride, int r0, int nrows, int tokens)
{
	for (int c = threadIdx.x; c < nrows * HD; c += ATTN_THREADS) {
		const int r = c / HD, d = c % HD, row = r0 + r;
		s[r * ld + d] = row < tokens ? g[(size_t)row * row_stride + d] : 0.f;
	}
}

// dk, dv for keys [n0, n0 + BLOCK_M) of kv head kvh. A warp owns 16 keys (rows of S^T);
// lane owns queries lane + 32c of the tile and dims lane + 32dd of dK, dV.
__device__ __forceinline__ void attn_bwd_dkdv(const float *q, const float *k, const float *v, const int *doc,
					      const float *dout, const float *lse, const float *delta, float *dk, float *dv,
					      int tokens, int kb, int kvh, unsigned char *smem, int *slot)
{
	float *sK = (float *)smem;             // [BLOCK_M][HD]
	float *sV = sK + BLOCK_M * HD;         // [BLOCK_M][HD]
	float *sQ = sV + BLOCK_M * HD;         // [BLOCK_N][KLD]
	float *sdO = sQ + BLOCK_N * ATTN_KLD;  // [BLOCK_N][KLD]
	float *sl = sdO + BLOCK_N * ATTN_KLD;  // [BLOCK_N]
	float *sd = sl + BLOCK_N;              // [BLOCK_N]
	float *sP = sd + BLOCK_N;              // [BLOCK_M][BLOCK_N], rows private to their warp

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const float scale2 = ATTN_LOG2E / sqrtf((float)HD);
	const int n0 = kb * BLOCK_M, n_last = min(n0 + BLOCK_M, tokens) - 1;
	const int mt_first = n0 / BLOCK_N;
	const int mt_end = attn_end_live_query_tile(doc, n_last, mt_first, (tokens + BLOCK_N - 1) / BLOCK_N, slot);
	const int ntiles = mt_end - mt_first;
	const int total = ATTN_G * ntiles;
	const int doc_n0 = __ldg(doc + n0);
	const int jbase = n0 + warp * 16; // this warp's keys jbase .. jbase + 15

	attn_load_rows_f32(sK, HD, k + kvh * HD, NKV * HD, n0, BLOCK_M, tokens);
	attn_load_rows_f32(sV, HD, v + kvh * HD, NKV * HD, n0, BLOCK_M, tokens);

	float acc_dk[16][ATTN_DPL], acc_dv[16][ATTN_DPL];
#pragma unroll
	for (int r = 0; r < 16; r++)
#pragma unroll
		for (int dd = 0; dd < ATTN_DPL; dd++)
			acc_dk[r][dd] = acc_dv[r][dd] = 0.f;

	for (int it = 0; it < total; it++) {
		const int h = kvh * ATTN_G + it / ntiles, m0 = (mt_first + it % ntiles) * BLOCK_N;
		const bool need_mask = m0 < n_last || m0 + BLOCK_N > tokens || __ldg(doc + min(m0 + BLOCK_N, tokens) - 1) != doc_n0;
		__syncthreads(); // everyone is done with the previous tile
		attn_load_rows_f32(sQ, ATTN_KLD, q + h * HD, NH * HD, m0, BLOCK_N, tokens);
		attn_load_rows_f32(sdO, ATTN_KLD, dout + h * HD, NH * HD, m0, BLOCK_N, tokens);
		for (int c = threadIdx.x; c < BLOCK_N; c += ATTN_THREADS) {
			const bool ok = m0 + c < tokens;
			sl[c] = ok ? lse[(size_t)h * tokens + m0 + c] * ATTN_LOG2E : 0.f;
			sd[c] = ok ? delta[(size_t)h * tokens + m0 + c] : 0.f;
		}
		__syncthreads();

		// S^T = K Q^T and dP^T = V dO^T
		float pt[16][ATTN_CPL], dst[16][ATTN_CPL];
#pragma unroll
		for (int r = 0; r < 16; r++)
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
				pt[r][c] = dst[r][c] = 0.f;
#pragma unroll 2
		for (int d = 0; d < HD; d += 4) {
			float qv[ATTN_CPL][4], ov[ATTN_CPL][4];
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					qv[c][e] = sQ[(lane + 32 * c) * ATTN_KLD + d + e];
					ov[c][e] = sdO[(lane + 32 * c) * ATTN_KLD + d + e];
				}
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const float4 kr = *(const float4 *)(sK + (warp * 16 + r) * HD + d);
				const float4 vr = *(const float4 *)(sV + (warp * 16 + r) * HD + d);
#pragma unroll
				for (int c = 0; c < ATTN_CPL; c++) {
					pt[r][c] += kr.x * qv[c][0] + kr.y * qv[c][1] + kr.z * qv[c][2] + kr.w * qv[c][3];
					dst[r][c] += vr.x * ov[c][0] + vr.y * ov[c][1] + vr.z * ov[c][2] + vr.w * ov[c][3];
				}
			}
		}

		// P^T, dS^T = P^T * (dP^T - delta); P^T goes to sP for dV
#pragma unroll
		for (int c = 0; c < ATTN_CPL; c++) {
			const int il = lane + 32 * c, i = m0 + il;
			const float lb = sl[il], dl = sd[il];
			const int di = need_mask && i < tokens ? __ldg(doc + i) : 0;
#pragma unroll
			for (int r = 0; r < 16; r++) {
				float p = attn_exp2(fmaf(pt[r][c], scale2, -lb));
				if (need_mask) {
					const int j = jbase + r;
					if (!(j <= i && i < tokens && di == __ldg(doc + min(j, tokens - 1))))
						p = 0.f;
				}
				sP[(warp * 16 + r) * BLOCK_N + il] = p;
				dst[r][c] = p * (dst[r][c] - dl);
			}
		}
		__syncwarp();
		// dV += P^T dO
#pragma unroll 2
		for (int i = 0; i < BLOCK_N; i += 4) {
			float ov[ATTN_DPL][4];
#pragma unroll
			for (int dd = 0; dd < ATTN_DPL; dd++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					ov[dd][e] = (HD % 32 == 0 || lane + 32 * dd < HD) ? sdO[(i + e) * ATTN_KLD + lane + 32 * dd] : 0.f;
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const float4 p = *(const float4 *)(sP + (warp * 16 + r) * BLOCK_N + i);
#pragma unroll
				for (int dd = 0; dd < ATTN_DPL; dd++)
					acc_dv[r][dd] += p.x * ov[dd][0] + p.y * ov[dd][1] + p.z * ov[dd][2] + p.w * ov[dd][3];
			}
		}
		__syncwarp();
#pragma unroll
		for (int r = 0; r < 16; r++)
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
				sP[(warp * 16 + r) * BLOCK_N + lane + 32 * c] = dst[r][c];
		__syncwarp();
		// dK += dS^T Q
#pragma unroll 2
		for (int i = 0; i < BLOCK_N; i += 4) {
			float qv[ATTN_DPL][4];
#pragma unroll
			for (int dd = 0; dd < ATTN_DPL; dd++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					qv[dd][e] = (HD % 32 == 0 || lane + 32 * dd < HD) ? sQ[(i + e) * ATTN_KLD + lane + 32 * dd] : 0.f;
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const float4 p = *(const float4 *)(sP + (warp * 16 + r) * BLOCK_N + i);
#pragma unroll
				for (int dd = 0; dd < ATTN_DPL; dd++)
					acc_dk[r][dd] += p.x * qv[dd][0] + p.y * qv[dd][1] + p.z * qv[dd][2] + p.w * qv[dd][3];
			}
		}
	}

	const float scale = 1.f / sqrtf((float)HD);
#pragma unroll
	for (int r = 0; r < 16; r++) {
		const int j = jbase + r;
		if (j >= tokens)
			break;
#pragma unroll
		for (int dd = 0; dd < ATTN_DPL; dd++) {
			const int d = lane + 32 * dd;
			if (HD % 32 == 0 || d < HD) {
				dk[(size_t)j * NKV * HD + kvh * HD + d] = acc_dk[r][dd] * scale;
				dv[(size_t)j * NKV * HD + kvh * HD + d] = acc_dv[r][dd];
			}
		}
	}
}

// dq for queries [m0, m0 + BLOCK_M) of head h. A warp owns 16 queries; lane owns keys
// lane + 32c of the tile and dims lane + 32dd of dQ.
__device__ __forceinline__ void attn_bwd_dq(const float *q, const float *k, const float *v, const int *doc, const float *dout,
					    const float *lse, const float *delta, float *dq, int tokens, int qb, int h,
					    unsigned char *smem, int *slot)
{
	float *sQ = (float *)smem;                      // [BLOCK_M][HD]
	float *sdO = sQ + BLOCK_M * HD;                 // [BLOCK_M][HD]
	float *sK = sdO + BLOCK_M * HD;                 // [BLOCK_N][KLD]
	float *sV = sK + BLOCK_N * ATTN_KLD;            // [BLOCK_N][KLD]
	float *sP = sV + BLOCK_N * ATTN_KLD + 2 * BLOCK_N; // [BLOCK_M][BLOCK_N] (same place as in dkdv)

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const float scale2 = ATTN_LOG2E / sqrtf((float)HD);
	const int kvh = h / ATTN_G;
	const int m0 = qb * BLOCK_M, m_last = min(m0 + BLOCK_M, tokens) - 1;
	const int nb_last = m_last / BLOCK_N;
	const int doc_mlast = __ldg(doc + m_last);
	const int rbase = m0 + warp * 16; // this warp's queries rbase .. rbase + 15

	attn_load_rows_f32(sQ, HD, q + h * HD, NH * HD, m0, BLOCK_M, tokens);
	attn_load_rows_f32(sdO, HD, dout + h * HD, NH * HD, m0, BLOCK_M, tokens);
	const int nb_first = attn_first_live_key_tile(doc, m0, nb_last, slot); // syncs: sQ, sdO ready

	float lb[16], dl[16], acc_dq[16][ATTN_DPL];
#pragma unroll
	for (int r = 0; r < 16; r++) {
		const int row = rbase + r;
		lb[r] = row < tokens ? __ldg(lse + (size_t)h * tokens + row) * ATTN_LOG2E : 0.f;
		dl[r] = row < tokens ? __ldg(delta + (size_t)h * tokens + row) : 0.f;
#pragma unroll
		for (int dd = 0; dd < ATTN_DPL; dd++)
			acc_dq[r][dd] = 0.f;
	}

	for (int nb = nb_last; nb >= nb_first; nb--) {
		const int n0 = nb * BLOCK_N;
		const bool need_mask = n0 + BLOCK_N - 1 > m0 || n0 + BLOCK_N > tokens || __ldg(doc + n0) != doc_mlast;
		__syncthreads(); // everyone is done with the previous tile
		attn_load_rows_f32(sK, ATTN_KLD, k + kvh * HD, NKV * HD, n0, BLOCK_N, tokens);
		attn_load_rows_f32(sV, ATTN_KLD, v + kvh * HD, NKV * HD, n0, BLOCK_N, tokens);
		__syncthreads();

		// S = Q K^T and dP = dO V^T
		float s[16][ATTN_CPL], ds[16][ATTN_CPL];
#pragma unroll
		for (int r = 0; r < 16; r++)
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
				s[r][c] = ds[r][c] = 0.f;
#pragma unroll 2
		for (int d = 0; d < HD; d += 4) {
			float kv[ATTN_CPL][4], vv[ATTN_CPL][4];
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					kv[c][e] = sK[(lane + 32 * c) * ATTN_KLD + d + e];
					vv[c][e] = sV[(lane + 32 * c) * ATTN_KLD + d + e];
				}
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const float4 qr = *(const float4 *)(sQ + (warp * 16 + r) * HD + d);
				const float4 orow = *(const float4 *)(sdO + (warp * 16 + r) * HD + d);
#pragma unroll
				for (int c = 0; c < ATTN_CPL; c++) {
					s[r][c] += qr.x * kv[c][0] + qr.y * kv[c][1] + qr.z * kv[c][2] + qr.w * kv[c][3];
					ds[r][c] += orow.x * vv[c][0] + orow.y * vv[c][1] + orow.z * vv[c][2] + orow.w * vv[c][3];
				}
			}
		}

		// P, dS = P * (dP - delta) -> sP
#pragma unroll
		for (int c = 0; c < ATTN_CPL; c++) {
			const int j = n0 + lane + 32 * c;
			const int dj = need_mask && j < tokens ? __ldg(doc + j) : 0;
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const int row = rbase + r;
				float p = attn_exp2(fmaf(s[r][c], scale2, -lb[r]));
				if (need_mask && !(j <= row && j < tokens && dj == __ldg(doc + min(row, tokens - 1))))
					p = 0.f;
				sP[(warp * 16 + r) * BLOCK_N + lane + 32 * c] = p * (ds[r][c] - dl[r]);
			}
		}
		__syncwarp();
		// dQ += dS K
#pragma unroll 2
		for (int j = 0; j < BLOCK_N; j += 4) {
			float kv[ATTN_DPL][4];
#pragma unroll
			for (int dd = 0; dd < ATTN_DPL; dd++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					kv[dd][e] = (HD % 32 == 0 || lane + 32 * dd < HD) ? sK[(j + e) * ATTN_KLD + lane + 32 * dd] : 0.f;
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const float4 p = *(const float4 *)(sP + (warp * 16 + r) * BLOCK_N + j);
#pragma unroll
				for (int dd = 0; dd < ATTN_DPL; dd++)
					acc_dq[r][dd] += p.x * kv[dd][0] + p.y * kv[dd][1] + p.z * kv[dd][2] + p.w * kv[dd][3];
			}
		}
	}

	const float scale = 1.f / sqrtf((float)HD);
#pragma unroll
	for (int r = 0; r < 16; r++) {
		const int row = rbase + r;
		if (row >= tokens)
			break;
#pragma unroll
		for (int dd = 0; dd < ATTN_DPL; dd++) {
			const int d = lane + 32 * dd;
			if (HD % 32 == 0 || d < HD)
				dq[(size_t)row * NH * HD + h * HD + d] = acc_dq[r][dd] * scale;
		}
	}
}

#endif

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
	MOEC_KERNEL(const act_t *q, const act_t *k, const act_t *v, const int *doc, const act_t *dout, const float *lse,
		    const float *delta, act_t *dq, act_t *dk, act_t *dv, int tokens)
{
	extern __shared__ __align__(16) unsigned char attn_smem[];
	__shared__ int slot;
	unsigned dyn;
	asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
	if (dyn < ATTN_BWD_SMEM) // launched with too little dynamic smem: fail loudly, not corrupt
		asm volatile("trap;");
	const int nb = (tokens + BLOCK_M - 1) / BLOCK_M;
	const int b = blockIdx.x;
	if (b < NKV * nb) {
		attn_bwd_dkdv(q, k, v, doc, dout, lse, delta, dk, dv, tokens, b / NKV, b % NKV, attn_smem, &slot);
	} else {
		const int b2 = b - NKV * nb;
		attn_bwd_dq(q, k, v, doc, dout, lse, delta, dq, tokens, nb - 1 - b2 / NH, b2 % NH, attn_smem, &slot);
	}
}

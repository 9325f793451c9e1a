// attention_fwd.cu - causal GQA flash attention forward with document masking: out and lse.
// moec: constants NH NKV HD ACT_BF16 BLOCK_M BLOCK_N
// moec: launch grid=(NH, (tokens + BLOCK_M - 1) / BLOCK_M) block=(2 * BLOCK_M)
//
// T = tokens of the micro-batch on this rank (runtime), all of its rows as one stream;
// NH query heads, NKV kv heads, HD head dim, G = NH / NKV query heads per kv head.
// Shapes: q [T, NH, HD] act_t (after q_norm and RoPE), k, v [T, NKV, HD] act_t (after k_norm
//         and RoPE), doc [T] int, out [T, NH, HD] act_t, lse [NH, T] float.
//
// out[i, h] = sum_j softmax_j(HD^-0.5 * q[i, h] . k[j, h / G]) v[j, h / G] over the j with
// j <= i and doc[j] == doc[i]; lse[h, i] = log sum_j exp(HD^-0.5 * q[i, h] . k[j, h / G])
// over the same j (natural log, fp32), what the backward recomputes the softmax from.
//
// Precondition (what packing gives): every document is one contiguous run of tokens whose
// id no other run uses (also across micro-batch rows: two rows never share an id). Tile
// skipping relies on it; masking itself tests doc[j] == doc[i]. tokens >= 1 (the launcher
// skips an empty micro-batch). Pointers 16-byte aligned.
//
// Launch: block (x = head h, y = query tile); the y order is reversed so the longest query
// tiles (the last ones, which see the most keys) start first, and the G heads of one kv head
// sit next to each other in x, so their K/V tiles are read from L2 while still there.
// Threads: BLOCK_M / 16 warps; each warp owns 16 query rows.
//
// bf16 (ACT_BF16=1): FlashAttention-2 on mma.sync.m16n8k16 (sm_80+; runs on sm_90a), fp32
// accumulators and softmax statistics. Q fragments live in registers; K and V tiles of
// BLOCK_N rows go through shared memory by cp.async, V loading while S = Q K^T is computed
// and the next K while O += P V is. Rows are padded to HD + 8 elements so ldmatrix is free of
// bank conflicts. Static smem: max(BLOCK_M, 2 * BLOCK_N) * (HD + 8) * 2 bytes (<= 48 KB,
// checked). Suggested: BLOCK_M = 128, BLOCK_N = 64 for HD = 128; BLOCK_M = 64, BLOCK_N = 64
// for HD <= 64.
// fp32 (ACT_BF16=0): SIMT, fp32 FMAs (exp2 by ex2.approx, ~2 ulp). Each warp owns 16 query
// rows, a lane owns BLOCK_N / 32 keys of the tile for S and HD / 32 dims of the output. Static smem:
// 4 * (BLOCK_M * HD + BLOCK_N * (2 * HD + 1) + BLOCK_M * BLOCK_N) bytes (<= 48 KB, checked).
// Suggested: BLOCK_N = 32; BLOCK_M = 64 for HD <= 64, 16 for HD = 128.
//
// Fully masked key tiles are never visited: the loop walks key tiles from the diagonal
// down and stops at the first one that ends before the document of the tile's first row
// begins. Tiles that are wholly visible (below the diagonal, one document) skip the mask.
#include "moec_device.cuh"
#include "mma_sm80.cuh"

#define ATTN_G (NH / NKV)
#define ATTN_WARPS (BLOCK_M / 16)
#define ATTN_THREADS (32 * ATTN_WARPS)
#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

static_assert(NH % NKV == 0, "attention_fwd: NH must be a multiple of NKV");
static_assert(HD % 16 == 0 && HD <= 256, "attention_fwd: HD must be a multiple of 16, at most 256");
static_assert(BLOCK_M % 16 == 0 && BLOCK_M >= 16 && BLOCK_M <= 256, "attention_fwd: BLOCK_M must be 16..256, a multiple of 16");

__device__ __forceinline__ float attn_neg_inf(void)
{
	return __int_as_float(0xff800000);
}

// Lowest key tile (of BLOCK_N keys) that any query row in [m0, m0 + BLOCK_M) can see: key
// tile nb is dead when it ends before m0 in another document than m0's (contiguous
// documents: so does every earlier tile). The block searches tiles [0, nb_last) in parallel
// and keeps the highest dead one; nb_last itself holds the diagonal and is always live.
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

#if ACT_BF16

// ---------------------------------------------------------------------------------------
// bf16: tensor cores
// ---------------------------------------------------------------------------------------

#define ATTN_LDS (HD + 8) // smem row stride (elements): 16 bytes of padding per row
#define ATTN_SMEM_ROWS (BLOCK_M > 2 * BLOCK_N ? BLOCK_M : 2 * BLOCK_N)
static_assert(BLOCK_N % 16 == 0 && BLOCK_N >= 16, "attention_fwd: BLOCK_N must be a multiple of 16");
static_assert(ATTN_SMEM_ROWS * ATTN_LDS * 2 <= 48 * 1024, "attention_fwd: tiles need more than 48 KB of static smem");

// Rows [r0, r0 + NROWS) of one head of a [T, heads, HD] tensor (g points at row 0 of the
// head; row_stride = heads * HD) into smem rows of ATTN_LDS elements; rows >= T get zeros.
template <int NROWS>
__device__ __forceinline__ void attn_load_rows(bf16 *s, const bf16 *g, int row_stride, int r0, int tokens)
{
	constexpr int CH = HD / 8; // 16-byte chunks per row
	for (int c = threadIdx.x; c < NROWS * CH; c += ATTN_THREADS) {
		const int r = c / CH, cc = c % CH, row = r0 + r;
		const bool ok = row < tokens;
		attn_cp_async16(s + r * ATTN_LDS + cc * 8, g + (size_t)(ok ? row : 0) * row_stride + cc * 8, ok ? 16 : 0);
	}
}

__device__ __forceinline__ void attention_fwd_bf16(const bf16 *q, const bf16 *k, const bf16 *v, const int *doc, bf16 *out,
						   float *lse, int tokens)
{
	__shared__ __align__(16) bf16 smem[ATTN_SMEM_ROWS * ATTN_LDS];
	__shared__ int slot;
	bf16 *sQ = smem;                     // [BLOCK_M][LDS], only until Q is in registers
	bf16 *sK = smem;                     // [BLOCK_N][LDS]
	bf16 *sV = smem + BLOCK_N * ATTN_LDS; // [BLOCK_N][LDS]

	const int h = blockIdx.x, kvh = h / ATTN_G;
	const int m0 = (gridDim.y - 1 - blockIdx.y) * BLOCK_M;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int g = lane >> 2, t4 = lane & 3; // fragment row group, thread in group
	const bf16 *qh = q + h * HD, *kh = k + kvh * HD, *vh = v + kvh * HD;
	const float scale2 = ATTN_LOG2E / sqrtf((float)HD); // softmax in base 2

	attn_load_rows<BLOCK_M>(sQ, qh, NH * HD, m0, tokens);
	attn_cp_async_commit();

	const int m_last = min(m0 + BLOCK_M, tokens) - 1; // last real query row
	const int nb_last = m_last / BLOCK_N;             // key tile holding the diagonal
	const int nb_first = attn_first_live_key_tile(doc, m0, nb_last, &slot);
	const int doc_mlast = __ldg(doc + m_last);
	const int row0 = m0 + warp * 16 + g, row1 = row0 + 8; // this thread's two rows
	const int doc0 = __ldg(doc + min(row0, tokens - 1)), doc1 = __ldg(doc + min(row1, tokens - 1));

	attn_cp_async_wait_all();
	__syncthreads();
	unsigned qf[HD / 16][4]; // A fragments of this warp's 16 rows
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++)
		attn_ldsm_x4(qf[kk], sQ + (warp * 16 + (lane & 15)) * ATTN_LDS + kk * 16 + (lane >> 4) * 8);
	__syncthreads(); // sQ is sK from here on

	float o[HD / 8][4];
#pragma unroll
	for (int dt = 0; dt < HD / 8; dt++)
		o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
	float mrow[2] = {attn_neg_inf(), attn_neg_inf()}; // running max (base 2, scaled)
	float lrow[2] = {0.f, 0.f};                       // this thread's part of the row sum

	attn_load_rows<BLOCK_N>(sK, kh, NKV * HD, nb_last * BLOCK_N, tokens);
	attn_cp_async_commit();
	for (int nb = nb_last;; nb--) {
		const int n0 = nb * BLOCK_N;
		const bool need_mask = n0 + BLOCK_N - 1 > m0 || n0 + BLOCK_N > tokens || __ldg(doc + n0) != doc_mlast;
		attn_cp_async_wait_all(); // K tile nb
		__syncthreads();          // ... visible to all; everyone is done with the last V
		attn_load_rows<BLOCK_N>(sV, vh, NKV * HD, n0, tokens);
		attn_cp_async_commit();

		// S = Q K^T (16 x BLOCK_N per warp)
		float s[BLOCK_N / 8][4];
#pragma unroll
		for (int nt = 0; nt < BLOCK_N / 8; nt++)
			s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
		for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
			for (int nt2 = 0; nt2 < BLOCK_N / 16; nt2++) {
				unsigned b[4];
				attn_ldsm_x4(b, sK + (nt2 * 16 + (lane & 7) + (lane >> 4) * 8) * ATTN_LDS + kk * 16 +
							((lane >> 3) & 1) * 8);
				attn_mma(s[2 * nt2], qf[kk], b[0], b[1]);
				attn_mma(s[2 * nt2 + 1], qf[kk], b[2], b[3]);
			}
		}

		// causal + document mask; s[nt][e]: row (e < 2 ? row0 : row1), key n0 + nt*8 + 2*t4 + (e & 1)
		if (need_mask) {
#pragma unroll
			for (int nt = 0; nt < BLOCK_N / 8; nt++) {
#pragma unroll
				for (int c = 0; c < 2; c++) {
					const int j = n0 + nt * 8 + 2 * t4 + c;
					const int dj = j < tokens ? __ldg(doc + j) : doc0 - 1;
					if (!(j <= row0 && j < tokens && dj == doc0))
						s[nt][c] = attn_neg_inf();
					if (!(j <= row1 && j < tokens && dj == doc1))
						s[nt][2 + c] = attn_neg_inf();
				}
			}
		}

		// online softmax: rescale the running sums, s becomes P
#pragma unroll
		for (int r = 0; r < 2; r++) {
			float mx = attn_neg_inf();
#pragma unroll
			for (int nt = 0; nt < BLOCK_N / 8; nt++)
				mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
			const float m_new = fmaxf(mrow[r], mx * scale2);
			// a row with every key masked so far keeps m = -inf; subtract 0 so exp2 gives 0, not NaN
			const float base = m_new == attn_neg_inf() ? 0.f : m_new;
			const float alpha = attn_exp2(mrow[r] - base);
			mrow[r] = m_new;
			float sum = 0.f;
#pragma unroll
			for (int nt = 0; nt < BLOCK_N / 8; nt++) {
#pragma unroll
				for (int c = 0; c < 2; c++) {
					const float p = attn_exp2(fmaf(s[nt][2 * r + c], scale2, -base));
					s[nt][2 * r + c] = p;
					sum += p;
				}
			}
			lrow[r] = lrow[r] * alpha + sum;
#pragma unroll
			for (int dt = 0; dt < HD / 8; dt++) {
				o[dt][2 * r] *= alpha;
				o[dt][2 * r + 1] *= alpha;
			}
		}

		attn_cp_async_wait_all(); // V tile nb
		__syncthreads();          // ... visible to all; everyone is done with K
		const bool more = nb > nb_first;
		if (more) {
			attn_load_rows<BLOCK_N>(sK, kh, NKV * HD, n0 - BLOCK_N, tokens);
			attn_cp_async_commit();
		}

		// O += P V: the S accumulators of key columns 16kc..16kc+15 are the A fragment
#pragma unroll
		for (int kc = 0; kc < BLOCK_N / 16; kc++) {
			unsigned a[4];
			a[0] = attn_pack(s[2 * kc][0], s[2 * kc][1]);
			a[1] = attn_pack(s[2 * kc][2], s[2 * kc][3]);
			a[2] = attn_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]);
			a[3] = attn_pack(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
			for (int dt2 = 0; dt2 < HD / 16; dt2++) {
				unsigned b[4];
				attn_ldsm_x4_trans(b, sV + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ATTN_LDS + dt2 * 16 +
							      (lane >> 4) * 8);
				attn_mma(o[2 * dt2], a, b[0], b[1]);
				attn_mma(o[2 * dt2 + 1], a, b[2], b[3]);
			}
		}
		if (!more)
			break;
	}

	// normalize; stage the bf16 tile in smem so the global stores are 16-byte and coalesced
	float inv[2];
#pragma unroll
	for (int r = 0; r < 2; r++) {
		float l = lrow[r];
		l += __shfl_xor_sync(0xffffffffu, l, 1);
		l += __shfl_xor_sync(0xffffffffu, l, 2);
		inv[r] = 1.f / l;
		const int row = r ? row1 : row0;
		if (t4 == 0 && row < tokens)
			lse[(size_t)h * tokens + row] = mrow[r] * ATTN_LN2 + logf(l);
	}
	__syncthreads(); // everyone is done with sV
	bf16 *sO = smem;
#pragma unroll
	for (int dt = 0; dt < HD / 8; dt++) {
		*(unsigned *)(sO + (warp * 16 + g) * ATTN_LDS + dt * 8 + 2 * t4) = attn_pack(o[dt][0] * inv[0], o[dt][1] * inv[0]);
		*(unsigned *)(sO + (warp * 16 + g + 8) * ATTN_LDS + dt * 8 + 2 * t4) =
			attn_pack(o[dt][2] * inv[1], o[dt][3] * inv[1]);
	}
	__syncthreads();
	constexpr int CH = HD / 8;
	for (int c = threadIdx.x; c < BLOCK_M * CH; c += ATTN_THREADS) {
		const int r = c / CH, cc = c % CH, row = m0 + r;
		if (row < tokens)
			*(uint4 *)(out + (size_t)row * NH * HD + h * HD + cc * 8) = *(const uint4 *)(sO + r * ATTN_LDS + cc * 8);
	}
}

#else

// ---------------------------------------------------------------------------------------
// fp32: SIMT
// ---------------------------------------------------------------------------------------

#define ATTN_CPL (BLOCK_N / 32)      // keys per lane in S
#define ATTN_DPL ((HD + 31) / 32)   // output dims per lane
#define ATTN_KLD (HD + 1)           // sK row stride: lane-per-key reads hit distinct banks
static_assert(BLOCK_N % 32 == 0 && BLOCK_N >= 32, "attention_fwd: fp32 BLOCK_N must be a multiple of 32");
static_assert(4 * (BLOCK_M * HD + BLOCK_N * (2 * HD + 1) + BLOCK_M * BLOCK_N) <= 48 * 1024,
	      "attention_fwd: fp32 tiles need more than 48 KB of static smem");

__device__ __forceinline__ void attention_fwd_f32(const float *q, const float *k, const float *v, const int *doc, float *out,
						  float *lse, int tokens)
{
	__shared__ __align__(16) float sQ[BLOCK_M * HD];      // query rows (broadcast reads)
	__shared__ float sK[BLOCK_N * ATTN_KLD];              // keys, a lane per key
	__shared__ float sV[BLOCK_N * HD];                    // values, a lane per dim
	__shared__ __align__(16) float sP[BLOCK_M * BLOCK_N]; // P rows, private to their warp
	__shared__ int slot;

	const int h = blockIdx.x, kvh = h / ATTN_G;
	const int m0 = (gridDim.y - 1 - blockIdx.y) * BLOCK_M;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const float *qh = q + h * HD, *kh = k + kvh * HD, *vh = v + kvh * HD;
	const float scale2 = ATTN_LOG2E / sqrtf((float)HD);

	for (int c = threadIdx.x; c < BLOCK_M * HD; c += ATTN_THREADS) {
		const int row = m0 + c / HD;
		sQ[c] = row < tokens ? qh[(size_t)row * NH * HD + c % HD] : 0.f;
	}
	const int m_last = min(m0 + BLOCK_M, tokens) - 1;
	const int nb_last = m_last / BLOCK_N;
	const int nb_first = attn_first_live_key_tile(doc, m0, nb_last, &slot); // syncs: sQ ready
	const int doc_mlast = __ldg(doc + m_last);
	const int rbase = m0 + warp * 16; // this warp's rows rbase .. rbase + 15

	float o[16][ATTN_DPL], mrow[16], lrow[16]; // lrow: this lane's part of the row sum
#pragma unroll
	for (int r = 0; r < 16; r++) {
		mrow[r] = attn_neg_inf();
		lrow[r] = 0.f;
#pragma unroll
		for (int dd = 0; dd < ATTN_DPL; dd++)
			o[r][dd] = 0.f;
	}

	for (int nb = nb_last; nb >= nb_first; nb--) {
		const int n0 = nb * BLOCK_N;
		const bool need_mask = n0 + BLOCK_N - 1 > m0 || n0 + BLOCK_N > tokens || __ldg(doc + n0) != doc_mlast;
		__syncthreads(); // everyone is done with the previous tile
		for (int c = threadIdx.x; c < BLOCK_N * HD; c += ATTN_THREADS) {
			const int r = c / HD, d = c % HD, row = n0 + r;
			const bool ok = row < tokens;
			sK[r * ATTN_KLD + d] = ok ? kh[(size_t)row * NKV * HD + d] : 0.f;
			sV[c] = ok ? vh[(size_t)row * NKV * HD + d] : 0.f;
		}
		__syncthreads();

		// S: lane owns keys lane + 32c
		float s[16][ATTN_CPL];
#pragma unroll
		for (int r = 0; r < 16; r++)
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
				s[r][c] = 0.f;
#pragma unroll 2
		for (int d = 0; d < HD; d += 4) {
			float kv[ATTN_CPL][4];
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					kv[c][e] = sK[(lane + 32 * c) * ATTN_KLD + d + e];
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const float4 qv = *(const float4 *)(sQ + (warp * 16 + r) * HD + d);
#pragma unroll
				for (int c = 0; c < ATTN_CPL; c++)
					s[r][c] += qv.x * kv[c][0] + qv.y * kv[c][1] + qv.z * kv[c][2] + qv.w * kv[c][3];
			}
		}

		int dj[ATTN_CPL];
#pragma unroll
		for (int c = 0; c < ATTN_CPL; c++) {
			const int j = n0 + lane + 32 * c;
			dj[c] = need_mask && j < tokens ? __ldg(doc + j) : 0;
		}
#pragma unroll
		for (int r = 0; r < 16; r++) {
			const int row = rbase + r;
			if (need_mask) {
				const int dr = __ldg(doc + min(row, tokens - 1));
#pragma unroll
				for (int c = 0; c < ATTN_CPL; c++) {
					const int j = n0 + lane + 32 * c;
					if (!(j <= row && j < tokens && dj[c] == dr))
						s[r][c] = attn_neg_inf();
				}
			}
			float mx = attn_neg_inf();
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++)
				mx = fmaxf(mx, s[r][c]);
			mx = warp_max(mx);
			const float m_new = fmaxf(mrow[r], mx * scale2);
			const float base = m_new == attn_neg_inf() ? 0.f : m_new;
			const float alpha = attn_exp2(mrow[r] - base);
			mrow[r] = m_new;
			float sum = 0.f;
#pragma unroll
			for (int c = 0; c < ATTN_CPL; c++) {
				const float p = attn_exp2(fmaf(s[r][c], scale2, -base));
				sP[(warp * 16 + r) * BLOCK_N + lane + 32 * c] = p;
				sum += p;
			}
			lrow[r] = lrow[r] * alpha + sum;
#pragma unroll
			for (int dd = 0; dd < ATTN_DPL; dd++)
				o[r][dd] *= alpha;
		}
		__syncwarp();

		// O += P V: lane owns dims lane + 32dd
#pragma unroll 2
		for (int j = 0; j < BLOCK_N; j += 4) {
			float vv[ATTN_DPL][4];
#pragma unroll
			for (int dd = 0; dd < ATTN_DPL; dd++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					vv[dd][e] = (HD % 32 == 0 || lane + 32 * dd < HD) ? sV[(j + e) * HD + lane + 32 * dd] : 0.f;
#pragma unroll
			for (int r = 0; r < 16; r++) {
				const float4 p = *(const float4 *)(sP + (warp * 16 + r) * BLOCK_N + j);
#pragma unroll
				for (int dd = 0; dd < ATTN_DPL; dd++)
					o[r][dd] += p.x * vv[dd][0] + p.y * vv[dd][1] + p.z * vv[dd][2] + p.w * vv[dd][3];
			}
		}
		__syncwarp(); // sP is rewritten by this warp next tile
	}

#pragma unroll
	for (int r = 0; r < 16; r++) {
		const int row = rbase + r;
		const float l = warp_sum(lrow[r]);
		if (row >= tokens)
			continue;
		const float inv = 1.f / l;
		if (lane == 0)
			lse[(size_t)h * tokens + row] = mrow[r] * ATTN_LN2 + logf(l);
#pragma unroll
		for (int dd = 0; dd < ATTN_DPL; dd++)
			if (HD % 32 == 0 || lane + 32 * dd < HD)
				out[(size_t)row * NH * HD + h * HD + lane + 32 * dd] = o[r][dd] * inv;
	}
}

#endif

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
	MOEC_KERNEL(const act_t *q, const act_t *k, const act_t *v, const int *doc, act_t *out, float *lse, int tokens)
{
#if ACT_BF16
	attention_fwd_bf16(q, k, v, doc, out, lse, tokens);
#else
	attention_fwd_f32(q, k, v, doc, out, lse, tokens);
#endif
}

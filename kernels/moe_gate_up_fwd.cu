// moe_gate_up_fwd.cu - grouped expert gate/up GEMM with SwiGLU fused: h = silu(x w_g^T) * (x w_u^T).
// moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES PERSIST
// moec: launch grid=(min(((rows + TILE_M - 1) / TILE_M + E_LOCAL) * ((I + TILE_N/2 - 1) / (TILE_N/2)), PERSIST ? PERSIST : 2147483647)) block=(TILE_M*TILE_N/(ACT_BF16 ? 128 : 16)) smem=(ACT_BF16 ? STAGES*(TILE_M+TILE_N)*TILE_K*2 : TILE_K*(TILE_M+TILE_N+8)*4)
//
// E = E_LOCAL experts on this rank, rows = rows of the permuted buffer (>= offsets[E]).
// Shapes: x [rows, H] act_t (expert-contiguous: expert e owns rows offsets[e]..offsets[e+1]),
//         w_gate_up [E, 2I, H] act_t (rows 0..I-1 gate_proj, I..2I-1 up_proj, nn.Linear layout),
//         offsets [E+1] int (exclusive prefix sums of rows per expert; device memory),
//         h [rows, I] act_t = silu(gate) * up,
//         gu [rows, 2I] act_t = the pre-activations (gate | up), saved for the backward;
//            may be NULL when the caller does not keep it (h is the same either way).
// Rows past offsets[E] are not written.
//
// Work: tiles (m-tile of one expert, n-tile of TILE_N/2 gate columns j0.. plus the same
// TILE_N/2 up columns I+j0..), numbered tile = mtile * NT + ntile (n fastest: the CTAs that
// run together share x rows and one expert's weights in L2), walked by the CTAs with stride
// gridDim.x. m-tiles are numbered expert by expert from a table each CTA builds from offsets
// (moe_mtile_table): no host sync on counts. The launch line's grid is the bound (one tile
// per CTA); any smaller grid is also correct (see moe_gemm.cuh). With PERSIST > 0 (moe_gemm.cuh, off by
// default) the grid is capped at PERSIST CTAs, and each issues its next tile's first K stages
// right after a tile's K loop, so they load during the epilogue (moe_gemm_tile).
// Epilogue: each thread holds gate(m, j) and up(m, j) in fp32 registers, writes gu rounded
// to act_t and h = silu(gate) * up computed from gate and up rounded to act_t (swiglu.cuh):
// h is a function of the stored gu, so swiglu_fwd rebuilds it from a saved gu bit for bit.
// Tiles: defaults and smem in moe_gemm.cuh (bf16 128x256x64 = 128 gate + 128 up columns,
// 144 KB smem: the host must raise CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
#include "moe_gemm.cuh"

typedef MOE_GEMM(true, true) gemm_t;

extern "C" __global__ void __launch_bounds__(gemm_t::THREADS, 1)
MOEC_KERNEL(const act_t *x, const act_t *w_gate_up, const int *offsets, act_t *h, act_t *gu, int rows)
{
	extern __shared__ __align__(1024) unsigned char smem[];
	__shared__ int s_off[E_LOCAL + 1], s_pre[E_LOCAL + 1];
	constexpr int JT = TILE_N / 2;        // gate (and up) columns per tile
	constexpr int NT = (I + JT - 1) / JT; // n-tiles
	const int tiles = moe_mtile_table<E_LOCAL, TILE_M, gemm_t::THREADS>(offsets, rows, s_off, s_pre) * NT;

	// A = x rows of the tile; B = gate rows j0.. in the first half, up rows I+j0.. in the second.
	auto ops_of = [&](const moe_mtile &t, int j0, moe_operand &a, moe_operand &b) {
		a = moe_op(x, H, t.row0, t.row_end, TILE_M / 2, 0, H);
		b.p = w_gate_up + (long long)t.e * (2 * I) * H;
		b.ld = H;
		b.r0 = j0;
		b.r1 = I + j0;
		b.rv0 = b.rv1 = I - j0;
		b.k0 = 0;
		b.kend = H;
	};
	const auto operands = moe_mtile_operands<E_LOCAL, TILE_M, NT, JT>(s_off, s_pre, ops_of);
	gemm_t g;
	int ready = -1; // PERSIST: the tile whose prologue is in flight (moe_gemm_tile)
	for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
		const moe_mtile t = moe_mtile_at<E_LOCAL, TILE_M>(tile / NT, s_off, s_pre);
		const int j0 = tile % NT * JT;
		moe_operand a, b;
		ops_of(t, j0, a, b);
		moe_gemm_tile(g, smem, a, b, tile, tiles, ready, operands);

#pragma unroll
		for (int f = 0; f < gemm_t::NFRAG; f++) {
			int r, c;
			float v[4]; // gate(r, c), gate(r, c+1), up(r, c), up(r, c+1)
			g.frag(f, r, c, v);
			const int row = t.row0 + r, j = j0 + c;
			if (row >= t.row_end)
				continue;
			const float h0 = swiglu(v[0], v[2]);
			const float h1 = swiglu(v[1], v[3]);
			moe_store_pair(h + (long long)row * I, j, I, h0, h1);
			if (gu) {
				act_t *gr = gu + (long long)row * (2 * I);
				moe_store_pair(gr, j, I, v[0], v[1]);
				moe_store_pair(gr + I, j, I, v[2], v[3]);
			}
		}
	}
}

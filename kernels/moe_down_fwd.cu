// moe_down_fwd.cu - grouped expert down GEMM: y_perm = h @ w_down[e]^T per expert segment.
// moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES PERSIST
// moec: launch grid=(min(((rows + TILE_M - 1) / TILE_M + E_LOCAL) * ((H + TILE_N - 1) / TILE_N), PERSIST ? PERSIST : 2147483647)) block=(TILE_M*TILE_N/(ACT_BF16 ? 128 : 16)) smem=(ACT_BF16 ? STAGES*(TILE_M+TILE_N)*TILE_K*2 : TILE_K*(TILE_M+TILE_N+8)*4)
//
// E = E_LOCAL experts on this rank, rows = rows of the permuted buffer (>= offsets[E]).
// Shapes: h [rows, I] act_t (expert-contiguous, from moe_gate_up_fwd),
//         w_down [E, H, I] act_t (nn.Linear layout [out, in]),
//         offsets [E+1] int (exclusive prefix sums of rows per expert; device memory),
//         y [rows, H] act_t (before the router weights: the combine kernel applies them).
// Rows past offsets[E] are not written.
//
// Work: tiles (m-tile of one expert, n-tile of TILE_N output columns), tile = mtile * NT +
// ntile, walked by the CTAs with stride gridDim.x; m-tiles found from offsets in-kernel
// (moe_mtile_table, no host sync). The launch grid is the one-tile-per-CTA bound; any
// smaller grid is also correct (see moe_gemm.cuh). With PERSIST > 0 (moe_gemm.cuh, off by
// default) the grid is capped at PERSIST CTAs, and each issues its next tile's first K stages
// right after a tile's K loop, so they load during the epilogue (moe_gemm_tile).
// Both operands K-major (K = I).
// Tiles: defaults and smem in moe_gemm.cuh.
#include "moe_gemm.cuh"

typedef MOE_GEMM(true, true) gemm_t;

extern "C" __global__ void __launch_bounds__(gemm_t::THREADS, 1)
MOEC_KERNEL(const act_t *h, const act_t *w_down, const int *offsets, act_t *y, int rows)
{
	extern __shared__ __align__(1024) unsigned char smem[];
	__shared__ int s_off[E_LOCAL + 1], s_pre[E_LOCAL + 1];
	constexpr int NT = (H + TILE_N - 1) / TILE_N;
	const int tiles = moe_mtile_table<E_LOCAL, TILE_M, gemm_t::THREADS>(offsets, rows, s_off, s_pre) * NT;

	// Both operands K-major, K = I.
	auto ops_of = [&](const moe_mtile &t, int n0, moe_operand &a, moe_operand &b) {
		a = moe_op(h, I, t.row0, t.row_end, TILE_M / 2, 0, I);
		b = moe_op(w_down + (long long)t.e * H * I, I, n0, H, TILE_N / 2, 0, I);
	};
	const auto operands = moe_mtile_operands<E_LOCAL, TILE_M, NT, TILE_N>(s_off, s_pre, ops_of);
	gemm_t g;
	int ready = -1; // PERSIST: the tile whose prologue is in flight (moe_gemm_tile)
	for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
		const moe_mtile t = moe_mtile_at<E_LOCAL, TILE_M>(tile / NT, s_off, s_pre);
		const int n0 = tile % NT * TILE_N;
		moe_operand a, b;
		ops_of(t, n0, a, b);
		moe_gemm_tile(g, smem, a, b, tile, tiles, ready, operands);

#pragma unroll
		for (int f = 0; f < gemm_t::NFRAG; f++) {
			int r, c;
			float v[4];
			g.frag(f, r, c, v);
			const int row = t.row0 + r;
			if (row >= t.row_end)
				continue;
			act_t *yr = y + (long long)row * H + n0;
			moe_store_pair(yr, c, H - n0, v[0], v[1]);
			moe_store_pair(yr, TILE_N / 2 + c, H - n0, v[2], v[3]);
		}
	}
}

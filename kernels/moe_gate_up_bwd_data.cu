// moe_gate_up_bwd_data.cu - data gradient of the gate/up GEMM: dx_perm = dgu @ w_gate_up[e] per expert segment.
// moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES PERSIST
// moec: launch grid=(min(((rows + TILE_M - 1) / TILE_M + E_LOCAL) * ((H + TILE_N - 1) / TILE_N), PERSIST ? PERSIST : 2147483647)) block=(TILE_M*TILE_N/(ACT_BF16 ? 128 : 16)) smem=(ACT_BF16 ? STAGES*(TILE_M+TILE_N)*TILE_K*2 : TILE_K*(TILE_M+TILE_N+8)*4)
//
// E = E_LOCAL experts on this rank, rows = rows of the permuted buffer (>= offsets[E]).
// Shapes: dgu [rows, 2I] act_t (dgate | dup, from moe_down_bwd_data),
//         w_gate_up [E, 2I, H] act_t,
//         offsets [E+1] int (exclusive prefix sums of rows per expert; device memory),
//         dx [rows, H] act_t (gradient of x_perm; the un-permute scatters it back to tokens).
// Rows past offsets[E] are not written.
//
// Work: tiles (m-tile of one expert, n-tile of TILE_N columns of H), tile = mtile * NT +
// ntile, walked by the CTAs with stride gridDim.x; m-tiles found from offsets in-kernel
// (moe_mtile_table, no host sync). The launch grid is the one-tile-per-CTA bound. With PERSIST > 0 (moe_gemm.cuh, off by
// default) the grid is capped at PERSIST CTAs, and each issues its next tile's first K stages
// right after a tile's K loop, so they load during the epilogue (moe_gemm_tile).
// A = dgu (K-major, K = 2I: gate and up reduce together); B[n = c, k = j] = w_gate_up[e][j][c]
// (MN-major: ldmatrix.trans). Tiles: defaults and smem in moe_gemm.cuh.
#include "moe_gemm.cuh"

typedef MOE_GEMM(true, false) gemm_t;

extern "C" __global__ void __launch_bounds__(gemm_t::THREADS, 1)
MOEC_KERNEL(const act_t *dgu, const act_t *w_gate_up, const int *offsets, act_t *dx, int rows)
{
	extern __shared__ __align__(1024) unsigned char smem[];
	__shared__ int s_off[E_LOCAL + 1], s_pre[E_LOCAL + 1];
	constexpr int NT = (H + TILE_N - 1) / TILE_N;
	const int tiles = moe_mtile_table<E_LOCAL, TILE_M, gemm_t::THREADS>(offsets, rows, s_off, s_pre) * NT;

	auto ops_of = [&](const moe_mtile &t, int n0, moe_operand &a, moe_operand &b) {
		a = moe_op(dgu, 2 * I, t.row0, t.row_end, TILE_M / 2, 0, 2 * I);
		b = moe_op(w_gate_up + (long long)t.e * (2 * I) * H, H, n0, H, TILE_N / 2, 0, 2 * I);
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
			act_t *xr = dx + (long long)row * H + n0;
			moe_store_pair(xr, c, H - n0, v[0], v[1]);
			moe_store_pair(xr, TILE_N / 2 + c, H - n0, v[2], v[3]);
		}
	}
}

// moe_down_bwd_weight.cu - weight gradient of the down GEMM: dw_down[e] (+)= dy_e^T @ h_e (fp32), K-grouped over each expert's rows.
// moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES PERSIST
// moec: launch grid=(min(E_LOCAL * ((H + TILE_M - 1) / TILE_M) * ((I + TILE_N - 1) / TILE_N), PERSIST ? PERSIST : 2147483647)) block=(TILE_M*TILE_N/(ACT_BF16 ? 128 : 16)) smem=(ACT_BF16 ? STAGES*(TILE_M+TILE_N)*TILE_K*2 : TILE_K*(TILE_M+TILE_N+8)*4)
//
// E = E_LOCAL experts on this rank, rows = rows of the permuted buffer (>= offsets[E]).
// Shapes: dy [rows, H] act_t (gradient of y_perm),
//         h [rows, I] act_t (the SwiGLU output saved or recomputed by moe_gate_up_fwd),
//         offsets [E+1] int (exclusive prefix sums of rows per expert; device memory),
//         dw_down [E, H, I] float: added to (+=) when accumulate != 0 (later micro-batches of
//            gradient accumulation), where an expert with no rows leaves its slice as is;
//            overwritten when accumulate == 0 (the gradient's first write in the optimizer
//            step: nothing zeroes it before), where an expert with no rows writes zeros.
//
// Work: output tiles (expert, m-tile of H, n-tile of I) of dw_down[e], each reducing over the
// expert's rows [offsets[e], offsets[e+1]) (the ragged last K slice is zero-filled), then one
// read-modify-write of the fp32 tile (one write when overwriting): no atomics, no split-K,
// deterministic. tile = (e * MT + mtile) * NT + ntile, walked by the CTAs with stride
// gridDim.x (the launch grid gives one tile per CTA; any grid size is correct). With
// PERSIST > 0 (moe_gemm.cuh, off by default) the grid is capped at PERSIST CTAs, and each
// issues its next tile's first K stages right after a tile's K loop, so they load during the
// epilogue (moe_gemm_tile); tiles of experts without rows in between are skipped with those
// loads in flight. Both operands MN-major (A = dy^T, B = h): ldmatrix.trans. Tiles: defaults
// and smem in moe_gemm.cuh.
#include "moe_gemm.cuh"

typedef MOE_GEMM(false, false) gemm_t;

extern "C" __global__ void __launch_bounds__(gemm_t::THREADS, 1)
MOEC_KERNEL(const act_t *dy, const act_t *h, const int *offsets, float *dw_down, int rows, int accumulate)
{
	extern __shared__ __align__(1024) unsigned char smem[];
	constexpr int MT = (H + TILE_M - 1) / TILE_M, NT = (I + TILE_N - 1) / TILE_N;
	// A tile's operands; false when its expert has no rows (nothing to multiply).
	auto operands = [&](int tile, moe_operand &a, moe_operand &b) {
		const moe_wtile t = moe_wtile_at<MT, NT>(tile, offsets, rows);
		a = moe_op(dy, H, t.m0, H, TILE_M / 2, t.r0, t.r1);
		b = moe_op(h, I, t.n0, I, TILE_N / 2, t.r0, t.r1);
		return t.r1 > t.r0;
	};
	gemm_t g;
	int ready = -1; // PERSIST: the tile whose prologue is in flight (moe_gemm_tile)
	for (int tile = blockIdx.x; tile < E_LOCAL * MT * NT; tile += gridDim.x) {
		const moe_wtile t = moe_wtile_at<MT, NT>(tile, offsets, rows);
		float *dw = dw_down + ((long long)t.e * H + t.m0) * I + t.n0; // this tile of the expert's gradient
		if (t.r1 <= t.r0) { // no rows (uniform across the CTA): nothing to add, zeros to write
			if (!accumulate)
				moe_zero_tile(dw, I, H - t.m0, I - t.n0);
			continue;
		}
		moe_operand a, b;
		operands(tile, a, b);
		moe_gemm_tile(g, smem, a, b, tile, E_LOCAL * MT * NT, ready, operands);

		moe_weight_grad_epilogue(g, dw, I, H - t.m0, I - t.n0, accumulate);
	}
}

// moe_down_bwd_data.cu - data gradient through the down GEMM and SwiGLU: dgu = swiglu'(gu) * (dy @ w_down[e]).
// moec: constants E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES PERSIST
// moec: launch grid=(min(((rows + TILE_M - 1) / TILE_M + E_LOCAL) * ((I + TILE_N - 1) / TILE_N), PERSIST ? PERSIST : 2147483647)) block=(TILE_M*TILE_N/(ACT_BF16 ? 128 : 16)) smem=(ACT_BF16 ? STAGES*(TILE_M+TILE_N)*TILE_K*2 : TILE_K*(TILE_M+TILE_N+8)*4)
//
// E = E_LOCAL experts on this rank, rows = rows of the permuted buffer (>= offsets[E]).
// Shapes: dy [rows, H] act_t (gradient of y_perm, router weight already applied by the
//            combine backward),
//         w_down [E, H, I] act_t,
//         gu [rows, 2I] act_t (the pre-activations saved or recomputed by moe_gate_up_fwd),
//         offsets [E+1] int (exclusive prefix sums of rows per expert; device memory),
//         dgu [rows, 2I] act_t = (dgate | dup), the input of moe_gate_up_bwd_data and
//            moe_gate_up_bwd_weight.
// Rows past offsets[E] are not written.
//
// The SwiGLU backward is fused into this GEMM's epilogue: with dh = dy @ w_down[e] in fp32
// registers and s = sigmoid(g),
//     dgate = dh * up * s * (1 + g * (1 - s)),    dup = dh * g * s,
// so dh [rows, I] is never written to memory and no separate elementwise kernel runs.
// (dh itself is not needed elsewhere: the weight gradient of down uses dy and h.)
//
// Work: tiles (m-tile of one expert, n-tile of TILE_N columns of I), tile = mtile * NT +
// ntile, walked by the CTAs with stride gridDim.x; m-tiles found from offsets in-kernel
// (moe_mtile_table, no host sync). The launch grid is the one-tile-per-CTA bound. With PERSIST > 0 (moe_gemm.cuh, off by
// default) the grid is capped at PERSIST CTAs, and each issues its next tile's first K stages
// right after a tile's K loop, so they load during the epilogue (moe_gemm_tile).
// A = dy (K-major, K = H); B[n = j, k = c] = w_down[e][c][j] (MN-major: ldmatrix.trans).
// Tiles: defaults and smem in moe_gemm.cuh.
#include "moe_gemm.cuh"

typedef MOE_GEMM(true, false) gemm_t;

// (dgate, dup) of one element from the upstream gradient dh and the saved (gate, up).
__device__ __forceinline__ void swiglu_bwd(float dh, float g, float u, float *dg, float *du)
{
	const float s = moe_sigmoid(g);
	*dg = dh * u * s * (1.f + g * (1.f - s));
	*du = dh * g * s;
}

extern "C" __global__ void __launch_bounds__(gemm_t::THREADS, 1)
MOEC_KERNEL(const act_t *dy, const act_t *w_down, const act_t *gu, const int *offsets, act_t *dgu, int rows)
{
	extern __shared__ __align__(1024) unsigned char smem[];
	__shared__ int s_off[E_LOCAL + 1], s_pre[E_LOCAL + 1];
	constexpr int NT = (I + TILE_N - 1) / TILE_N;
	const int tiles = moe_mtile_table<E_LOCAL, TILE_M, gemm_t::THREADS>(offsets, rows, s_off, s_pre) * NT;

	auto ops_of = [&](const moe_mtile &t, int n0, moe_operand &a, moe_operand &b) {
		a = moe_op(dy, H, t.row0, t.row_end, TILE_M / 2, 0, H);
		b = moe_op(w_down + (long long)t.e * H * I, I, n0, I, TILE_N / 2, 0, H);
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

		// The epilogue reads the saved gate/up of every output pair: loaded a batch of
		// fragments ahead of the batch's dgu stores (moe_epilogue_batched).
		moe_raw_pair gq[MOE_EPI_BATCH][2], uq[MOE_EPI_BATCH][2];
		moe_epilogue_batched(
			g,
			[&](int q, int r, int c) {
				const int row = t.row0 + r;
				const act_t *gr = gu + (long long)row * (2 * I);
#pragma unroll
				for (int half = 0; half < 2; half++) {
					const int j = n0 + half * (TILE_N / 2) + c;
					if (row < t.row_end && j < I) { // I even: j < I covers j + 1 too
						gq[q][half] = moe_load_raw_pair(gr, j);
						uq[q][half] = moe_load_raw_pair(gr + I, j);
					}
				}
			},
			[&](int q, int r, int c, const float *v) {
				const int row = t.row0 + r;
				if (row >= t.row_end)
					return;
				act_t *dr = dgu + (long long)row * (2 * I);
#pragma unroll
				for (int half = 0; half < 2; half++) {
					const int j = n0 + half * (TILE_N / 2) + c;
					if (j >= I)
						continue;
					float g0, g1, u0, u1, dg0, dg1, du0, du1;
					moe_unpack_pair(gq[q][half], &g0, &g1);
					moe_unpack_pair(uq[q][half], &u0, &u1);
					swiglu_bwd(v[2 * half], g0, u0, &dg0, &du0);
					swiglu_bwd(v[2 * half + 1], g1, u1, &dg1, &du1);
					moe_store_pair(dr, j, I, dg0, dg1);
					moe_store_pair(dr + I, j, I, du0, du1);
				}
			});
	}
}

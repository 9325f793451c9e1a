/* test_moe_routing_bf16.c - the MoE data-movement twins with bf16 activations (moe_permute,
 * moe_permute_bwd, moe_combine, moe_combine_bwd; the dispatch pipeline is integer-only and the
 * router fp32-only, both covered by test_moe_routing_f32.c).
 *
 * T = tokens, E = routed experts, K = top-k, H = hidden.
 *
 * The reference is the fp32 twins' math done in double on the same bf16-decoded inputs (one
 * translation unit holds one act_t, so the fp32 twin itself cannot be linked in here). The
 * twins accumulate in fp32 and round once to bf16 on store, so outputs must be within half a
 * bf16 ulp (2^-8 relative) of the exact value plus the fp32 accumulation error (1e-5 relative
 * to sum |terms|); dtopk_w is an fp32 dot of bf16 values: 1e-5 relative to sum |terms|.
 */
#define ACT_BF16 1
#include "moec_host.h"
#include "testing.h"

#include <stdio.h>
#include <stdlib.h>

#include "moe_routing_ref.h"

#define MOE_INST b_tiny /* H a multiple of 8 */
#define E 8
#define K 2
#define H 128
#define CAPACITY 0
#define DROP_POLICY 0
#include "moe_routing_twins.h"
#define MOE_INST b_qwen_lowp /* Qwen3-30B routing with drops, H odd */
#define E 128
#define K 8
#define H 37
#define CAPACITY 30
#define DROP_POLICY 1
#include "moe_routing_twins.h"
#define MOE_INST b_late
#define E 16
#define K 4
#define H 256
#define CAPACITY 20
#define DROP_POLICY 2
#include "moe_routing_twins.h"

static const struct moe_inst *const moes[] = {&b_tiny_desc, &b_qwen_lowp_desc, &b_late_desc};

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static double bf(act_t v) { return (double)act_load(&v); }

static int within_bf16(double got, double want, double mag)
{
	return fabs(got - want) <= fabs(want) / 256.0 + 1e-5 * mag + 1e-30;
}

static void check(const struct moe_inst *mi, int T)
{
	const int E = mi->E, K = mi->K, H = mi->H, P = T * K;
	int *ids = xcalloc((size_t)P, sizeof(int)), *dest = xcalloc((size_t)P, sizeof(int));
	int *row_src = xcalloc((size_t)P, sizeof(int)), *counts = xcalloc((size_t)E, sizeof(int));
	int *offsets = xcalloc((size_t)E + 1, sizeof(int));
	float *w = xcalloc((size_t)P, sizeof(float));
	gen_routes(E, K, T, 1, 0, ids, w);
	run_dispatch(mi, ids, w, T, dest, row_src, counts, offsets);
	const int R = offsets[E];
	act_t *x = xcalloc((size_t)T + 1, H * sizeof(act_t)), *xp = xcalloc((size_t)R + 1, H * sizeof(act_t));
	act_t *y = xcalloc((size_t)T + 1, H * sizeof(act_t)), *dy = xcalloc((size_t)T + 1, H * sizeof(act_t));
	act_t *yp = xcalloc((size_t)R + 1, H * sizeof(act_t)), *dyp = xcalloc((size_t)R + 1, H * sizeof(act_t));
	act_t *dx = xcalloc((size_t)T + 1, H * sizeof(act_t));
	float *dw = xcalloc((size_t)P + 1, sizeof(float));
	for (size_t i = 0; i < (size_t)T * H; i++) {
		act_store(&x[i], (float)rng_normal());
		act_store(&dy[i], (float)rng_normal());
	}
	for (size_t i = 0; i < (size_t)R * H; i++)
		act_store(&yp[i], (float)rng_normal());

	/* permute: bit-exact row copies */
	mi->permute(x, dest, xp, T);
	int same = 1;
	for (int r = 0; r < R; r++)
		same &= !memcmp(xp + (size_t)r * H, x + (size_t)(row_src[r] / K) * H, H * sizeof(act_t));
	EXPECT(same);

	/* combine */
	mi->combine(yp, dest, w, y, T);
	int bad = 0;
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			double s = 0, mag = 0;
			for (int k = 0; k < K; k++) {
				const int d = dest[t * K + k];
				if (d >= 0) {
					s += (double)w[t * K + k] * bf(yp[(size_t)d * H + h]);
					mag += fabs((double)w[t * K + k] * bf(yp[(size_t)d * H + h]));
				}
			}
			bad += !within_bf16(bf(y[(size_t)t * H + h]), s, mag);
		}
	EXPECT_INT(bad, 0);

	/* combine backward */
	mi->combine_bwd(dy, yp, dest, w, dyp, dw, T);
	bad = 0;
	for (int p = 0; p < P; p++) {
		const int d = dest[p], t = p / K;
		if (d < 0) {
			bad += dw[p] != 0.f;
			continue;
		}
		double dot = 0, mag = 0;
		for (int h = 0; h < H; h++) {
			const double g = bf(dy[(size_t)t * H + h]);
			dot += g * bf(yp[(size_t)d * H + h]);
			mag += fabs(g * bf(yp[(size_t)d * H + h]));
			bad += !within_bf16(bf(dyp[(size_t)d * H + h]), (double)w[p] * g, 0);
		}
		bad += !(fabs(dw[p] - dot) <= 1e-5 * mag + 1e-30);
	}
	EXPECT_INT(bad, 0);

	/* permute backward: dx[t] = sum over kept k of dy_perm[dest] */
	mi->permute_bwd(dyp, dest, dx, T);
	bad = 0;
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			double s = 0, mag = 0;
			for (int k = 0; k < K; k++)
				if (dest[t * K + k] >= 0) {
					s += bf(dyp[(size_t)dest[t * K + k] * H + h]);
					mag += fabs(bf(dyp[(size_t)dest[t * K + k] * H + h]));
				}
			bad += !within_bf16(bf(dx[(size_t)t * H + h]), s, mag);
		}
	EXPECT_INT(bad, 0);
	free(ids), free(dest), free(row_src), free(counts), free(offsets), free(w), free(x), free(xp), free(y), free(dy),
		free(yp), free(dyp), free(dx), free(dw);
}

int main(void)
{
	static const int Ts[] = {0, 1, 33, 300};
	for (int m = 0; m < NELEM(moes); m++)
		for (int ti = 0; ti < NELEM(Ts); ti++) {
			rng_seed(5000 + 10 * m + ti);
			check(moes[m], Ts[ti]);
		}
	return testing_report();
}

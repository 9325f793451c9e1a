// driver.cpp - runs the six expert-GEMM templates under the emulator (cuda_bf16.h here) and
// compares every output with the CPU twin of the same instance. Built once per constant set
// by run.sh (E_LOCAL H I ACT_BF16 TILE_M TILE_N TILE_K STAGES, plus COUNTS / EXTRA: rows
// per expert and spare buffer rows). Grid, block and dynamic smem are computed from the
// templates' `moec: launch` lines, so those formulas are checked too.
#include "cuda_bf16.h"

#if ACT_BF16
typedef uint16_t raw;
#else
typedef float raw;
#endif

#define DECL(name, ...)                   \
	void emu_##name(__VA_ARGS__);     \
	void twin_##name(__VA_ARGS__);
extern "C" {
DECL(moe_gate_up_fwd, const raw *, const raw *, const int *, raw *, raw *, int)
DECL(moe_down_fwd, const raw *, const raw *, const int *, raw *, int)
DECL(moe_down_bwd_data, const raw *, const raw *, const raw *, const int *, raw *, int)
DECL(moe_gate_up_bwd_data, const raw *, const raw *, const int *, raw *, int)
DECL(moe_down_bwd_weight, const raw *, const raw *, const int *, float *, int, int)
DECL(moe_gate_up_bwd_weight, const raw *, const raw *, const int *, float *, int, int)
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float rnd()
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}
static float tof(raw v)
{
#if ACT_BF16
	__nv_bfloat16 b;
	b.x = v;
	return __bfloat162float(b);
#else
	return v;
#endif
}
static raw fromf(float f)
{
#if ACT_BF16
	return __float2bfloat16_rn(f).x;
#else
	return f;
#endif
}
static std::vector<raw> rand_raw(size_t n, float scale)
{
	std::vector<raw> v(n);
	for (auto &x : v)
		x = fromf(scale * rnd());
	return v;
}

static int failures, checks;

static long written(const std::vector<raw> &v)
{
	long n = 0;
	for (auto x : v)
		n += tof(x) != -768.f;
	return n;
}
static long identical(const std::vector<raw> &a, const std::vector<raw> &b)
{
	long n = 0;
	for (size_t i = 0; i < a.size(); i++)
		n += memcmp(&a[i], &b[i], sizeof(raw)) == 0;
	return n;
}

// act_t outputs: both sides round once from fp32 sums taken in different orders, so allow
// one bf16 ulp (2^-7 relative) plus fp32 noise; untouched sentinels must agree exactly.
static void compare(const char *what, const std::vector<raw> &got, const std::vector<raw> &want)
{
	double mx = 0, worst = 0;
	for (auto v : want)
		mx = std::max(mx, (double)fabsf(tof(v)));
	long bad = 0;
	for (size_t i = 0; i < want.size(); i++) {
		const double g = tof(got[i]), w = tof(want[i]), d = fabs(g - w);
		worst = std::max(worst, d / (mx > 0 ? mx : 1));
		bad += !(d <= (ACT_BF16 ? 1.0 / 128 : 0.0) * fabs(w) + 1e-5 * mx);
	}
	checks++;
	if (bad) {
		failures++;
		fprintf(stderr, "FAIL %s: %ld of %zu elements differ (worst %.3g of max %.3g)\n", what, bad, want.size(),
		        worst, mx);
	} else {
		printf("  ok %-28s worst |emu - twin| / max = %.2e  (%ld of %zu written, %ld bit-identical)\n", what, worst,
		       written(want), want.size(), identical(got, want));
	}
}
static void compare_f(const char *what, const std::vector<float> &got, const std::vector<float> &want,
                      const std::vector<float> &init)
{
	double mx = 0, worst = 0;
	for (size_t i = 0; i < want.size(); i++)
		mx = std::max(mx, (double)fabsf(want[i] - init[i]));
	long bad = 0;
	for (size_t i = 0; i < want.size(); i++) {
		const double d = fabs((double)got[i] - want[i]);
		worst = std::max(worst, d / (mx > 0 ? mx : 1));
		bad += !(d <= 1e-5 * mx + 1e-7 * fabs(init[i]));
	}
	checks++;
	if (bad) {
		failures++;
		fprintf(stderr, "FAIL %s: %ld of %zu elements differ (worst %.3g of max %.3g)\n", what, bad, want.size(),
		        worst, mx);
	} else {
		long changed = 0;
		for (size_t i = 0; i < want.size(); i++)
			changed += want[i] != init[i];
		printf("  ok %-28s worst |emu - twin| / max = %.2e  (%ld of %zu changed)\n", what, worst, changed,
		       want.size());
	}
}

template <class T>
static void reg(const std::vector<T> &v)
{
	emu::globals.push_back({(const unsigned char *)v.data(), v.size() * sizeof(T)});
}

static const int THREADS = TILE_M * TILE_N / (ACT_BF16 ? 128 : 16);
static const size_t SMEM = ACT_BF16 ? (size_t)STAGES * (TILE_M + TILE_N) * TILE_K * 2
                                    : (size_t)TILE_K * (TILE_M + TILE_N + 8) * 4;

// The launch lines' grids give one tile per CTA, or with PERSIST = N > 0 (moe_gemm.cuh) at
// most N CTAs; the kernels walk their tiles with stride gridDim.x, so a capped grid must give
// the same result.
#ifndef PERSIST
#define PERSIST 0
#endif
static unsigned grid_cap = ~0u;
static unsigned capped(unsigned grid)
{
	if (PERSIST > 0 && grid > (unsigned)PERSIST)
		grid = PERSIST;
	return grid < grid_cap ? grid : grid_cap;
}

static void run(const char *label, const int *off, int rows)
{
	printf("case %s: rows %d, E %d H %d I %d, tiles %dx%dx%d stages %d, %d threads, %zu B smem, grid cap %d, "
	       "persist %d\n",
	       label, rows, E_LOCAL, H, I, TILE_M, TILE_N, TILE_K, STAGES, THREADS, SMEM, (int)grid_cap, PERSIST);
	const int E = E_LOCAL;
	auto x = rand_raw((size_t)rows * H, 1.f), wgu = rand_raw((size_t)E * 2 * I * H, 0.2f);
	auto wd = rand_raw((size_t)E * H * I, 0.2f), hin = rand_raw((size_t)rows * I, 1.f);
	auto gu = rand_raw((size_t)rows * 2 * I, 2.f), dy = rand_raw((size_t)rows * H, 1.f);
	auto dgu = rand_raw((size_t)rows * 2 * I, 1.f);
	std::vector<int> offv(off, off + E + 1);
	const unsigned mtiles = (rows + TILE_M - 1) / TILE_M + E;
	const raw S = fromf(-768.f);

	{
		std::vector<raw> h1((size_t)rows * I, S), g1((size_t)rows * 2 * I, S), h2 = h1, g2 = g1;
		emu::globals.clear(), reg(x), reg(wgu), reg(offv);
		emu::launch(capped(mtiles * ((I + TILE_N / 2 - 1) / (TILE_N / 2))), THREADS, SMEM,
		            [&] { emu_moe_gate_up_fwd(x.data(), wgu.data(), offv.data(), h1.data(), g1.data(), rows); });
		twin_moe_gate_up_fwd(x.data(), wgu.data(), offv.data(), h2.data(), g2.data(), rows);
		compare("moe_gate_up_fwd h", h1, h2);
		compare("moe_gate_up_fwd gu", g1, g2);
		std::vector<raw> h3((size_t)rows * I, S);
		emu::launch(capped(mtiles * ((I + TILE_N / 2 - 1) / (TILE_N / 2))), THREADS, SMEM,
		            [&] { emu_moe_gate_up_fwd(x.data(), wgu.data(), offv.data(), h3.data(), nullptr, rows); });
		compare("moe_gate_up_fwd h (gu NULL)", h3, h2);
	}
	{
		std::vector<raw> y1((size_t)rows * H, S), y2 = y1;
		emu::globals.clear(), reg(hin), reg(wd), reg(offv);
		emu::launch(capped(mtiles * ((H + TILE_N - 1) / TILE_N)), THREADS, SMEM,
		            [&] { emu_moe_down_fwd(hin.data(), wd.data(), offv.data(), y1.data(), rows); });
		twin_moe_down_fwd(hin.data(), wd.data(), offv.data(), y2.data(), rows);
		compare("moe_down_fwd y", y1, y2);
	}
	{
		std::vector<raw> d1((size_t)rows * 2 * I, S), d2 = d1;
		emu::globals.clear(), reg(dy), reg(wd), reg(gu), reg(offv);
		emu::launch(capped(mtiles * ((I + TILE_N - 1) / TILE_N)), THREADS, SMEM,
		            [&] { emu_moe_down_bwd_data(dy.data(), wd.data(), gu.data(), offv.data(), d1.data(), rows); });
		twin_moe_down_bwd_data(dy.data(), wd.data(), gu.data(), offv.data(), d2.data(), rows);
		compare("moe_down_bwd_data dgu", d1, d2);
	}
	{
		std::vector<raw> d1((size_t)rows * H, S), d2 = d1;
		emu::globals.clear(), reg(dgu), reg(wgu), reg(offv);
		emu::launch(capped(mtiles * ((H + TILE_N - 1) / TILE_N)), THREADS, SMEM,
		            [&] { emu_moe_gate_up_bwd_data(dgu.data(), wgu.data(), offv.data(), d1.data(), rows); });
		twin_moe_gate_up_bwd_data(dgu.data(), wgu.data(), offv.data(), d2.data(), rows);
		compare("moe_gate_up_bwd_data dx", d1, d2);
	}
	// the weight gradients added to a non-zero dw (acc 1), and overwriting one that starts as
	// NaN (acc 0): compared with the product added to zeros, so an element left unwritten (an
	// empty expert's) fails
	for (int acc = 1; acc >= 0; acc--) {
		std::vector<float> init((size_t)E * H * I), zero(init.size());
		for (auto &v : init)
			v = acc ? rnd() : NAN;
		std::vector<float> w1 = init, w2 = init;
		emu::globals.clear(), reg(dy), reg(hin), reg(offv);
		emu::launch(capped(E * ((H + TILE_M - 1) / TILE_M) * ((I + TILE_N - 1) / TILE_N)), THREADS, SMEM,
		            [&] { emu_moe_down_bwd_weight(dy.data(), hin.data(), offv.data(), w1.data(), rows, acc); });
		twin_moe_down_bwd_weight(dy.data(), hin.data(), offv.data(), w2.data(), rows, acc);
		compare_f(acc ? "moe_down_bwd_weight dw +=" : "moe_down_bwd_weight dw =", w1, w2, acc ? init : zero);
	}
	for (int acc = 1; acc >= 0; acc--) {
		std::vector<float> init((size_t)E * 2 * I * H), zero(init.size());
		for (auto &v : init)
			v = acc ? rnd() : NAN;
		std::vector<float> w1 = init, w2 = init;
		emu::globals.clear(), reg(dgu), reg(x), reg(offv);
		emu::launch(capped(E * ((2 * I + TILE_M - 1) / TILE_M) * ((H + TILE_N - 1) / TILE_N)), THREADS, SMEM,
		            [&] { emu_moe_gate_up_bwd_weight(dgu.data(), x.data(), offv.data(), w1.data(), rows, acc); });
		twin_moe_gate_up_bwd_weight(dgu.data(), x.data(), offv.data(), w2.data(), rows, acc);
		compare_f(acc ? "moe_gate_up_bwd_weight dw +=" : "moe_gate_up_bwd_weight dw =", w1, w2, acc ? init : zero);
	}
}

int main()
{
	const int counts[E_LOCAL] = COUNTS;
	int off[E_LOCAL + 1];
	off[0] = 0;
	for (int e = 0; e < E_LOCAL; e++)
		off[e + 1] = off[e] + counts[e];
	run("ragged", off, off[E_LOCAL] + EXTRA);
	grid_cap = 3;
	run("ragged, 3 CTAs", off, off[E_LOCAL] + EXTRA);
	grid_cap = ~0u;

	// every expert empty: nothing is written
	int zero[E_LOCAL + 1] = {0};
	run("all empty", zero, 3);

	// a corrupt table (last offset past the buffer): both clamp to rows, nothing is read outside
	off[E_LOCAL] += 50;
	run("offsets past rows", off, off[E_LOCAL] - 50);

	printf("%d checks, %d failed, %d emulator errors; ldmatrix: %lld 8x8 reads, %lld with bank conflicts\n", checks,
	       failures, emu::errors, emu::ldsm_phases, emu::ldsm_conflicted);
	return failures || emu::errors || emu::ldsm_conflicted;
}

// driver.cpp - runs the core kernel templates under the emulator (cuda_bf16.h here) and
// compares every output with the CPU twin of the same instance: bitwise where the template
// promises it (embedding, rope, add, casts, adamw, scale), else within fp32 reordering error.
// Every kernel runs with its intended grid (the `moec: launch` formula) and with smaller
// grids (the loops are grid-stride), with aligned and deliberately misaligned buffers (the
// 16-byte paths and their element-wise fallbacks), and with tails and empty inputs. Built by
// run.sh, which compiles each template once per instance listed below.
#include "cuda_bf16.h"

#include <algorithm>

typedef uint16_t b16; // bf16 bits, as both the kernels' __nv_bfloat16 and the twins' bf16

#define PAIR(name, ...)                   \
	void emu_##name(__VA_ARGS__);     \
	void name##_cpu(__VA_ARGS__);
extern "C" {
PAIR(embedding_fwd_f32_h128, float *, const float *, const int *, int, int, int)
PAIR(embedding_bwd_f32_h128, float *, const float *, const int *, int, int, int)
PAIR(embedding_fwd_f32_h37, float *, const float *, const int *, int, int, int)
PAIR(embedding_bwd_f32_h37, float *, const float *, const int *, int, int, int)
PAIR(embedding_fwd_bf16_h64, b16 *, const b16 *, const int *, int, int, int)
PAIR(embedding_bwd_bf16_h64, float *, const b16 *, const int *, int, int, int)
PAIR(embedding_fwd_bf16_h100, b16 *, const b16 *, const int *, int, int, int)
PAIR(embedding_bwd_bf16_h100, float *, const b16 *, const int *, int, int, int)
PAIR(embedding_bwd_bf16_h2048, float *, const b16 *, const int *, int, int, int)
#define RMS(sfx, T)                                                                                  \
	PAIR(rmsnorm_fwd_##sfx, T *, float *, const T *, const float *, int)                         \
	PAIR(rmsnorm_bwd_##sfx, T *, float *, float *, unsigned *, const T *, const T *, const float *, \
	     const float *, int, int)
RMS(f32_dim128, float)
RMS(f32_dim32, float)
RMS(f32_dim100, float)
RMS(f32_dim2048, float)
RMS(f32_dim4096, float)
RMS(bf16_dim128, b16)
RMS(bf16_dim2048, b16)
RMS(bf16_dim100, b16)
RMS(bf16_dim4096, b16)
PAIR(rope_fwd_f32_hd32, float *, const float *, const int *, int, int)
PAIR(rope_bwd_f32_hd32, float *, const float *, const int *, int, int)
PAIR(rope_fwd_f32_hd6, float *, const float *, const int *, int, int)
PAIR(rope_bwd_f32_hd6, float *, const float *, const int *, int, int)
PAIR(rope_fwd_bf16_hd128, b16 *, const b16 *, const int *, int, int)
PAIR(rope_bwd_bf16_hd128, b16 *, const b16 *, const int *, int, int)
PAIR(add_f32, float *, const float *, const float *, long)
PAIR(add_bf16, b16 *, const b16 *, const b16 *, long)
PAIR(swiglu_fwd_f32_e4_i24, const float *, const int *, float *, int)
PAIR(swiglu_fwd_bf16_e1_i40, const b16 *, const int *, b16 *, int)
PAIR(cast_f32_bf16, b16 *, const float *, long)
PAIR(cast_bf16_f32, float *, const b16 *, long)
PAIR(adamw, float **, float **, float **, float **, b16 **, const long *, const int *, int, double, double, double,
     double, double, int, const float *, float)
PAIR(grad_sumsq, float *, double *, unsigned *, float **, const long *, int)
PAIR(scale, float **, const long *, int, float, const float *, float)
PAIR(ce_chunk_fwd_v500, float *, float *, float *, const float *, const int *, int, int, int)
PAIR(ce_finish_v500, float *, float *, float *, const float *, const float *, const float *, const int *, int)
PAIR(ce_chunk_bwd_f32_v500, const float *, float *, const float *, const int *, const float *, float, int, int, int)
PAIR(ce_chunk_bwd_bf16_v500, const float *, b16 *, const float *, const int *, const float *, float, int, int, int)
}

static int failures, checks;
#define CHECK(cond, ...)                                                  \
	do {                                                              \
		checks++;                                                 \
		if (!(cond)) {                                            \
			failures++;                                       \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                     \
			fprintf(stderr, "\n");                            \
		}                                                         \
	} while (0)

static uint64_t rng = 0x2545f4914f6cdd1dull;
static double rnd() /* [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}
static int rndi(int lo, int hi) { return lo + (int)((rnd() + 1.0) * 0.5 * (hi - lo)) % (hi - lo); }
static float b2f(b16 b) { return __uint_as_float((unsigned)b << 16); }
static b16 f2b(float f) { return __float2bfloat16_rn(f).x; }

// A buffer of n elements whose first element sits `off` elements past a 256-byte boundary.
template <class T> struct buf {
	std::vector<unsigned char> mem;
	T *p;
	long n;
	buf(long n_, int off = 0) : mem((size_t)(n_ + off + 1) * sizeof(T) + 512), n(n_)
	{
		uintptr_t a = ((uintptr_t)mem.data() + 255) & ~(uintptr_t)255;
		p = (T *)a + off;
		memset(p, 0, (size_t)(n > 0 ? n : 0) * sizeof(T));
	}
	T &operator[](long i) { return p[i]; }
	void copy_from(const buf &o) { memcpy(p, o.p, (size_t)n * sizeof(T)); }
	bool same(const buf &o) const { return n == 0 || !memcmp(p, o.p, (size_t)n * sizeof(T)); }
};
static void fill(buf<float> &b, double s)
{
	for (long i = 0; i < b.n; i++)
		b[i] = (float)(s * rnd());
}
static void fill(buf<b16> &b, double s)
{
	for (long i = 0; i < b.n; i++)
		b[i] = f2b((float)(s * rnd()));
}
static float val(float v) { return v; }
static float val(b16 v) { return b2f(v); }

// Largest |a - b| / (atol + rtol |b|) over the arrays (<= 1 passes).
template <class T> static double worst(const buf<T> &a, const buf<T> &b, double rtol, double atol)
{
	double w = 0.0;
	for (long i = 0; i < a.n; i++) {
		const double x = val(a.p[i]), y = val(b.p[i]);
		const double r = std::isnan(x) != std::isnan(y) ? INFINITY : std::isnan(x) ? 0 : fabs(x - y) / (atol + rtol * fabs(y));
		w = std::max(w, r);
	}
	return w;
}
template <class T> static double maxabs(const buf<T> &a)
{
	double m = 0.0;
	for (long i = 0; i < a.n; i++)
		m = std::max(m, (double)fabs(val(a.p[i])));
	return m;
}

static unsigned cdiv(long a, long b) { return (unsigned)((a + b - 1) / b); }
static unsigned at_least1(unsigned g) { return g ? g : 1; }

// ---- rmsnorm ----
template <class T, class F, class B>
static void test_rmsnorm(const char *name, int dim, F fwd_emu, F fwd_cpu, B bwd_emu, B bwd_cpu)
{
	const bool bf = sizeof(T) == 2;
	const double rt = bf ? 0x1.0p-7 : 2e-6; // bf16: the fp32 sums differ in order, so a rounding may flip
	const int rows_set[] = {0, 1, 5, 37, 130};
	for (int rows : rows_set)
		for (int off = 0; off < 3; off++) { // aligned; all misaligned; outputs alone misaligned
			const long n = (long)rows * dim;
			const int oi = off == 1, oo = off != 0;
			buf<T> x(n, oi), y(n, oo), yt(n), dy(n, oi), dx(n, oo), dxt(n), dx0(n);
			buf<float> w(dim), rstd(rows), rstdt(rows), dw(dim), dwt(dim), dw1(dim);
			fill(x, 2.0), fill(dy, 1.0), fill(dx0, 1.0);
			for (int c = 0; c < dim; c++)
				w[c] = (float)(1.0 + 0.3 * rnd());
			fwd_cpu(yt.p, rstdt.p, x.p, w.p, rows);
			const unsigned grids[] = {at_least1(std::min(rows, 1024)), 1, 3}; // the launch line's, and smaller
			for (unsigned g : grids) {
				memset(y.p, 0xff, (size_t)n * sizeof(T));
				emu::launch(g, 256, [&] { fwd_emu(y.p, rstd.p, x.p, w.p, rows); });
				CHECK(worst(y, yt, rt, 1e-6 * maxabs(yt)) <= 1, "%s fwd y rows=%d off=%d grid=%u: %g", name, rows, off, g,
				      worst(y, yt, rt, 1e-6 * maxabs(yt)));
				CHECK(worst(rstd, rstdt, 2e-6, 0) <= 1, "%s fwd rstd rows=%d grid=%u", name, rows, g);
			}
			buf<T> z(n, oi);
			z.copy_from(x);
			emu::launch(1, 256, [&] { fwd_emu(z.p, nullptr, z.p, w.p, rows); }); // in place, no rstd
			CHECK(z.same(y), "%s fwd in place rows=%d", name, rows);

			// backward, both modes; dw accumulates into a nonzero start
			for (int acc = 0; acc < 2; acc++) {
				for (int c = 0; c < dim; c++)
					dwt[c] = dw[c] = (float)rnd();
				dxt.copy_from(dx0);
				bwd_cpu(dxt.p, dwt.p, nullptr, nullptr, dy.p, x.p, w.p, rstdt.p, rows, acc);
				// the launch line's grid (capped here to keep the emulator quick), one block, one
				// group of 16 plus a partial one, and several full groups
				const unsigned bgrids[] = {std::min(at_least1(rows), 40u), 1, 3, 17, 48};
				for (unsigned g : bgrids) {
					const unsigned ngrp = (g + 15) / 16;
					buf<float> ws((long)(g + ngrp) * dim), dwg(dim);
					std::vector<unsigned> cnt(1 + ngrp, 0u);
					unsigned *count = cnt.data();
					dwg.copy_from(dw);
					dx.copy_from(dx0);
					emu::launch(g, 256, [&] { bwd_emu(dx.p, dwg.p, ws.p, count, dy.p, x.p, w.p, rstdt.p, rows, acc); });
					CHECK(worst(dx, dxt, rt, 1e-5 * maxabs(dxt)) <= 1, "%s bwd dx rows=%d off=%d acc=%d grid=%u: %g", name, rows,
					      off, acc, g, worst(dx, dxt, rt, 1e-5 * maxabs(dxt)));
					CHECK(worst(dwg, dwt, 1e-5, 1e-5 * maxabs(dwt)) <= 1, "%s bwd dw rows=%d acc=%d grid=%u: %g", name, rows,
					      acc, g, worst(dwg, dwt, 1e-5, 1e-5 * maxabs(dwt)));
					CHECK(std::count(cnt.begin(), cnt.end(), 0u) == (long)cnt.size(), "%s bwd leaves a nonzero count", name);
					// the same grid again gives the same bits (the dw reduction order is fixed)
					dw1.copy_from(dw);
					buf<T> dx2(n, oo);
					dx2.copy_from(dx0);
					emu::launch(g, 256, [&] { bwd_emu(dx2.p, dw1.p, ws.p, count, dy.p, x.p, w.p, rstdt.p, rows, acc); });
					CHECK(dw1.same(dwg) && dx2.same(dx), "%s bwd not reproducible rows=%d grid=%u", name, rows, g);
				}
			}
		}
	printf("%s: done\n", name);
}

// ---- embedding ----
template <class T, class F, class B>
static void test_embedding(const char *name, int h, F fwd_emu, F fwd_cpu, B bwd_emu, B bwd_cpu)
{
	const int vocab = 7;
	const int tok_set[] = {0, 1, 40, 1500};
	for (int tokens : tok_set)
		for (int off = 0; off < 3; off++) { // aligned; all misaligned; outputs alone misaligned
			const int v0 = off ? 5 : 0, oi = off == 1, oo = off != 0;
			std::vector<int> ids(tokens + 1);
			for (int t = 0; t < tokens; t++)
				ids[t] = v0 + rndi(-2, vocab + 2); // repeats everywhere, some outside the shard
			buf<T> table((long)vocab * h, oi), out((long)tokens * h, oo), outt((long)tokens * h), dout((long)tokens * h, oi);
			buf<float> dt((long)vocab * h, oo), dtt((long)vocab * h);
			fill(table, 1.0), fill(dout, 1.0), fill(dtt, 1.0);
			dt.copy_from(dtt);
			fwd_cpu(outt.p, table.p, ids.data(), tokens, v0, vocab);
			bwd_cpu(dtt.p, dout.p, ids.data(), tokens, v0, vocab);
			const unsigned grids[] = {at_least1(std::min(tokens, 1024)), 2};
			for (unsigned gr : grids) {
				memset(out.p, 0xff, (size_t)out.n * sizeof(T));
				emu::launch(gr, 256, [&] { fwd_emu(out.p, table.p, ids.data(), tokens, v0, vocab); });
				CHECK(out.same(outt), "%s fwd tokens=%d off=%d grid=%u", name, tokens, off, gr);
			}
			const unsigned bgrids[] = {at_least1((unsigned)tokens), 3};
			for (unsigned gr : bgrids) {
				buf<float> d((long)vocab * h, oo);
				d.copy_from(dt);
				emu::launch(gr, 256, [&] { bwd_emu(d.p, dout.p, ids.data(), tokens, v0, vocab); });
				CHECK(d.same(dtt), "%s bwd (must be bitwise) tokens=%d off=%d grid=%u", name, tokens, off, gr);
			}
		}
	printf("%s: done\n", name);
}

// ---- rope ----
template <class T, class F>
static void test_rope(const char *name, int hd, F fwd_emu, F fwd_cpu, F bwd_emu, F bwd_cpu)
{
	const int tok_set[] = {0, 1, 13, 70};
	for (int tokens : tok_set)
		for (int heads = 1; heads <= 4; heads += 3)
			for (int off = 0; off < 3; off++) { // aligned; all misaligned; output alone misaligned
				std::vector<int> pos(tokens + 1);
				for (int t = 0; t < tokens; t++)
					pos[t] = t % 5 == 4 ? rndi(0, 1 << 20) : rndi(0, 4096);
				const long n = (long)tokens * heads * hd;
				buf<T> x(n, off == 1), y(n, off != 0), yt(n), z(n, off == 1);
				fill(x, 1.0);
				for (int dir = 0; dir < 2; dir++) {
					F ke = dir ? bwd_emu : fwd_emu, kc = dir ? bwd_cpu : fwd_cpu;
					kc(yt.p, x.p, pos.data(), tokens, heads);
					const unsigned grids[] = {at_least1(std::min(tokens, 1024)), 1, 2};
					for (unsigned g : grids) {
						memset(y.p, 0xff, (size_t)n * sizeof(T));
						emu::launch(g, 256, [&] { ke(y.p, x.p, pos.data(), tokens, heads); });
						CHECK(y.same(yt), "%s %s tokens=%d heads=%d off=%d grid=%u (must be bitwise)", name, dir ? "bwd" : "fwd",
						      tokens, heads, off, g);
					}
					z.copy_from(x);
					emu::launch(1, 256, [&] { ke(z.p, z.p, pos.data(), tokens, heads); });
					CHECK(z.same(yt), "%s %s in place tokens=%d", name, dir ? "bwd" : "fwd", tokens);
				}
			}
	printf("%s: done\n", name);
}

// ---- add, casts ----
template <class T, class F> static void test_add(const char *name, F emu_k, F cpu_k)
{
	const long sizes[] = {0, 1, 7, 8, 1000, 4099};
	for (long n : sizes)
		for (int off = 0; off < 4; off++) {
			buf<T> a(n, off == 1), b(n, off == 2), y(n, off == 3), yt(n);
			fill(a, 1.0), fill(b, 1.0);
			cpu_k(yt.p, a.p, b.p, n);
			const unsigned grids[] = {at_least1(cdiv(n, 2048)), 1, 3};
			for (unsigned g : grids) {
				memset(y.p, 0xff, (size_t)n * sizeof(T));
				emu::launch(g, 256, [&] { emu_k(y.p, a.p, b.p, n); });
				CHECK(y.same(yt), "%s n=%ld off=%d grid=%u", name, n, off, g);
			}
			emu::launch(2, 256, [&] { emu_k(a.p, a.p, b.p, n); });
			CHECK(a.same(yt), "%s in place n=%ld", name, n);
		}
	printf("%s: done\n", name);
}

// swiglu_fwd: bitwise against the twin (the same swiglu of the same rounded values), rows
// offsets[0]..offsets[E] only (the rest keep their fill), at the launch line's grid and
// smaller ones; offsets past rows are clamped.
template <class T, class F> static void test_swiglu(const char *name, int E, int I, F emu_k, F cpu_k)
{
	const int counts[][5] = {{3, 0, 5, 1, 0}, {0, 0, 0, 0, 0}, {40, 0, 0, 0, 0}, {1, 2, 0, 700, 0}};
	for (const auto &cnt : counts)
		for (int extra : {0, 3, -2}) {
			std::vector<int> off(E + 1, 0);
			for (int e = 0; e < E; e++)
				off[e + 1] = off[e] + cnt[e];
			const int rows = std::max(0, off[E] + extra);
			buf<T> gu((long)rows * 2 * I), h((long)rows * I), ht((long)rows * I);
			fill(gu, 4.0), fill(ht, 1.0);
			h.copy_from(ht);
			buf<T> h0((long)rows * I);
			h0.copy_from(ht);
			cpu_k(gu.p, off.data(), ht.p, rows);
			const unsigned grids[] = {at_least1(std::min(cdiv((long)rows * I, 2048), 8192u)), 1, 3};
			for (unsigned g : grids) {
				h.copy_from(h0);
				emu::launch(g, 256, [&] { emu_k(gu.p, off.data(), h.p, rows); });
				CHECK(h.same(ht), "%s rows=%d offsets[E]=%d grid=%u", name, rows, off[E], g);
			}
		}
	printf("%s: done\n", name);
}

static void test_casts()
{
	const long sizes[] = {0, 1, 9, 4099};
	for (long n : sizes)
		for (int off = 0; off < 3; off++) {
			buf<float> x(n, off == 1), back(n, off == 2), backt(n);
			buf<b16> y(n, off != 0), yt(n);
			for (long i = 0; i < n; i++) {
				unsigned u = (unsigned)(rnd() * 4294967296.0);
				x[i] = __uint_as_float(i % 3 ? u : (u & 0xffff0000u) | 0x8000u);
			}
			cast_f32_bf16_cpu(yt.p, x.p, n);
			cast_bf16_f32_cpu(backt.p, yt.p, n);
			const unsigned grids[] = {at_least1(cdiv(n, 2048)), 1, 2};
			for (unsigned g : grids) {
				emu::launch(g, 256, [&] { emu_cast_f32_bf16(y.p, x.p, n); });
				CHECK(y.same(yt), "cast_f32_bf16 n=%ld off=%d grid=%u", n, off, g);
				emu::launch(g, 256, [&] { emu_cast_bf16_f32(back.p, y.p, n); });
				CHECK(back.same(backt), "cast_bf16_f32 n=%ld off=%d grid=%u", n, off, g);
			}
		}
	printf("casts: done\n");
}

// ---- optimizer: adamw, grad_sumsq, scale over a ragged tensor list ----
static void test_optimizer()
{
	const int NT = 7;
	const long sizes[NT] = {5000, 0, 3, 2047, 1, 4097, 130};
	const int offs[NT] = {0, 0, 1, 2, 3, 1, 0}; // misaligned starts, and m/v/g misaligned relative to p below
	long offsets[NT + 1] = {0};
	for (int k = 0; k < NT; k++)
		offsets[k + 1] = offsets[k] + sizes[k];
	std::vector<buf<float> *> P, G, M, Vv, Pt, Mt, Vt;
	std::vector<buf<b16> *> B, Bt;
	for (int k = 0; k < NT; k++) {
		const int rel = k == 5 ? 1 : 0; // tensor 5: m one element off p: scalar path throughout
		P.push_back(new buf<float>(sizes[k], offs[k])), G.push_back(new buf<float>(sizes[k], offs[k]));
		M.push_back(new buf<float>(sizes[k], offs[k] + rel)), Vv.push_back(new buf<float>(sizes[k], offs[k]));
		Pt.push_back(new buf<float>(sizes[k])), Mt.push_back(new buf<float>(sizes[k])), Vt.push_back(new buf<float>(sizes[k]));
		B.push_back(new buf<b16>(sizes[k], offs[k] + (k == 6))), Bt.push_back(new buf<b16>(sizes[k]));
		fill(*P[k], 0.5), fill(*M[k], 0.01);
		for (long j = 0; j < sizes[k]; j++)
			(*Vv[k])[j] = (float)(1e-4 * (rnd() + 1.0));
		Pt[k]->copy_from(*P[k]), Mt[k]->copy_from(*M[k]), Vt[k]->copy_from(*Vv[k]);
	}
	std::vector<float *> p(NT), g(NT), m(NT), v(NT), pt(NT), mt(NT), vt(NT);
	std::vector<b16 *> b(NT), bt(NT);
	for (int k = 0; k < NT; k++)
		p[k] = P[k]->p, g[k] = G[k]->p, m[k] = M[k]->p, v[k] = Vv[k]->p, pt[k] = Pt[k]->p, mt[k] = Mt[k]->p,
		vt[k] = Vt[k]->p, b[k] = B[k]->p, bt[k] = Bt[k]->p;
	b[3] = bt[3] = nullptr; // a tensor without a bf16 copy
	const int decay[NT] = {1, 0, 1, 0, 1, 1, 0};
	const long total = offsets[NT];
	const unsigned grids[] = {std::min(cdiv(total, 2048), 1024u), 1, 3};
	int step = 0;
	for (unsigned gr : grids)
		for (int clip = 0; clip < 2; clip++) {
			step++;
			for (int k = 0; k < NT; k++)
				fill(*G[k], clip ? 5.0 : 0.01);
			// grad_sumsq: twin vs emulated, several grids, accumulating into a start value
			float ss_t = 0.25f;
			grad_sumsq_cpu(&ss_t, nullptr, nullptr, g.data(), offsets, NT);
			const unsigned sgrids[] = {gr, 1, 5};
			float ss = 0.0f;
			for (unsigned sg : sgrids) {
				std::vector<double> ws(sg);
				unsigned count = 0;
				ss = 0.25f;
				emu::launch(sg, 256, [&] { emu_grad_sumsq(&ss, ws.data(), &count, g.data(), offsets, NT); });
				CHECK(fabs(ss - ss_t) <= 1e-6 * fabs(ss_t), "grad_sumsq grid=%u: %.9g vs %.9g", sg, ss, ss_t);
				CHECK(count == 0, "grad_sumsq leaves count %u", count);
			}
			const float sumsq = ss_t - 0.25f;
			const double b1 = clip ? 0.3 : 0.9; // 0.3: lerp's other branch
			adamw_cpu(pt.data(), g.data(), mt.data(), vt.data(), bt.data(), offsets, decay, NT, 1e-3, b1, 0.95, 1e-8, 0.1,
			          step, clip ? &sumsq : nullptr, 1.0f);
			emu::launch(gr, 256, [&] {
				emu_adamw(p.data(), g.data(), m.data(), v.data(), b.data(), offsets, decay, NT, 1e-3, b1, 0.95, 1e-8, 0.1, step,
				          clip ? &sumsq : nullptr, 1.0f);
			});
			for (int k = 0; k < NT; k++) {
				CHECK(P[k]->same(*Pt[k]) && M[k]->same(*Mt[k]) && Vv[k]->same(*Vt[k]),
				      "adamw tensor %d grid=%u clip=%d (must be bitwise)", k, gr, clip);
				if (b[k])
					CHECK(B[k]->same(*Bt[k]), "adamw bf16 copy %d grid=%u", k, gr);
			}
			// scale: plain factor and clip coefficient, bitwise
			std::vector<buf<float> *> S, St;
			std::vector<float *> s(NT), st(NT);
			for (int k = 0; k < NT; k++) {
				S.push_back(new buf<float>(sizes[k], offs[k])), St.push_back(new buf<float>(sizes[k]));
				S[k]->copy_from(*G[k]), St[k]->copy_from(*G[k]);
				s[k] = S[k]->p, st[k] = St[k]->p;
			}
			scale_cpu(st.data(), offsets, NT, 0.5f, clip ? &sumsq : nullptr, 1.0f);
			emu::launch(gr, 256, [&] { emu_scale(s.data(), offsets, NT, 0.5f, clip ? &sumsq : nullptr, 1.0f); });
			for (int k = 0; k < NT; k++) {
				CHECK(S[k]->same(*St[k]), "scale tensor %d grid=%u clip=%d", k, gr, clip);
				delete S[k], delete St[k];
			}
		}
	emu::launch(2, 256, [&] { emu_adamw(p.data(), g.data(), m.data(), v.data(), nullptr, offsets, decay, 0, 1e-3, 0.9, 0.95, 1e-8, 0.1, 9, nullptr, 0.0f); });
	for (int k = 0; k < NT; k++)
		delete P[k], delete G[k], delete M[k], delete Vv[k], delete Pt[k], delete Mt[k], delete Vt[k], delete B[k], delete Bt[k];
	printf("adamw, grad_sumsq, scale: done\n");
}

// ---- chunked cross-entropy ----
static void test_ce()
{
	const int V = 500, ROWS = 11;
	int labels[ROWS] = {3, -100, 0, 499, 17, 500, -5, 250, 42, 128, 7};
	buf<float> logits((long)ROWS * V);
	fill(logits, 4.0);
	for (int c = 0; c < V; c++)
		logits[3L * V + c] += 80.0f;
	const int chunks[] = {500, 128, 7, 333, 64};
	for (int ch : chunks)
		for (int off = 0; off < 2; off++) {
			buf<float> rmax(ROWS), rsum(ROWS), tgt(ROWS), rmaxt(ROWS), rsumt(ROWS), tgtt(ROWS);
			buf<float> loss(ROWS), lse(ROWS), tot(3), losst(ROWS), lset(ROWS), tott(3);
			const unsigned grids[] = {ROWS, 4};
			for (unsigned gr : grids) {
				for (int v0 = 0; v0 < V; v0 += ch) {
					const int w = std::min(ch, V - v0);
					buf<float> chunk((long)ROWS * w, off), chunkt((long)ROWS * w);
					for (int r = 0; r < ROWS; r++)
						for (int c = 0; c < w; c++)
							chunk[(long)r * w + c] = logits[(long)r * V + v0 + c];
					chunkt.copy_from(chunk);
					emu::launch(gr, 256, [&] { emu_ce_chunk_fwd_v500(rmax.p, rsum.p, tgt.p, chunk.p, labels, ROWS, w, v0); });
					ce_chunk_fwd_v500_cpu(rmaxt.p, rsumt.p, tgtt.p, chunkt.p, labels, ROWS, w, v0);
				}
				CHECK(rmax.same(rmaxt) && tgt.same(tgtt), "ce_chunk_fwd max/target chunk=%d off=%d grid=%u", ch, off, gr);
				CHECK(worst(rsum, rsumt, 2e-6, 0) <= 1, "ce_chunk_fwd sum chunk=%d grid=%u: %g", ch, gr, worst(rsum, rsumt, 2e-6, 0));
				emu::launch(1, 1024, [&] { emu_ce_finish_v500(loss.p, lse.p, tot.p, rmax.p, rsum.p, tgt.p, labels, ROWS); });
				ce_finish_v500_cpu(losst.p, lset.p, tott.p, rmaxt.p, rsumt.p, tgtt.p, labels, ROWS);
				CHECK(worst(loss, losst, 1e-5, 1e-5) <= 1 && worst(lse, lset, 1e-6, 1e-5) <= 1, "ce_finish chunk=%d grid=%u", ch, gr);
				CHECK(worst(tot, tott, 1e-5, 1e-6) <= 1 && tot[1] == 8.0f, "ce_finish totals chunk=%d: %g %g %g", ch, tot[0], tot[1], tot[2]);
				for (int v0 = 0; v0 < V; v0 += ch) {
					const int w = std::min(ch, V - v0);
					buf<float> chunk((long)ROWS * w, off), chunkt((long)ROWS * w);
					for (int r = 0; r < ROWS; r++)
						for (int c = 0; c < w; c++)
							chunk[(long)r * w + c] = logits[(long)r * V + v0 + c];
					chunkt.copy_from(chunk);
					// bf16 first (out of place: the chunk is its input), then fp32 in place as the fp32 step
					buf<b16> d16((long)ROWS * w, off), d16t((long)ROWS * w);
					emu::launch(gr, 256, [&] { emu_ce_chunk_bwd_bf16_v500(chunk.p, d16.p, lset.p, labels, tott.p, 1.0f, ROWS, w, v0); });
					ce_chunk_bwd_bf16_v500_cpu(chunkt.p, d16t.p, lset.p, labels, tott.p, 1.0f, ROWS, w, v0);
					CHECK(d16.same(d16t), "ce_chunk_bwd bf16 chunk=%d v0=%d off=%d grid=%u (same lse: must be bitwise)", ch, v0, off, gr);
					emu::launch(gr, 256, [&] { emu_ce_chunk_bwd_f32_v500(chunk.p, chunk.p, lset.p, labels, tott.p, 1.0f, ROWS, w, v0); });
					ce_chunk_bwd_f32_v500_cpu(chunkt.p, chunkt.p, lset.p, labels, tott.p, 1.0f, ROWS, w, v0);
					CHECK(chunk.same(chunkt), "ce_chunk_bwd chunk=%d v0=%d off=%d grid=%u (same lse: must be bitwise)", ch, v0, off, gr);
				}
			}
		}
	printf("ce: done\n");
}

// Runs every test whose name contains argv[1] (all without an argument).
static const char *only;
static bool want(const char *name) { return !only || strstr(name, only); }

int main(int argc, char **argv)
{
	only = argc > 1 ? argv[1] : nullptr;
	if (want("rmsnorm_f32_dim128"))
		test_rmsnorm<float>("rmsnorm_f32_dim128", 128, emu_rmsnorm_fwd_f32_dim128, rmsnorm_fwd_f32_dim128_cpu,
		                    emu_rmsnorm_bwd_f32_dim128, rmsnorm_bwd_f32_dim128_cpu);
	if (want("rmsnorm_f32_dim32"))
		test_rmsnorm<float>("rmsnorm_f32_dim32", 32, emu_rmsnorm_fwd_f32_dim32, rmsnorm_fwd_f32_dim32_cpu,
		                    emu_rmsnorm_bwd_f32_dim32, rmsnorm_bwd_f32_dim32_cpu);
	if (want("rmsnorm_f32_dim100"))
		test_rmsnorm<float>("rmsnorm_f32_dim100", 100, emu_rmsnorm_fwd_f32_dim100, rmsnorm_fwd_f32_dim100_cpu,
		                    emu_rmsnorm_bwd_f32_dim100, rmsnorm_bwd_f32_dim100_cpu);
	if (want("rmsnorm_f32_dim2048"))
		test_rmsnorm<float>("rmsnorm_f32_dim2048", 2048, emu_rmsnorm_fwd_f32_dim2048, rmsnorm_fwd_f32_dim2048_cpu,
		                    emu_rmsnorm_bwd_f32_dim2048, rmsnorm_bwd_f32_dim2048_cpu);
	if (want("rmsnorm_f32_dim4096"))
		test_rmsnorm<float>("rmsnorm_f32_dim4096", 4096, emu_rmsnorm_fwd_f32_dim4096, rmsnorm_fwd_f32_dim4096_cpu,
		                    emu_rmsnorm_bwd_f32_dim4096, rmsnorm_bwd_f32_dim4096_cpu);
	if (want("rmsnorm_bf16_dim128"))
		test_rmsnorm<b16>("rmsnorm_bf16_dim128", 128, emu_rmsnorm_fwd_bf16_dim128, rmsnorm_fwd_bf16_dim128_cpu,
		                  emu_rmsnorm_bwd_bf16_dim128, rmsnorm_bwd_bf16_dim128_cpu);
	if (want("rmsnorm_bf16_dim2048"))
		test_rmsnorm<b16>("rmsnorm_bf16_dim2048", 2048, emu_rmsnorm_fwd_bf16_dim2048, rmsnorm_fwd_bf16_dim2048_cpu,
		                  emu_rmsnorm_bwd_bf16_dim2048, rmsnorm_bwd_bf16_dim2048_cpu);
	if (want("rmsnorm_bf16_dim100"))
		test_rmsnorm<b16>("rmsnorm_bf16_dim100", 100, emu_rmsnorm_fwd_bf16_dim100, rmsnorm_fwd_bf16_dim100_cpu,
		                  emu_rmsnorm_bwd_bf16_dim100, rmsnorm_bwd_bf16_dim100_cpu);
	if (want("rmsnorm_bf16_dim4096"))
		test_rmsnorm<b16>("rmsnorm_bf16_dim4096", 4096, emu_rmsnorm_fwd_bf16_dim4096, rmsnorm_fwd_bf16_dim4096_cpu,
		                  emu_rmsnorm_bwd_bf16_dim4096, rmsnorm_bwd_bf16_dim4096_cpu);
	if (want("embedding_f32_h128"))
		test_embedding<float>("embedding_f32_h128", 128, emu_embedding_fwd_f32_h128, embedding_fwd_f32_h128_cpu,
		                      emu_embedding_bwd_f32_h128, embedding_bwd_f32_h128_cpu);
	if (want("embedding_f32_h37"))
		test_embedding<float>("embedding_f32_h37", 37, emu_embedding_fwd_f32_h37, embedding_fwd_f32_h37_cpu,
		                      emu_embedding_bwd_f32_h37, embedding_bwd_f32_h37_cpu);
	if (want("embedding_bf16_h64"))
		test_embedding<b16>("embedding_bf16_h64", 64, emu_embedding_fwd_bf16_h64, embedding_fwd_bf16_h64_cpu,
		                    emu_embedding_bwd_bf16_h64, embedding_bwd_bf16_h64_cpu);
	if (want("embedding_bf16_h100"))
		test_embedding<b16>("embedding_bf16_h100", 100, emu_embedding_fwd_bf16_h100, embedding_fwd_bf16_h100_cpu,
		                    emu_embedding_bwd_bf16_h100, embedding_bwd_bf16_h100_cpu);
	if (want("embedding_bf16_h2048"))
	{ // H = 2048 bf16: the shape of Qwen3-30B-A3B, backward only (the forward is a copy)
		const int h = 2048, vocab = 5, tokens = 300;
		std::vector<int> ids(tokens);
		for (int t = 0; t < tokens; t++)
			ids[t] = rndi(0, vocab);
		buf<b16> dout((long)tokens * h);
		buf<float> d((long)vocab * h), dt((long)vocab * h);
		fill(dout, 1.0);
		embedding_bwd_bf16_h2048_cpu(dt.p, dout.p, ids.data(), tokens, 0, vocab);
		emu::launch(tokens, 256, [&] { emu_embedding_bwd_bf16_h2048(d.p, dout.p, ids.data(), tokens, 0, vocab); });
		CHECK(d.same(dt), "embedding_bwd_bf16_h2048 (must be bitwise)");
	}
	if (want("rope_f32_hd32"))
		test_rope<float>("rope_f32_hd32", 32, emu_rope_fwd_f32_hd32, rope_fwd_f32_hd32_cpu, emu_rope_bwd_f32_hd32,
		                 rope_bwd_f32_hd32_cpu);
	if (want("rope_f32_hd6"))
		test_rope<float>("rope_f32_hd6", 6, emu_rope_fwd_f32_hd6, rope_fwd_f32_hd6_cpu, emu_rope_bwd_f32_hd6,
		                 rope_bwd_f32_hd6_cpu);
	if (want("rope_bf16_hd128"))
		test_rope<b16>("rope_bf16_hd128", 128, emu_rope_fwd_bf16_hd128, rope_fwd_bf16_hd128_cpu, emu_rope_bwd_bf16_hd128,
		               rope_bwd_bf16_hd128_cpu);
	if (want("add_f32"))
		test_add<float>("add_f32", emu_add_f32, add_f32_cpu);
	if (want("add_bf16"))
		test_add<b16>("add_bf16", emu_add_bf16, add_bf16_cpu);
	if (want("swiglu_fwd_f32"))
		test_swiglu<float>("swiglu_fwd_f32", 4, 24, emu_swiglu_fwd_f32_e4_i24, swiglu_fwd_f32_e4_i24_cpu);
	if (want("swiglu_fwd_bf16"))
		test_swiglu<b16>("swiglu_fwd_bf16", 1, 40, emu_swiglu_fwd_bf16_e1_i40, swiglu_fwd_bf16_e1_i40_cpu);
	if (want("casts"))
		test_casts();
	if (want("adamw grad_sumsq scale"))
		test_optimizer();
	if (want("ce"))
		test_ce();
	printf("%d checks, %d failed, %d emulator errors\n", checks, failures, emu::errors);
	return failures || emu::errors;
}

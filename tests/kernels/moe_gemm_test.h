/* moe_gemm_test.h - the test body shared by test_moe_gemm_f32.c (ACT_BF16=0) and
 * test_moe_gemm_bf16.c (ACT_BF16=1) for the six expert-GEMM twins (kernels/cpu/moe_*.c).
 * Include after moec_host.h and testing.h; then instantiate shapes with moe_gemm_twins.h.
 *
 * E = experts, H = hidden, I = expert intermediate size, rows = permuted buffer rows
 * (>= offsets[E]; the rows past it must come back untouched), R = random loss weights.
 *
 * Each twin is run on random act_t inputs and compared with a plain double-precision loop
 * written here from the definition (ragged experts, empty experts at the start, middle and
 * end, one-row experts); h from the gu the twin stored, and swiglu_fwd's twin (selective
 * recompute's SwiGLU) bit for bit against moe_gate_up_fwd's h. For ACT_BF16=0 the backward twins are also checked, chained as the
 * trainer chains them, against central finite differences of the double forward of
 *     loss = sum(R * y),  y = down(silu(gate(x)) * up(x))   per expert segment,
 * with respect to every element of x, gu, w_gate_up and w_down, plus a few spot checks
 * against finite differences of the fp32 twins' own forward. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct moe_twins {
	int e, h, i;
	void (*gate_up_fwd)(const act_t *x, const act_t *w_gate_up, const int *offsets, act_t *h, act_t *gu, int rows);
	void (*down_fwd)(const act_t *h, const act_t *w_down, const int *offsets, act_t *y, int rows);
	void (*down_bwd_data)(const act_t *dy, const act_t *w_down, const act_t *gu, const int *offsets, act_t *dgu,
	                      int rows);
	void (*gate_up_bwd_data)(const act_t *dgu, const act_t *w_gate_up, const int *offsets, act_t *dx, int rows);
	void (*down_bwd_weight)(const act_t *dy, const act_t *h, const int *offsets, float *dw_down, int rows,
	                        int accumulate);
	void (*gate_up_bwd_weight)(const act_t *dgu, const act_t *x, const int *offsets, float *dw_gate_up, int rows,
	                           int accumulate);
	void (*swiglu_fwd)(const act_t *gu, const int *offsets, act_t *h, int rows);
};

/* One test case: a shape's twins and a row layout. */
struct moe_case {
	const char *name;
	const struct moe_twins *t;
	int counts[32]; /* rows per expert (t->e of them) */
	int extra;      /* buffer rows past offsets[E] */
	int fd;         /* run the full finite-difference check (small shapes only) */
};

/* ---- deterministic inputs ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double rnd(void) /* uniform in [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}

static void *xalloc(size_t n)
{
	void *p = calloc(n ? n : 1, 1);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

static act_t *rand_act(size_t n, double scale)
{
	act_t *p = xalloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		act_store(p + i, (float)(scale * rnd()));
	return p;
}

static float *rand_f32(size_t n, double scale)
{
	float *p = xalloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)(scale * rnd());
	return p;
}

static double *to_double(const act_t *p, size_t n)
{
	double *d = xalloc(n * sizeof *d);
	for (size_t i = 0; i < n; i++)
		d[i] = act_load(p + i);
	return d;
}

/* Output buffer pre-filled with a sentinel, so rows the kernel must not write can be checked. */
static act_t *sentinel_act(size_t n)
{
	act_t *p = xalloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		act_store(p + i, -768.0f);
	return p;
}

static double dsilu(double g) { return g / (1.0 + exp(-g)); }

/* ---- double references, straight from the definitions ---- */

/* gu[r][n] = sum_k x[r][k] w_gate_up[e][n][k], h[r][j] = silu(gu[r][j]) * gu[r][I+j] */
static void ref_gate_up_fwd(int E, int H, int I, const int *off, const double *x, const double *wgu, double *gu,
                            double *h)
{
	for (int e = 0; e < E; e++)
		for (int r = off[e]; r < off[e + 1]; r++) {
			for (int n = 0; n < 2 * I; n++) {
				double s = 0;
				for (int k = 0; k < H; k++)
					s += x[(size_t)r * H + k] * wgu[((size_t)e * 2 * I + n) * H + k];
				gu[(size_t)r * 2 * I + n] = s;
			}
			for (int j = 0; j < I; j++)
				h[(size_t)r * I + j] = dsilu(gu[(size_t)r * 2 * I + j]) * gu[(size_t)r * 2 * I + I + j];
		}
}

/* h[r][j] = silu(gu[r][j]) * gu[r][I+j] from a given gu: the twins' h is a function of the
 * gu they store (rounded to act_t), so h's reference is taken from the stored gu. */
static void ref_swiglu(int E, int I, const int *off, const double *gu, double *h)
{
	for (int e = 0; e < E; e++)
		for (int r = off[e]; r < off[e + 1]; r++)
			for (int j = 0; j < I; j++)
				h[(size_t)r * I + j] = dsilu(gu[(size_t)r * 2 * I + j]) * gu[(size_t)r * 2 * I + I + j];
}

/* y[r][c] = sum_j h[r][j] w_down[e][c][j] */
static void ref_down_fwd(int E, int H, int I, const int *off, const double *h, const double *wd, double *y)
{
	for (int e = 0; e < E; e++)
		for (int r = off[e]; r < off[e + 1]; r++)
			for (int c = 0; c < H; c++) {
				double s = 0;
				for (int j = 0; j < I; j++)
					s += h[(size_t)r * I + j] * wd[((size_t)e * H + c) * I + j];
				y[(size_t)r * H + c] = s;
			}
}

/* dh = dy w_down[e]; dgate = dh * up * silu'(gate), dup = dh * silu(gate) */
static void ref_down_bwd_data(int E, int H, int I, const int *off, const double *dy, const double *wd,
                              const double *gu, double *dgu)
{
	for (int e = 0; e < E; e++)
		for (int r = off[e]; r < off[e + 1]; r++)
			for (int j = 0; j < I; j++) {
				double dh = 0;
				for (int c = 0; c < H; c++)
					dh += dy[(size_t)r * H + c] * wd[((size_t)e * H + c) * I + j];
				const double g = gu[(size_t)r * 2 * I + j], u = gu[(size_t)r * 2 * I + I + j];
				const double s = 1.0 / (1.0 + exp(-g));
				dgu[(size_t)r * 2 * I + j] = dh * u * (s + g * s * (1.0 - s));
				dgu[(size_t)r * 2 * I + I + j] = dh * g * s;
			}
}

/* dx[r][k] = sum_n dgu[r][n] w_gate_up[e][n][k] */
static void ref_gate_up_bwd_data(int E, int H, int I, const int *off, const double *dgu, const double *wgu, double *dx)
{
	for (int e = 0; e < E; e++)
		for (int r = off[e]; r < off[e + 1]; r++)
			for (int k = 0; k < H; k++) {
				double s = 0;
				for (int n = 0; n < 2 * I; n++)
					s += dgu[(size_t)r * 2 * I + n] * wgu[((size_t)e * 2 * I + n) * H + k];
				dx[(size_t)r * H + k] = s;
			}
}

/* dw[e][c][j] += sum_r dy[r][c] h[r][j]  (rows of expert e) */
static void ref_down_bwd_weight(int E, int H, int I, const int *off, const double *dy, const double *h, double *dw)
{
	for (int e = 0; e < E; e++)
		for (int c = 0; c < H; c++)
			for (int j = 0; j < I; j++) {
				double s = 0;
				for (int r = off[e]; r < off[e + 1]; r++)
					s += dy[(size_t)r * H + c] * h[(size_t)r * I + j];
				dw[((size_t)e * H + c) * I + j] += s;
			}
}

/* dw[e][n][k] += sum_r dgu[r][n] x[r][k] */
static void ref_gate_up_bwd_weight(int E, int H, int I, const int *off, const double *dgu, const double *x, double *dw)
{
	for (int e = 0; e < E; e++)
		for (int n = 0; n < 2 * I; n++)
			for (int k = 0; k < H; k++) {
				double s = 0;
				for (int r = off[e]; r < off[e + 1]; r++)
					s += dgu[(size_t)r * 2 * I + n] * x[(size_t)r * H + k];
				dw[((size_t)e * 2 * I + n) * H + k] += s;
			}
}

/* ---- comparisons ---- */

/* Tolerances. Outputs are compared element-wise as |got - want| <= rel * |want| + nrm * max|want|.
 * fp32 (ACT_BF16=0): fp32 accumulation of K <= 256 products of O(1) random-sign values is off
 *   from the double sum by ~sqrt(K) * 2^-24 * sum|a b| ~ 1e-6 of the output scale (measured:
 *   < 1e-6); 1e-5 of max|want| leaves 10x, and any indexing error is O(1).
 * bf16 (ACT_BF16=1): inputs are exact bf16 values in both; an act_t output is rounded once
 *   (round to nearest even, unit roundoff 2^-8) after fp32 accumulation, so rel = 2^-8 plus
 *   the same fp32 allowance. fp32 weight gradients: no rounding, the fp32 allowance only. */
#if ACT_BF16
#define TOL_REL (1.0 / 256)
#else
#define TOL_REL 0.0
#endif
#define TOL_NRM 1e-5

/* Rows in some expert segment are compared; the others must still hold the sentinel. */
static void check_rows(const char *what, const char *cname, const act_t *got, const double *want, int rows,
                       int cols, const int *off, int E)
{
	double mx = 0;
	for (int e = 0; e < E; e++)
		for (size_t i = (size_t)off[e] * cols; i < (size_t)off[e + 1] * cols; i++)
			mx = fmax(mx, fabs(want[i]));
	int bad = 0, untouched_bad = 0;
	double worst = 0;
	for (int r = 0; r < rows; r++) {
		int in = 0;
		for (int e = 0; e < E; e++)
			in |= r >= off[e] && r < off[e + 1];
		for (int c = 0; c < cols; c++) {
			const size_t i = (size_t)r * cols + c;
			const double g = act_load(got + i);
			if (!in) {
				untouched_bad += g != -768.0;
				continue;
			}
			const double d = fabs(g - want[i]);
			worst = fmax(worst, mx > 0 ? d / mx : d);
			bad += !(d <= TOL_REL * fabs(want[i]) + TOL_NRM * mx);
		}
	}
	if (bad || untouched_bad)
		fprintf(stderr, "%s [%s]: %d elements out of tolerance (worst |err|/max|want| %.3g), %d rows-outside "
		                "elements written\n",
		        what, cname, bad, worst, untouched_bad);
	EXPECT(bad == 0);
	EXPECT(untouched_bad == 0);
}

/* fp32 weight gradients: got = init + want, compared normwise (no rounding on either path);
 * experts with no rows must be bit-identical to init. */
/* dw after a weight-gradient twin: near want, and an empty expert's slice as it was (acc 1:
 * added to init) or zeros (acc 0: overwrote init, NaN, so an element left unwritten fails). */
static void check_dw(const char *what, const char *cname, const float *got, const float *init, const double *want,
                     size_t per_expert, const int *off, int E, int acc)
{
	double mx = 0;
	for (size_t i = 0; i < per_expert * E; i++)
		mx = fmax(mx, fabs(want[i] - (acc ? init[i] : 0)));
	int bad = 0, empty_bad = 0;
	double worst = 0;
	for (int e = 0; e < E; e++)
		for (size_t i = per_expert * e; i < per_expert * (e + 1); i++) {
			if (off[e + 1] == off[e]) {
				empty_bad += acc ? memcmp(got + i, init + i, sizeof(float)) != 0 : got[i] != 0.0f;
				continue;
			}
			const double d = fabs(got[i] - want[i]);
			worst = fmax(worst, mx > 0 ? d / mx : d);
			bad += !(d <= TOL_NRM * mx + 1e-7 * (acc ? fabs(init[i]) : 0));
		}
	if (bad || empty_bad)
		fprintf(stderr, "%s [%s, %s]: %d elements out of tolerance (worst %.3g), %d elements of empty experts wrong\n",
		        what, cname, acc ? "+=" : "=", bad, worst, empty_bad);
	EXPECT(bad == 0);
	EXPECT(empty_bad == 0);
}

/* acc 1: a non-zero dw to add to; acc 0: NaN everywhere, for the twin to overwrite */
static float *dw_init(size_t n, int acc)
{
	float *p = rand_f32(acc ? n : 0, 1.0);
	if (acc)
		return p;
	free(p);
	p = xalloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = NAN;
	return p;
}

/* ---- one case: every twin against its reference ---- */

static void run_case(const struct moe_case *cs)
{
	const struct moe_twins *t = cs->t;
	const int E = t->e, H = t->h, I = t->i;
	int off[33];
	off[0] = 0;
	for (int e = 0; e < E; e++)
		off[e + 1] = off[e] + cs->counts[e];
	const int rows = off[E] + cs->extra;

	act_t *x = rand_act((size_t)rows * H, 1.0);
	act_t *wgu = rand_act((size_t)E * 2 * I * H, 1.0 / sqrt(H));
	act_t *wd = rand_act((size_t)E * H * I, 1.0 / sqrt(I));
	act_t *hin = rand_act((size_t)rows * I, 1.0);
	act_t *guin = rand_act((size_t)rows * 2 * I, 2.0);
	act_t *dy = rand_act((size_t)rows * H, 1.0);
	act_t *dguin = rand_act((size_t)rows * 2 * I, 1.0);
	double *xd = to_double(x, (size_t)rows * H), *wgud = to_double(wgu, (size_t)E * 2 * I * H);
	double *wdd = to_double(wd, (size_t)E * H * I), *hind = to_double(hin, (size_t)rows * I);
	double *guind = to_double(guin, (size_t)rows * 2 * I), *dyd = to_double(dy, (size_t)rows * H);
	double *dguind = to_double(dguin, (size_t)rows * 2 * I);

	/* gate_up_fwd: h and gu, and h again with gu == NULL; then swiglu_fwd (selective
	 * recompute) on the stored gu must give the epilogue's h bit for bit, rows outside the
	 * experts untouched (both start from the same sentinel). */
	{
		act_t *h = sentinel_act((size_t)rows * I), *gu = sentinel_act((size_t)rows * 2 * I);
		act_t *h2 = sentinel_act((size_t)rows * I), *h3 = sentinel_act((size_t)rows * I);
		double *gur = xalloc(sizeof(double) * rows * 2 * I), *hr = xalloc(sizeof(double) * rows * I);
		t->gate_up_fwd(x, wgu, off, h, gu, rows);
		t->gate_up_fwd(x, wgu, off, h2, NULL, rows);
		ref_gate_up_fwd(E, H, I, off, xd, wgud, gur, hr);
		check_rows("moe_gate_up_fwd gu", cs->name, gu, gur, rows, 2 * I, off, E);
		double *gud = to_double(gu, (size_t)rows * 2 * I);
		ref_swiglu(E, I, off, gud, hr);
		check_rows("moe_gate_up_fwd h", cs->name, h, hr, rows, I, off, E);
		EXPECT(memcmp(h, h2, sizeof(act_t) * rows * I) == 0);
		t->swiglu_fwd(gu, off, h3, rows);
		const int same = memcmp(h, h3, sizeof(act_t) * rows * I) == 0;
		if (!same)
			fprintf(stderr, "swiglu_fwd [%s]: h differs from moe_gate_up_fwd's\n", cs->name);
		EXPECT(same);
		free(h), free(gu), free(h2), free(h3), free(gur), free(hr), free(gud);
	}
	/* down_fwd */
	{
		act_t *y = sentinel_act((size_t)rows * H);
		double *yr = xalloc(sizeof(double) * rows * H);
		t->down_fwd(hin, wd, off, y, rows);
		ref_down_fwd(E, H, I, off, hind, wdd, yr);
		check_rows("moe_down_fwd y", cs->name, y, yr, rows, H, off, E);
		free(y), free(yr);
	}
	/* down_bwd_data: dgu from dy, w_down and the saved gu */
	{
		act_t *dgu = sentinel_act((size_t)rows * 2 * I);
		double *r = xalloc(sizeof(double) * rows * 2 * I);
		t->down_bwd_data(dy, wd, guin, off, dgu, rows);
		ref_down_bwd_data(E, H, I, off, dyd, wdd, guind, r);
		check_rows("moe_down_bwd_data dgu", cs->name, dgu, r, rows, 2 * I, off, E);
		free(dgu), free(r);
	}
	/* gate_up_bwd_data */
	{
		act_t *dx = sentinel_act((size_t)rows * H);
		double *r = xalloc(sizeof(double) * rows * H);
		t->gate_up_bwd_data(dguin, wgu, off, dx, rows);
		ref_gate_up_bwd_data(E, H, I, off, dguind, wgud, r);
		check_rows("moe_gate_up_bwd_data dx", cs->name, dx, r, rows, H, off, E);
		free(dx), free(r);
	}
	/* weight gradients: added to a non-zero dw (acc 1), or overwriting one (acc 0) */
	for (int acc = 1; acc >= 0; acc--) {
		const size_t n = (size_t)E * H * I;
		float *init = dw_init(n, acc), *dw = xalloc(n * sizeof(float));
		double *r = xalloc(n * sizeof(double));
		memcpy(dw, init, n * sizeof(float));
		for (size_t i = 0; i < n; i++)
			r[i] = acc ? init[i] : 0;
		t->down_bwd_weight(dy, hin, off, dw, rows, acc);
		ref_down_bwd_weight(E, H, I, off, dyd, hind, r);
		check_dw("moe_down_bwd_weight dw", cs->name, dw, init, r, (size_t)H * I, off, E, acc);
		free(init), free(dw), free(r);
	}
	for (int acc = 1; acc >= 0; acc--) {
		const size_t n = (size_t)E * 2 * I * H;
		float *init = dw_init(n, acc), *dw = xalloc(n * sizeof(float));
		double *r = xalloc(n * sizeof(double));
		memcpy(dw, init, n * sizeof(float));
		for (size_t i = 0; i < n; i++)
			r[i] = acc ? init[i] : 0;
		t->gate_up_bwd_weight(dguin, x, off, dw, rows, acc);
		ref_gate_up_bwd_weight(E, H, I, off, dguind, xd, r);
		check_dw("moe_gate_up_bwd_weight dw", cs->name, dw, init, r, (size_t)2 * I * H, off, E, acc);
		free(init), free(dw), free(r);
	}

	free(x), free(wgu), free(wd), free(hin), free(guin), free(dy), free(dguin);
	free(xd), free(wgud), free(wdd), free(hind), free(guind), free(dyd), free(dguind);
}

#if !ACT_BF16
/* ---- finite differences (fp32 only) ---- */

/* Loss contribution of row r (expert e) from its pre-activations: sum_c R[r][c] y[r][c]. */
static double loss_row_gu(int H, int I, int e, const double *gur, const double *wd, const double *Rr)
{
	double h[256], l = 0; /* FD cases keep I <= 256 */
	for (int j = 0; j < I; j++)
		h[j] = dsilu(gur[j]) * gur[I + j];
	for (int c = 0; c < H; c++) {
		double y = 0;
		for (int j = 0; j < I; j++)
			y += h[j] * wd[((size_t)e * H + c) * I + j];
		l += Rr[c] * y;
	}
	return l;
}

/* ... and from its input row. */
static double loss_row_x(int H, int I, int e, const double *xr, const double *wgu, const double *wd, const double *Rr)
{
	double gu[2 * 256]; /* FD cases keep I <= 256 */
	for (int n = 0; n < 2 * I; n++) {
		double s = 0;
		for (int k = 0; k < H; k++)
			s += xr[k] * wgu[((size_t)e * 2 * I + n) * H + k];
		gu[n] = s;
	}
	return loss_row_gu(H, I, e, gu, wd, Rr);
}

static double loss_expert(int H, int I, int e, const int *off, const double *x, const double *wgu, const double *wd,
                          const double *R)
{
	double l = 0;
	for (int r = off[e]; r < off[e + 1]; r++)
		l += loss_row_x(H, I, e, x + (size_t)r * H, wgu, wd, R + (size_t)r * H);
	return l;
}

/* Normwise: max |fd - an| <= tol * max |an| over the tensor. */
static void check_fd(const char *what, const char *cname, const double *fd, const double *an, size_t n, double tol)
{
	double mx = 0, worst = 0;
	for (size_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(an[i]));
	for (size_t i = 0; i < n; i++)
		worst = fmax(worst, fabs(fd[i] - an[i]));
	if (!(worst <= tol * mx))
		fprintf(stderr, "%s [%s]: finite differences off by %.3g of max|grad| %.3g\n", what, cname,
		        mx > 0 ? worst / mx : worst, mx);
	EXPECT(worst <= tol * mx);
	EXPECT(mx > 0);
}

/* Analytic gradients from the twins, chained as in training, against central differences of
 * the double forward (every element), and a few against the fp32 twins' own forward. */
static void run_fd(const struct moe_case *cs)
{
	const struct moe_twins *t = cs->t;
	const int E = t->e, H = t->h, I = t->i;
	int off[33];
	off[0] = 0;
	for (int e = 0; e < E; e++)
		off[e + 1] = off[e] + cs->counts[e];
	const int rows = off[E] + cs->extra;
	const size_t nx = (size_t)rows * H, ngu = (size_t)rows * 2 * I, nwgu = (size_t)E * 2 * I * H,
		     nwd = (size_t)E * H * I;

	float *x = rand_f32(nx, 1.0), *wgu = rand_f32(nwgu, 1.0 / sqrt(H)), *wd = rand_f32(nwd, 1.0 / sqrt(I));
	float *R = rand_f32(nx, 1.0);
	float *gu = xalloc(ngu * 4), *h = xalloc((size_t)rows * I * 4), *dgu = xalloc(ngu * 4), *dx = xalloc(nx * 4);
	float *dwgu = xalloc(nwgu * 4), *dwd = xalloc(nwd * 4);

	/* forward, then backward: dy = R */
	t->gate_up_fwd(x, wgu, off, h, gu, rows);
	t->down_bwd_data(R, wd, gu, off, dgu, rows);
	t->gate_up_bwd_data(dgu, wgu, off, dx, rows);
	t->down_bwd_weight(R, h, off, dwd, rows, 0);
	t->gate_up_bwd_weight(dgu, x, off, dwgu, rows, 0);

	double *xd = to_double(x, nx), *wgud = to_double(wgu, nwgu), *wdd = to_double(wd, nwd);
	double *Rd = to_double(R, nx), *gud = to_double(gu, ngu);
	const double eps = 1e-3;

	/* d loss / d gu (down_bwd_data), row by row */
	{
		double *fd = xalloc(ngu * sizeof(double)), *an = to_double(dgu, ngu);
		for (int e = 0; e < E; e++)
			for (int r = off[e]; r < off[e + 1]; r++)
				for (int n = 0; n < 2 * I; n++) {
					double *p = gud + (size_t)r * 2 * I + n, v = *p;
					*p = v + eps;
					double lp = loss_row_gu(H, I, e, gud + (size_t)r * 2 * I, wdd, Rd + (size_t)r * H);
					*p = v - eps;
					double lm = loss_row_gu(H, I, e, gud + (size_t)r * 2 * I, wdd, Rd + (size_t)r * H);
					*p = v;
					fd[(size_t)r * 2 * I + n] = (lp - lm) / (2 * eps);
				}
		check_fd("moe_down_bwd_data dgu vs fd", cs->name, fd, an, ngu, 1e-4);
		free(fd), free(an);
	}
	/* d loss / d x (down_bwd_data -> gate_up_bwd_data) */
	{
		double *fd = xalloc(nx * sizeof(double)), *an = to_double(dx, nx);
		for (int e = 0; e < E; e++)
			for (int r = off[e]; r < off[e + 1]; r++)
				for (int k = 0; k < H; k++) {
					double *p = xd + (size_t)r * H + k, v = *p;
					*p = v + eps;
					double lp = loss_row_x(H, I, e, xd + (size_t)r * H, wgud, wdd, Rd + (size_t)r * H);
					*p = v - eps;
					double lm = loss_row_x(H, I, e, xd + (size_t)r * H, wgud, wdd, Rd + (size_t)r * H);
					*p = v;
					fd[(size_t)r * H + k] = (lp - lm) / (2 * eps);
				}
		/* rows outside every segment: the twin leaves dx as is (zero here), the loss ignores them */
		check_fd("moe_gate_up_bwd_data dx vs fd", cs->name, fd, an, nx, 1e-4);
		free(fd), free(an);
	}
	/* d loss / d w_gate_up and d loss / d w_down, expert by expert */
	{
		double *fd = xalloc(nwgu * sizeof(double)), *an = xalloc(nwgu * sizeof(double));
		for (size_t i = 0; i < nwgu; i++)
			an[i] = dwgu[i];
		for (int e = 0; e < E; e++)
			for (size_t i = (size_t)e * 2 * I * H; i < (size_t)(e + 1) * 2 * I * H; i++) {
				double v = wgud[i];
				wgud[i] = v + eps;
				double lp = loss_expert(H, I, e, off, xd, wgud, wdd, Rd);
				wgud[i] = v - eps;
				double lm = loss_expert(H, I, e, off, xd, wgud, wdd, Rd);
				wgud[i] = v;
				fd[i] = (lp - lm) / (2 * eps);
			}
		check_fd("moe_gate_up_bwd_weight dw vs fd", cs->name, fd, an, nwgu, 1e-4);
		free(fd), free(an);
	}
	{
		double *fd = xalloc(nwd * sizeof(double)), *an = xalloc(nwd * sizeof(double));
		for (size_t i = 0; i < nwd; i++)
			an[i] = dwd[i];
		for (int e = 0; e < E; e++)
			for (size_t i = (size_t)e * H * I; i < (size_t)(e + 1) * H * I; i++) {
				double v = wdd[i];
				wdd[i] = v + eps;
				double lp = loss_expert(H, I, e, off, xd, wgud, wdd, Rd);
				wdd[i] = v - eps;
				double lm = loss_expert(H, I, e, off, xd, wgud, wdd, Rd);
				wdd[i] = v;
				fd[i] = (lp - lm) / (2 * eps);
			}
		check_fd("moe_down_bwd_weight dw vs fd", cs->name, fd, an, nwd, 1e-4);
		free(fd), free(an);
	}

	/* Spot checks through the fp32 twins' own forward (gate_up_fwd -> down_fwd), step 1e-2:
	 * the loss is summed in double from fp32 y, whose rounding (~1e-7 relative) over a 2e-2
	 * step leaves ~1e-5 of noise; truncation is O(step^2) ~ 1e-4 of the gradient scale.
	 * Tolerance 2e-3 of the tensor's max |grad|. */
	{
		float *hh = xalloc((size_t)rows * I * 4), *y = xalloc(nx * 4);
		float *params[3] = {x, wgu, wd};
		const float *grads[3] = {dx, dwgu, dwd};
		const size_t sizes[3] = {nx, nwgu, nwd};
		const char *names[3] = {"x", "w_gate_up", "w_down"};
		for (int q = 0; q < 3; q++) {
			double mx = 0, worst = 0;
			for (size_t i = 0; i < sizes[q]; i++)
				mx = fmax(mx, fabs(grads[q][i]));
			for (int s = 0; s < 12; s++) {
				const size_t i = (size_t)((rnd() + 1) / 2 * sizes[q]) % sizes[q];
				const float v = params[q][i], vs[2] = {v + 1e-2f, v - 1e-2f};
				double l[2];
				for (int sgn = 0; sgn < 2; sgn++) {
					params[q][i] = vs[sgn];
					t->gate_up_fwd(x, wgu, off, hh, NULL, rows);
					t->down_fwd(hh, wd, off, y, rows);
					l[sgn] = 0;
					for (size_t k = 0; k < (size_t)off[E] * H; k++)
						l[sgn] += (double)R[k] * y[k];
				}
				params[q][i] = v;
				const double fdv = (l[0] - l[1]) / ((double)vs[0] - (double)vs[1]);
				worst = fmax(worst, fabs(fdv - grads[q][i]));
			}
			if (!(worst <= 2e-3 * mx))
				fprintf(stderr, "fp32 twin forward fd, %s [%s]: off by %.3g of max|grad|\n", names[q], cs->name,
				        worst / mx);
			EXPECT(worst <= 2e-3 * mx);
		}
		free(hh), free(y);
	}

	free(x), free(wgu), free(wd), free(R), free(gu), free(h), free(dgu), free(dx), free(dwgu), free(dwd);
	free(xd), free(wgud), free(wdd), free(Rd), free(gud);
}
#endif

/* All experts empty: nothing is written anywhere, except the weight gradient when it is
 * overwritten (accumulate 0): zeros, there being nothing to add. */
static void run_empty(const struct moe_twins *t)
{
	const int E = t->e, H = t->h, I = t->i, rows = 5;
	int off[33] = {0};
	act_t *x = rand_act((size_t)rows * H, 1.0), *w = rand_act((size_t)E * 2 * I * H, 1.0);
	act_t *h = sentinel_act((size_t)rows * I), *gu = sentinel_act((size_t)rows * 2 * I);
	float *dw = rand_f32((size_t)E * 2 * I * H, 1.0), *dw0 = xalloc(sizeof(float) * E * 2 * I * H);
	memcpy(dw0, dw, sizeof(float) * E * 2 * I * H);
	t->gate_up_fwd(x, w, off, h, gu, rows);
	t->swiglu_fwd(gu, off, h, rows);
	t->gate_up_bwd_weight(gu, x, off, dw, rows, 1);
	int bad = 0;
	for (size_t i = 0; i < (size_t)rows * I; i++)
		bad += act_load(h + i) != -768.0f;
	EXPECT(bad == 0);
	EXPECT(memcmp(dw, dw0, sizeof(float) * E * 2 * I * H) == 0);
	t->gate_up_bwd_weight(gu, x, off, dw, rows, 0);
	int nonzero = 0;
	for (size_t i = 0; i < (size_t)E * 2 * I * H; i++)
		nonzero += dw[i] != 0.0f;
	EXPECT(nonzero == 0);
	free(x), free(w), free(h), free(gu), free(dw), free(dw0);
}

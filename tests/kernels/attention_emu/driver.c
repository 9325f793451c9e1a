// driver.c - the attention templates under the emulator against their CPU twins: one
// configuration (constants by -D, see run.sh) on nine token / document layouts. Grid, block
// and dynamic smem follow the templates' `moec: launch` lines. bf16 tolerances are
// loose (the GPU rounds P and dS to bf16 for the tensor cores, the twin does not).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "moec_host.h"

typedef struct { unsigned x, y, z; } emu_dim;
void twin_fwd(const act_t *q, const act_t *k, const act_t *v, const int *doc, act_t *out, float *lse, int tokens);
void twin_pre(const act_t *out, const act_t *dout, float *delta, int tokens);
void twin_bwd(const act_t *q, const act_t *k, const act_t *v, const int *doc, const act_t *dout, const float *lse,
	      const float *delta, act_t *dq, act_t *dk, act_t *dv, int tokens);
typedef void launcher(emu_dim, emu_dim, unsigned, const void *, const void *, const void *, const void *, const void *,
		      const void *, const void *, const void *, const void *, const void *, int);
launcher launch_fwd, launch_pre, launch_bwd;

static unsigned long long rng = 88172645463325252ull;
static double unif(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (rng >> 11) * (1.0 / 9007199254740992.0); }
static double gauss(void) { double u = unif() + 1e-300, w = unif(); return sqrt(-2 * log(u)) * cos(6.283185307179586 * w); }

static int fails;
static void cmp(const char *what, int T, const act_t *a, const act_t *b, size_t n, double tol)
{
	double num = 0, den = 0, mx = 0, bmax = 0;
	for (size_t i = 0; i < n; i++) {
		double x = act_load(a + i), y = act_load(b + i);
		if (!(fabs(x - y) <= mx)) mx = fabs(x - y);
		num += (x - y) * (x - y); den += y * y;
		if (fabs(y) > bmax) bmax = fabs(y);
	}
	double rel = mx / (bmax > 1 ? bmax : 1), nmse = num / (den > 0 ? den : 1);
	int bad = !(rel <= tol);
	fails += bad;
	printf("  %-6s T=%-4d max|d|/max %.2e nmse %.2e %s\n", what, T, rel, nmse, bad ? "FAIL" : "");
}
static void cmpf(const char *what, int T, const float *a, const float *b, size_t n, double tol)
{
	double mx = 0, bmax = 0;
	for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - b[i]); if (!(d <= mx)) mx = d; if (fabs(b[i]) > bmax) bmax = fabs(b[i]); }
	double rel = mx / (bmax > 0 ? bmax : 1);
	int bad = !(rel <= tol);
	fails += bad;
	printf("  %-6s T=%-4d max|d|/max %.2e %s\n", what, T, rel, bad ? "FAIL" : "");
}

static void run_case(int T, int seq, int maxlen, const int *lens, int nlens, double amp)
{
	size_t nq = (size_t)T * NH * HD, nk = (size_t)T * NKV * HD;
	int *doc = malloc(T * sizeof(int));
	int run = 0, left = 0, li = 0;
	for (int t = 0; t < T; t++) {
		if (left == 0 || t % seq == 0) { left = lens ? lens[li++ % nlens] : 1 + (int)(unif() * maxlen); run++; }
		doc[t] = 5000 - 3 * run; left--;
	}
	act_t *q = malloc(nq * sizeof(act_t)), *k = malloc(nk * sizeof(act_t)), *v = malloc(nk * sizeof(act_t)), *w = malloc(nq * sizeof(act_t));
	for (size_t i = 0; i < nq; i++) { act_store(q + i, amp * gauss()); act_store(w + i, gauss()); }
	for (size_t i = 0; i < nk; i++) { act_store(k + i, amp * gauss()); act_store(v + i, gauss()); }
	act_t *o1 = malloc(nq * sizeof(act_t)), *o2 = malloc(nq * sizeof(act_t));
	float *l1 = malloc(NH * T * 4), *l2 = malloc(NH * T * 4), *d1 = malloc(NH * T * 4), *d2 = malloc(NH * T * 4);
	act_t *dq1 = malloc(nq * sizeof(act_t)), *dq2 = malloc(nq * sizeof(act_t));
	act_t *dk1 = malloc(nk * sizeof(act_t)), *dk2 = malloc(nk * sizeof(act_t)), *dv1 = malloc(nk * sizeof(act_t)), *dv2 = malloc(nk * sizeof(act_t));
	memset(o2, 0xff, nq * sizeof(act_t)); memset(l2, 0xff, NH * T * 4); memset(d2, 0xff, NH * T * 4);
	memset(dq2, 0xff, nq * sizeof(act_t)); memset(dk2, 0xff, nk * sizeof(act_t)); memset(dv2, 0xff, nk * sizeof(act_t));

	twin_fwd(q, k, v, doc, o1, l1, T);
	launch_fwd((emu_dim){NH, (T + FBM - 1) / FBM, 1}, (emu_dim){2 * FBM, 1, 1}, 0, q, k, v, doc, o2, l2, 0, 0, 0, 0, T);
	printf("case T=%d seq=%d maxlen=%d amp=%.1f\n", T, seq, maxlen, amp);
	cmp("out", T, o2, o1, nq, ACT_BF16 ? 1.5e-2 : 2e-6);
	cmpf("lse", T, l2, l1, NH * T, ACT_BF16 ? 1e-5 : 1e-6);
	// the backward from the twin's forward results, so both sides see the same inputs
	twin_pre(o1, w, d1, T);
	launch_pre((emu_dim){(T * NH + 7) / 8, 1, 1}, (emu_dim){256, 1, 1}, 0, o1, w, d2, 0, 0, 0, 0, 0, 0, 0, T);
	cmpf("delta", T, d2, d1, NH * T, 1e-6);
	twin_bwd(q, k, v, doc, w, l1, d1, dq1, dk1, dv1, T);
	unsigned smem = ACT_BF16 ? 2 * (2 * BBM + 4 * BBN) * (HD + 8) + 16 * BBN : 4 * (2 * BBM * HD + 2 * BBN * (HD + 1) + 2 * BBN + BBM * BBN);
	launch_bwd((emu_dim){(NKV + NH) * ((T + BBM - 1) / BBM), 1, 1}, (emu_dim){2 * BBM, 1, 1}, smem, q, k, v, doc, w, l1, d1, dq2, dk2, dv2, T);
	double gt = ACT_BF16 ? 3e-2 : 1e-5;
	cmp("dq", T, dq2, dq1, nq, gt);
	cmp("dk", T, dk2, dk1, nk, gt);
	cmp("dv", T, dv2, dv1, nk, gt);
	free(doc); free(q); free(k); free(v); free(w); free(o1); free(o2); free(l1); free(l2); free(d1); free(d2);
	free(dq1); free(dq2); free(dk1); free(dk2); free(dv1); free(dv2);
}

int main(int argc, char **argv)
{
	int quick = argc > 1;
	printf("NH=%d NKV=%d HD=%d ACT_BF16=%d fwd %dx%d bwd %dx%d\n", NH, NKV, HD, ACT_BF16, FBM, FBN, BBM, BBN);
	static const int la[] = {30, 1, 45, 24}, lb[] = {64, 64, 72}, lc[] = {1}, ld[] = {127, 2, 129, 63, 65};
	run_case(1, 1, 1, NULL, 0, 1.0);
	run_case(37, 37, 0, (const int[]){37}, 1, 1.0);
	run_case(100, 100, 0, la, 4, 1.0);
	run_case(200, 200, 0, lb, 3, 1.0);
	run_case(50, 50, 0, lc, 1, 1.0);
	if (!quick) {
		run_case(130, 65, 40, NULL, 0, 2.0);
		run_case(386, 386, 0, ld, 5, 1.0);
		run_case(300, 300, 0, (const int[]){300}, 1, 1.0);
		run_case(257, 129, 60, NULL, 0, 1.5);
	}
	printf("%s: %d failures\n", fails ? "FAIL" : "PASS", fails);
	return fails != 0;
}

/* kvt_optim.c - drivers of the optimizer kernels over tensor lists: grad_sumsq, scale, adamw. */
#include "kvt.h"

static void inv_grad_sumsq(void *f, void **a)
{
	FN((float *, double *, unsigned int *, float **, const long *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AI(5));
}
static void inv_scale(void *f, void **a)
{
	FN((float **, const long *, int, float, const float *, float))(AP(0), AP(1), AI(2), AF(3), AP(4), AF(5));
}
static void inv_adamw(void *f, void **a)
{
	FN((float **, float **, float **, float **, bf16 **, const long *, const int *, int, double, double, double, double,
	    double, int, const float *, float))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7), AD(8), AD(9), AD(10), AD(11), AD(12), AI(13), AP(14), AF(15));
}
/* ---- optimizer kernels over tensor lists (pointer arrays in device memory) ---- */
#define MAXT 6
static const struct tlist {
	int n;
	long size[MAXT];
	size_t off[MAXT]; /* byte offset of each tensor: pieces misaligned to each other */
	const char *what;
} tlists[] = {
	{6, {1, 7, 0, 2048, 5003, 13}, {0, 4, 0, 8, 12, 4}, "6 tensors misaligned"},
	{3, {4096, 2048, 1}, {0, 0, 0}, "3 tensors"},
	{3, {1100000, 1000001, 5}, {0, 0, 4}, "3 tensors grid-stride"},
	{0, {0}, {0}, "no tensors"},
};

static long tl_total(const struct tlist *L)
{
	long t = 0;
	for (int i = 0; i < L->n; i++)
		t += L->size[i];
	return t;
}

/* n tensors as buffers (offset `shift` bytes more than the list says) and their pointer array */
static int tl_tensors(struct tcase *c, const struct tlist *L, const char *name, int dt, int role, size_t shift, int *bufs)
{
	int refs[MAXT];
	for (int i = 0; i < L->n; i++) {
		char nm[24];
		snprintf(nm, sizeof nm, "%s[%d]", name, i);
		bufs[i] = refs[i] = tb_add(c, nm, dt, (size_t)L->size[i], role);
		c->b[bufs[i]].off = L->off[i] + shift; /* bytes */
	}
	return tb_ptrs(c, name, refs, L->n);
}

static int tl_offsets(struct tcase *c, const struct tlist *L)
{
	int b = tb_add(c, "offsets", DT_I64, (size_t)L->n + 1, R_IN);
	for (int i = 0; i < L->n; i++)
		tb_i64(c, b)[i + 1] = tb_i64(c, b)[i] + L->size[i];
	return b;
}

/* The tensor-list kernels' grid (grad_sumsq, scale, adamw: their launch lines), blocks of
 * 2048 elements up to 1024 */
static int list_grid(long total) { return imax(1, imin((int)ceil_div(total, 2048), 1024)); }

static void drv_grad_sumsq(struct kctx *x)
{
	for (size_t li = 0; li < sizeof tlists / sizeof tlists[0]; li++) {
		const struct tlist *L = &tlists[li];
		const long total = tl_total(L);
		const int nblk = list_grid(total);
		struct tcase *c = tc_new(x, "total=%ld %s", total, L->what);
		int bs = tb_add(c, "sumsq", DT_F32, 1, R_INOUT);
		tb_f32(c, bs)[0] = 0.25f; /* accumulated into */
		int bws = tb_add(c, "ws", DT_F64, (size_t)nblk, R_SCRATCH);
		int bcnt = tb_add(c, "count", DT_U32, 1, R_SCRATCH);
		tb_exact(c, bcnt);
		int bt[MAXT];
		int bx = tl_tensors(c, L, "x", DT_F32, R_IN, 0, bt);
		for (int i = 0; i < L->n; i++)
			tb_normal(c, bt[i], 0, 1);
		int bo = tl_offsets(c, L);
		tb_nmse(c, bs, TOL_F32_RED);
		ta_bufs(c, "sumsq", bs, "ws", bws, "count", bcnt, "x", bx, "offsets", bo, NULL);
		ta_int(c, "n_tensors", L->n);
		tv(c, "total", total);
		tg(c, nblk, 1, 256);
		run_case(x, c);
	}
}

static void drv_scale(struct kctx *x)
{
	const struct {
		int list;
		float s, sumsq, max_norm; /* sumsq < 0: NULL */
	} cs[] = {{0, 0.5f, -1, 0}, {1, 1.0f, 100.0f, 1.0f}, {2, 0.5f, 0.01f, 1.0f}, {0, 2.0f, 100.0f, 0}, {3, 1.0f, 4.0f, 1.0f}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const struct tlist *L = &tlists[cs[ci].list];
		const long total = tl_total(L);
		struct tcase *c = tc_new(x, "total=%ld s=%g%s%s", total, cs[ci].s, cs[ci].sumsq < 0 ? " sumsq=NULL" : " sumsq",
					 cs[ci].max_norm > 0 ? " clip" : "");
		int bt[MAXT];
		int bx = tl_tensors(c, L, "x", DT_F32, R_INOUT, 0, bt);
		for (int i = 0; i < L->n; i++) {
			tb_normal(c, bt[i], 0, 1);
			tb_nmse(c, bt[i], TOL_F32_EW); /* one multiply by the same scalar */
		}
		int bo = tl_offsets(c, L);
		int bs = -1;
		if (cs[ci].sumsq >= 0) {
			bs = tb_add(c, "sumsq", DT_F32, 1, R_IN);
			tb_f32(c, bs)[0] = cs[ci].sumsq;
		}
		ta_bufs(c, "x", bx, "offsets", bo, NULL);
		ta_int(c, "n_tensors", L->n);
		ta_float(c, "s", cs[ci].s);
		ta_buf(c, "sumsq", bs);
		ta_float(c, "max_norm", cs[ci].max_norm);
		tv(c, "total", total);
		tg(c, list_grid(total), 1, 256);
		run_case(x, c);
	}
}

static void drv_adamw(struct kctx *x)
{
	enum { PB_NONE, PB_SOME, PB_ALL };
	const struct {
		int list, pb, step;
		double beta1, beta2;
		float sumsq, max_norm; /* sumsq < 0: NULL */
		size_t pb_shift;
	} cs[] = {{0, PB_NONE, 1, 0.9, 0.95, -1, 0, 0},      {1, PB_SOME, 1000, 0.3, 0.999, 25.0f, 1.0f, 0},
		  {2, PB_ALL, 10, 0.9, 0.95, -1, 0, 0},       {0, PB_ALL, 3, 0.9, 0.95, 0.04f, 1.0f, 2},
		  {3, PB_NONE, 1, 0.9, 0.95, -1, 0, 0}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const struct tlist *L = &tlists[cs[ci].list];
		const long total = tl_total(L);
		struct tcase *c = tc_new(x, "total=%ld step=%d b1=%g%s%s", total, cs[ci].step, cs[ci].beta1,
					 cs[ci].pb == PB_NONE ? "" : cs[ci].pb == PB_SOME ? " bf16-some" : " bf16",
					 cs[ci].max_norm > 0 ? " clip" : "");
		int bp[MAXT], bg[MAXT], bm[MAXT], bv[MAXT], bb[MAXT];
		/* grads and m shifted against params: the scalar path for some pieces */
		int ap = tl_tensors(c, L, "params", DT_F32, R_INOUT, 0, bp);
		int ag = tl_tensors(c, L, "grads", DT_F32, R_IN, cs[ci].list == 1 ? 4 : 0, bg);
		int am = tl_tensors(c, L, "m", DT_F32, R_INOUT, 0, bm);
		int avv = tl_tensors(c, L, "v", DT_F32, R_INOUT, 0, bv);
		int apb = -1;
		if (cs[ci].pb != PB_NONE) {
			int refs[MAXT];
			for (int i = 0; i < L->n; i++) {
				char nm[24];
				snprintf(nm, sizeof nm, "params_bf16[%d]", i);
				refs[i] = -1;
				bb[i] = -1;
				if (cs[ci].pb == PB_SOME && i == 1)
					continue; /* a NULL entry: no compute copy of that tensor */
				bb[i] = refs[i] = tb_add(c, nm, DT_BF16, (size_t)L->size[i], R_OUT);
				c->b[bb[i]].off = L->off[i] + cs[ci].pb_shift; /* bytes */
				tb_nmse(c, bb[i], TOL_BF16);
			}
			apb = tb_ptrs(c, "params_bf16", refs, L->n);
		}
		for (int i = 0; i < L->n; i++) {
			tb_normal(c, bp[i], 0, 1);
			tb_normal(c, bg[i], 0, 0.1);
			tb_normal(c, bm[i], 0, 0.01);
			for (long j = 0; j < L->size[i]; j++) {
				const double r = 0.01 * rnd_normal();
				tb_set(c, bv[i], (size_t)j, r * r);
			}
			/* the same operations, torch's fusions: bitwise up to the double pow */
			tb_nmse(c, bp[i], TOL_F32_EW);
			tb_nmse(c, bm[i], TOL_F32_EW);
			tb_nmse(c, bv[i], TOL_F32_EW);
		}
		int bo = tl_offsets(c, L);
		int bd = tb_add(c, "decay", DT_I32, (size_t)L->n, R_IN);
		for (int i = 0; i < L->n; i++)
			tb_i32(c, bd)[i] = i % 2 == 0;
		int bs = -1;
		if (cs[ci].sumsq >= 0) {
			bs = tb_add(c, "sumsq", DT_F32, 1, R_IN);
			tb_f32(c, bs)[0] = cs[ci].sumsq;
		}
		ta_bufs(c, "params", ap, "grads", ag, "m", am, "v", avv, "params_bf16", apb, "offsets", bo, "decay", bd,
			NULL);
		ta_int(c, "n_tensors", L->n);
		ta_double(c, "lr", 1e-3);
		ta_double(c, "beta1", cs[ci].beta1);
		ta_double(c, "beta2", cs[ci].beta2);
		ta_double(c, "eps", 1e-8);
		ta_double(c, "weight_decay", 0.1);
		ta_int(c, "step", cs[ci].step);
		ta_buf(c, "sumsq", bs);
		ta_float(c, "max_norm", cs[ci].max_norm);
		tv(c, "total", total);
		tg(c, list_grid(total), 1, 256);
		run_case(x, c);
	}
}


const struct driver kvt_optim_drivers[] = {
	{"grad_sumsq", "float *sumsq, double *ws, unsigned int *count, float **x, const long *offsets, int n_tensors",
	 drv_grad_sumsq, NOACT(grad_sumsq)},
	{"scale", "float **x, const long *offsets, int n_tensors, float s, const float *sumsq, float max_norm", drv_scale,
	 NOACT(scale)},
	{"adamw",
	 "float **params, float **grads, float **m, float **v, bf16 **params_bf16, const long *offsets, const int *decay, "
	 "int n_tensors, double lr, double beta1, double beta2, double eps, double weight_decay, int step, "
	 "const float *sumsq, float max_norm",
	 drv_adamw, NOACT(adamw)},
	{NULL},
};

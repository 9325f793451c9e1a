/* kvt_run.c - one case end to end: the device side (the GPU, or --self-check's host copies),
 * the twin side, the comparisons and the case's line (kvt_core.c describes them). */
#include "kvt.h"
/* ---- the device: the GPU through device_cuda.h, or (--self-check) host memory ------------- */
static char g_err[512];
static int g_dev_broken; /* a device error after a launch: the context is unusable */

static int dev_alloc(size_t bytes, moert_dptr *p)
{
	if (g_self) {
		/* the exact size (ASan sees any access past it); malloc(0) may return NULL */
		void *h = malloc(bytes ? bytes : 1);
		if (!h) {
			snprintf(g_err, sizeof g_err, "out of host memory (%zu bytes)", bytes);
			return -1;
		}
		*p = (moert_dptr)(uintptr_t)h;
		return 0;
	}
	return moert_cuda_alloc(g_dev, bytes < 256 ? 256 : bytes, p, g_err, sizeof g_err);
}

void dev_free(moert_dptr p)
{
	if (!p)
		return;
	if (g_self)
		free((void *)(uintptr_t)p);
	else
		moert_cuda_free(g_dev, p);
}

static int dev_h2d(moert_dptr dst, const void *src, size_t bytes)
{
	if (!bytes)
		return 0;
	if (g_self) {
		memcpy((void *)(uintptr_t)dst, src, bytes);
		return 0;
	}
	return moert_cuda_h2d(g_dev, dst, src, bytes, g_err, sizeof g_err);
}

static int dev_d2h(void *dst, moert_dptr src, size_t bytes)
{
	if (!bytes)
		return 0;
	if (g_self) {
		memcpy(dst, (const void *)(uintptr_t)src, bytes);
		return 0;
	}
	return moert_cuda_d2h(g_dev, dst, src, bytes, g_err, sizeof g_err);
}

/* The kinds of the kernel's parameters, from their types in gen/launch.h */
static int param_kind_ok(const char *type, int kind)
{
	const int ptr = strchr(type, '*') != NULL;
	if (kind == A_BUF || kind == A_NULL)
		return ptr;
	if (ptr)
		return 0;
	if (kind == A_INT)
		return !strcmp(type, "int") || !strcmp(type, "unsigned int") || !strcmp(type, "unsigned");
	if (kind == A_LONG)
		return !strcmp(type, "long") || !strcmp(type, "long long") || !strcmp(type, "size_t");
	if (kind == A_FLOAT)
		return !strcmp(type, "float");
	if (kind == A_DOUBLE)
		return !strcmp(type, "double");
	return 0;
}

/* The element size a pointer parameter implies, 0 when unknown (void *) */
static size_t param_elem(const char *type)
{
	char base[48];
	snprintf(base, sizeof base, "%s", type);
	char *star = strchr(base, '*');
	if (!star)
		return 0;
	if (star[1] == '*')
		return 8;
	*star = 0;
	size_t n = strlen(base);
	while (n && base[n - 1] == ' ')
		base[--n] = 0;
	const char *t = !strncmp(base, "const ", 6) ? base + 6 : base;
	if (!strcmp(t, "float") || !strcmp(t, "int") || !strcmp(t, "unsigned int"))
		return 4;
	if (!strcmp(t, "double") || !strcmp(t, "long"))
		return 8;
	if (!strcmp(t, "bf16"))
		return 2;
	return 0; /* act_t: checked against the instance's dtype below; void */
}

static double elem_d(const unsigned char *p, int dt, size_t i)
{
	switch (dt) {
	case DT_F32: {
		float f;
		memcpy(&f, p + 4 * i, 4);
		return f;
	}
	case DT_BF16: {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		return bf2f(h);
	}
	case DT_F64: {
		double d;
		memcpy(&d, p + 8 * i, 8);
		return d;
	}
	case DT_I32: {
		int32_t v;
		memcpy(&v, p + 4 * i, 4);
		return v;
	}
	case DT_U32: {
		uint32_t v;
		memcpy(&v, p + 4 * i, 4);
		return v;
	}
	default: {
		int64_t v;
		memcpy(&v, p + 8 * i, 8);
		return (double)v;
	}
	}
}

static int dt_float(int dt) { return dt == DT_F32 || dt == DT_BF16 || dt == DT_F64; }

/* exact: bitwise, NaN == NaN for floats. Returns mismatches, first one in *first */
static size_t cmp_exact(const unsigned char *g, const unsigned char *t, int dt, size_t n, size_t *first)
{
	const size_t es = dt_size[dt];
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (!memcmp(g + i * es, t + i * es, es))
			continue;
		if (dt_float(dt) && isnan(elem_d(g, dt, i)) && isnan(elem_d(t, dt, i)))
			continue;
		if (!bad)
			*first = i;
		bad++;
	}
	return bad;
}

/* NMSE; *nonfinite: elements where the bits differ and either side is not finite; bf16:
 * *flips: elements one ulp apart (neighbouring bf16 values), *hard: whether any element
 * differs by more than that */
static double cmp_nmse(const unsigned char *g, const unsigned char *t, int dt, size_t n, double floor, size_t *nonfinite,
		       size_t *first, double *rms, size_t *flips, int *hard)
{
	const size_t es = dt_size[dt];
	double num = 0, den = 0;
	*nonfinite = *flips = 0;
	*hard = 0;
	for (size_t i = 0; i < n; i++) {
		const double y = elem_d(t, dt, i);
		if (!memcmp(g + i * es, t + i * es, es)) {
			if (isfinite(y))
				den += y * y;
			continue;
		}
		const double x = elem_d(g, dt, i);
		if (!isfinite(x) || !isfinite(y)) {
			if (isnan(x) && isnan(y))
				continue;
			if (!*nonfinite)
				*first = i;
			(*nonfinite)++;
			continue;
		}
		num += (x - y) * (x - y);
		den += y * y;
		if (dt == DT_BF16) {
			uint16_t a, b;
			memcpy(&a, g + i * es, 2);
			memcpy(&b, t + i * es, 2);
			if ((a ^ b) < 0x8000u && (a > b ? a - b : b - a) == 1)
				(*flips)++; /* same sign, neighbouring values */
			else if (x != y)
				*hard = 1;
		}
	}
	*rms = n ? sqrt(den / (double)n) : 0;
	const double fl = (double)n * floor * floor;
	if (den < fl)
		den = fl;
	if (num == 0)
		return 0;
	return den > 0 ? num / den : INFINITY;
}

/* argument values: twin side (host pointers) or device side (device addresses) */
static void build_args(struct tcase *c, int dev_side, union av *vals, void **ptrs)
{
	for (int i = 0; i < c->na; i++) {
		const struct targ *a = &c->a[i];
		vals[i] = a->v;
		if (a->kind == A_NULL) {
			memset(&vals[i], 0, sizeof vals[i]);
		} else if (a->kind == A_BUF) {
			const struct tbuf *b = &c->b[a->buf];
			if (!dev_side)
				vals[i].p = b->twin + b->off;
			else if (g_self)
				vals[i].p = (unsigned char *)(uintptr_t)b->dev + b->off;
			else
				vals[i].d = b->dev + b->off;
		}
		ptrs[i] = &vals[i];
	}
}

static int dev_launch(struct kctx *x, struct tcase *c)
{
	union av vals[MAXA];
	void *ptrs[MAXA];
	build_args(c, 1, vals, ptrs);
	if (g_self) {
		x->inv(x->twin, ptrs);
		return 0;
	}
	if (moert_cuda_launch(g_dev, x->fn, c->grid, c->block, x->smem, ptrs, g_err, sizeof g_err))
		return -1;
	if (moert_cuda_sync(g_dev, g_err, sizeof g_err)) {
		g_dev_broken = 1;
		return -1;
	}
	return 0;
}

/* the content a buffer starts with on the device side (pointer arrays: device addresses) */
static void dev_image(struct tcase *c, struct tbuf *b)
{
	if (b->dt != DT_PTR)
		return;
	uint64_t *a = (uint64_t *)(void *)b->init;
	for (int r = 0; r < b->nref; r++)
		a[r] = b->ref[r] < 0 ? 0 : c->b[b->ref[r]].dev + c->b[b->ref[r]].off;
}

static int dev_upload(struct tcase *c, int all)
{
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		if (!all && b->role == R_SCRATCH)
			continue; /* scratch keeps what the previous launch left */
		dev_image(c, b);
		if (dev_h2d(b->dev + b->off, b->init, b->n * dt_size[b->dt]))
			return -1;
	}
	return 0;
}

static int dev_download(struct tcase *c, int second)
{
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		unsigned char **dst = second ? &b->got2 : &b->got;
		*dst = xmalloc(b->n * dt_size[b->dt]);
		if (dev_d2h(*dst, b->dev + b->off, b->n * dt_size[b->dt]))
			return -1;
	}
	/* the copies are queued on the device's stream: wait for them */
	if (!g_self && moert_cuda_sync(g_dev, g_err, sizeof g_err)) {
		g_dev_broken = 1;
		return -1;
	}
	return 0;
}

/* Everything on the device side: allocate, upload, launch, download; upload again (scratch
 * as the launch left it), launch, download into got2. */
static int dev_run(struct kctx *x, struct tcase *c, char *why, size_t cap)
{
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		if (dev_alloc(b->off + b->n * dt_size[b->dt], &b->dev))
			goto fail;
	}
	if (dev_upload(c, 1) || dev_launch(x, c) || dev_download(c, 0))
		goto fail;
	if (dev_upload(c, 0) || dev_launch(x, c) || dev_download(c, 1))
		goto fail;
	return 0;
fail:
	moert_adderr(why, cap, "device: %s; ", g_err);
	return -1;
}

static int cmp_float(const void *a, const void *b)
{
	const float u = *(const float *)a, v = *(const float *)b;
	return u < v ? -1 : u > v;
}

/* --time: the device side alone. Upload, one warm-up launch (which also loads the module and
 * faults nothing in later), then g_time_iters launches, each between two events; the median
 * and the fastest are printed. Outputs accumulate or are overwritten run after run: only the
 * time is looked at. 0, or -1 with why filled. */
static int time_case(struct kctx *x, struct tcase *c, char *why, size_t cap)
{
	enum { MAXITERS = 1000 };
	float ms[MAXITERS];
	const int n = g_time_iters < MAXITERS ? g_time_iters : MAXITERS;
	for (int i = 0; i < c->nb; i++)
		if (dev_alloc(c->b[i].off + c->b[i].n * dt_size[c->b[i].dt], &c->b[i].dev))
			goto fail;
	if (dev_upload(c, 1) || dev_launch(x, c))
		goto fail;
	union av vals[MAXA];
	void *ptrs[MAXA];
	build_args(c, 1, vals, ptrs);
	for (int it = 0; it < n; it++) {
		if (moert_cuda_mark(g_dev, 0, g_err, sizeof g_err) ||
		    moert_cuda_launch(g_dev, x->fn, c->grid, c->block, x->smem, ptrs, g_err, sizeof g_err) ||
		    moert_cuda_mark(g_dev, 1, g_err, sizeof g_err) || moert_cuda_elapsed_ms(g_dev, 0, 1, &ms[it], g_err, sizeof g_err)) {
			g_dev_broken = 1;
			goto fail;
		}
	}
	qsort(ms, (size_t)n, sizeof ms[0], cmp_float);
	const double med = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
	/* GEMMs: TFLOP/s of their FLOPs; copies (no flops): GB/s, every buffer read or written once */
	double bytes = 0;
	for (int i = 0; i < c->nb; i++)
		bytes += (double)c->b[i].n * dt_size[c->b[i].dt];
	const double rate = med <= 0 ? 0 : c->flops > 0 ? c->flops / (med * 1e9) : bytes / (med * 1e6);
	printf("%-46s %-16s %9.3f ms %7.1f %s  (min %.3f ms, %d launches; %s)\n", x->k->name, c->shape, med, rate,
	       c->flops > 0 ? "TFLOP/s" : "GB/s", ms[0], n, c->note);
	fflush(stdout);
	return 0;
fail:
	moert_adderr(why, cap, "device: %s; ", g_err);
	return -1;
}

static void print_line(const struct kctx *x, const struct tcase *c, const char *det, const char *why, int fail)
{
	printf("%-46s %-30s %s %s\n", x->k->name, c->shape, det, fail ? "FAIL" : "PASS");
	if (fail && why[0])
		printf("    %s\n", why);
	fflush(stdout);
}

/* Compares every output of the case (b->got) with the twin's (scratch: with what it must come
 * back as) and every input with what it was; det gets one entry per output (tensor lists,
 * x[0], x[1], ..., as one: the worst), why the reasons of failures. Returns 1 on a failure. */
static int compare_all(struct tcase *c, char *det, size_t dcap, char *why, size_t wcap, char *info, size_t icap)
{
	int fail = 0;
	/* comparisons; tensors of a list (x[0], x[1], ...) print as one entry, the worst */
	struct agg {
		char base[24];
		int exact, nonfinite, untouched;
		size_t bad, n, flips;
		double worst;
	} ag[MAXB];
	int nag = 0;
	for (int i = 0; i < c->nb; i++) {
		const struct tbuf *b = &c->b[i];
		const size_t es = dt_size[b->dt], bytes = b->n * es;
		if (b->role == R_IN) {
			if (memcmp(b->got, b->init, bytes)) {
				moert_adderr(why, wcap, "the kernel changed its input %s; ", b->name);
				fail = 1;
			}
			continue;
		}
		if (b->cmp == C_NONE)
			continue;
		/* scratch must come back as it was; outputs as the twin left them */
		const unsigned char *ref = b->role == R_SCRATCH ? b->init : b->twin + b->off;
		const size_t n = b->ncmp;
		char base[24];
		snprintf(base, sizeof base, "%s", b->name);
		char *br = strchr(base, '[');
		if (br)
			*br = 0;
		struct agg *a = NULL;
		for (int k = 0; k < nag; k++)
			if (!strcmp(ag[k].base, base))
				a = &ag[k];
		if (!a) {
			a = &ag[nag++];
			memset(a, 0, sizeof *a);
			snprintf(a->base, sizeof a->base, "%s", base);
			a->exact = b->cmp == C_EXACT;
		}
		if (b->role != R_SCRATCH && n && !memcmp(ref, b->init, n * es))
			a->untouched = 1; /* the twin left it as it was: a vacuous comparison here */
		size_t first = 0;
		if (b->cmp == C_EXACT) {
			size_t bad = cmp_exact(b->got, ref, b->dt, n, &first);
			a->bad += bad;
			a->n += n;
			if (bad) {
				if (dt_float(b->dt))
					moert_adderr(why, wcap, "%s: %zu/%zu differ, [%zu] gpu %.9g, %s %.9g; ", b->name, bad, n, first,
					     elem_d(b->got, b->dt, first), b->role == R_SCRATCH ? "must be" : "twin", elem_d(ref, b->dt, first));
				else
					moert_adderr(why, wcap, "%s: %zu/%zu differ, [%zu] gpu %.0f, %s %.0f; ", b->name, bad, n, first,
					     elem_d(b->got, b->dt, first), b->role == R_SCRATCH ? "must be" : "twin", elem_d(ref, b->dt, first));
				fail = 1;
			}
		} else {
			size_t nonfinite = 0, flips = 0;
			int hard = 0;
			double rms = 0;
			const double e = cmp_nmse(b->got, ref, b->dt, n, b->floor, &nonfinite, &first, &rms, &flips, &hard);
			/* bf16 outputs rounded once (TOL_BF16): a value the two sides compute a hair apart
			 * in fp32 may round to neighbouring bf16 values; one such flip of a large element
			 * of a small output is NMSE ~1e-6 by itself. Rare flips alone pass; anything else
			 * is held to the NMSE tolerance. */
			const int flips_ok = b->dt == DT_BF16 && b->tol == TOL_BF16 && !hard &&
					     flips <= (n / 1000 > 2 ? n / 1000 : 2);
			if (nonfinite) {
				a->nonfinite = 1;
				moert_adderr(why, wcap, "%s: %zu non-finite differences, [%zu] gpu %.9g twin %.9g; ", b->name, nonfinite,
				     first, elem_d(b->got, b->dt, first), elem_d(ref, b->dt, first));
				fail = 1;
			} else if (!(e <= b->tol) && !flips_ok) {
				moert_adderr(why, wcap, "%s: NMSE %.3g over %.0e (%zu one-ulp flips%s); ", b->name, e, b->tol, flips,
				     hard ? " and larger differences" : "");
				fail = 1;
			} else if (!(e <= b->tol)) {
				a->flips += flips; /* passed on the flip rule */
			}
			if (b->dt == DT_BF16 && flips)
				moert_adderr(info, icap, "%s: %zu one-ulp flips; ", b->name, flips);
			if (!(e <= a->worst))
				a->worst = e;
			if (!br)
				moert_adderr(info, icap, "%s rms %.3g; ", b->name, rms);
		}
	}
	for (int k = 0; k < nag; k++) {
		const struct agg *a = &ag[k];
		if (a->exact)
			a->bad ? moert_adderr(det, dcap, "%s=%zu/%zu-differ ", a->base, a->bad, a->n) : moert_adderr(det, dcap, "%s=exact ", a->base);
		else if (a->nonfinite)
			moert_adderr(det, dcap, "%s=nonfinite ", a->base);
		else if (a->worst == 0)
			moert_adderr(det, dcap, "%s=0 ", a->base);
		else if (a->flips)
			moert_adderr(det, dcap, "%s=%.1e(%zu-flips) ", a->base, a->worst, a->flips);
		else
			moert_adderr(det, dcap, "%s=%.1e ", a->base, a->worst);
		if (g_verbose && a->untouched)
			moert_adderr(det, dcap, "(untouched) ");
	}
	return fail;
}

/* self-check: one element of every bf16 output of the rounded-once class moves to its
 * neighbouring bf16 value (what an fp32 hair's difference can do); the comparisons must let
 * that pass. Returns 1 when there was such an output. */
static int flip_outputs(struct tcase *c)
{
	int any = 0;
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		if (b->role == R_IN || b->cmp != C_NMSE || b->dt != DT_BF16 || b->tol != TOL_BF16)
			continue;
		for (size_t k = 0; k < b->ncmp; k++) { /* the first finite non-zero element */
			uint16_t h;
			memcpy(&h, b->got + 2 * k, 2);
			if ((h & 0x7fffu) == 0 || (h & 0x7f80u) == 0x7f80u || (h & 0x7fffu) == 0x7f7fu)
				continue;
			h++;
			memcpy(b->got + 2 * k, &h, 2);
			any = 1;
			break;
		}
	}
	return any;
}

/* self-check: one element of every compared output goes wrong (as a broken kernel would
 * make it); the comparisons must then fail. Returns 1 when there was something to corrupt. */
static int corrupt_outputs(struct tcase *c)
{
	int any = 0;
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		if (b->role == R_IN || b->cmp == C_NONE || !b->ncmp)
			continue;
		const size_t j = (size_t)rnd_int((int)b->ncmp), es = dt_size[b->dt];
		unsigned char *e = b->got + j * es;
		if (dt_float(b->dt)) {
			const double v = elem_d(b->got, b->dt, j), w = isfinite(v) ? v + 100 * (fabs(v) + 1) : 1.0;
			if (b->dt == DT_F32) {
				const float f = (float)w;
				memcpy(e, &f, 4);
			} else if (b->dt == DT_BF16) {
				const uint16_t h = f2bf((float)w);
				memcpy(e, &h, 2);
			} else {
				memcpy(e, &w, 8);
			}
		} else {
			e[0] ^= 1;
		}
		any = 1;
	}
	return any;
}

/* Runs one case: checks, the twin, the device, the comparisons; prints its line. */
int run_case(struct kctx *x, struct tcase *c)
{
	char det[1024] = "", why[2048] = "", info[1024] = "";
	int fail = 0;

	/* the driver against the kernel's parameters (gen/launch.h) */
	if (c->na != x->par.n)
		moert_adderr(why, sizeof why, "driver passes %d arguments, the kernel has %d; ", c->na, x->par.n);
	for (int i = 0; i < c->na && i < x->par.n; i++) {
		const struct targ *a = &c->a[i];
		if (strcmp(a->name, x->par.name[i]))
			moert_adderr(why, sizeof why, "argument %d is %s, the kernel's is %s; ", i, a->name, x->par.name[i]);
		else if (!param_kind_ok(x->par.type[i], a->kind))
			moert_adderr(why, sizeof why, "argument %s: wrong kind for %s; ", a->name, x->par.type[i]);
		else if (a->kind == A_BUF) {
			const struct tbuf *b = &c->b[a->buf];
			size_t es = param_elem(x->par.type[i]);
			if (!es && strstr(x->par.type[i], "act_t"))
				es = x->bf ? 2 : 4;
			if (es && es != dt_size[b->dt])
				moert_adderr(why, sizeof why, "argument %s (%s) gets %zu-byte elements; ", a->name, x->par.type[i],
				     dt_size[b->dt]);
			if (strstr(x->par.type[i], "act_t") && b->dt != x->adt)
				moert_adderr(why, sizeof why, "argument %s is act_t, the buffer is not; ", a->name);
		}
	}
	for (int i = 0; i < c->nb; i++)
		if (c->b[i].cmp == C_UNSET)
			moert_adderr(why, sizeof why, "driver: output %s has no comparison; ", c->b[i].name);
	/* the geometry against the launch text */
	unsigned g[3], bl[3], sm;
	char err[400];
	if (launch_eval(x->k, c, 0, g, bl, &sm, err, sizeof err))
		moert_adderr(why, sizeof why, "%s; ", err);
	else if (memcmp(g, c->grid, sizeof g) || memcmp(bl, c->block, sizeof bl) || sm != c->smem || sm != x->smem)
		moert_adderr(why, sizeof why,
		     "launch text gives grid=(%u,%u,%u) block=(%u,%u,%u) smem=%u (at load: %u), the driver "
		     "grid=(%u,%u,%u) block=(%u,%u,%u) smem=%u; ",
		     g[0], g[1], g[2], bl[0], bl[1], bl[2], sm, x->smem, c->grid[0], c->grid[1], c->grid[2], c->block[0],
		     c->block[1], c->block[2], c->smem);
	if (!c->grid[0] || !c->grid[1] || !c->grid[2])
		moert_adderr(why, sizeof why, "driver: an empty grid (the host skips such a launch); ");
	if (why[0]) {
		fail = 1;
		goto out;
	}
	if (g_dev_broken) {
		moert_adderr(why, sizeof why, "not run: an earlier kernel left the device unusable");
		fail = 1;
		goto out;
	}
	if (g_time) {
		if (!time_case(x, c, why, sizeof why)) {
			tc_free(c);
			return 0;
		}
		fail = 1;
		goto out;
	}

	/* the twin */
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		const size_t bytes = b->n * dt_size[b->dt];
		b->twin = xmalloc(b->off + bytes);
		memset(b->twin, 0xee, b->off);
		memcpy(b->twin + b->off, b->init, bytes);
	}
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		if (b->dt == DT_PTR)
			for (int r = 0; r < b->nref; r++) {
				void *p = b->ref[r] < 0 ? NULL : c->b[b->ref[r]].twin + c->b[b->ref[r]].off;
				memcpy(b->twin + b->off + 8 * (size_t)r, &p, 8);
			}
	}
	{
		union av vals[MAXA];
		void *ptrs[MAXA];
		build_args(c, 0, vals, ptrs);
		x->inv(x->twin, ptrs);
	}
	for (int i = 0; i < c->nb; i++) {
		const struct tbuf *b = &c->b[i];
		if (b->role == R_IN && b->dt != DT_PTR && memcmp(b->twin + b->off, b->init, b->n * dt_size[b->dt]))
			moert_adderr(why, sizeof why, "the twin changed its input %s; ", b->name);
	}

	/* the device */
	if (dev_run(x, c, why, sizeof why)) {
		fail = 1;
		goto out;
	}

	fail |= compare_all(c, det, sizeof det, why, sizeof why, info, sizeof info);
	/* the second launch, on the scratch the first one left: bitwise the same */
	for (int i = 0; i < c->nb; i++) {
		const struct tbuf *b = &c->b[i];
		if (b->role == R_IN || (b->role == R_SCRATCH && b->cmp == C_NONE))
			continue;
		const size_t bytes = (b->role == R_SCRATCH ? b->ncmp : b->n) * dt_size[b->dt];
		if (memcmp(b->got, b->got2, bytes)) {
			moert_adderr(why, sizeof why, "%s: a second launch gives other bits; ", b->name);
			fail = 1;
		}
	}
	/* self-check: the comparisons must forgive a one-ulp bf16 flip, and must be able to fail */
	if (g_self && !fail && flip_outputs(c)) {
		char d2[1024] = "", w2[2048] = "", i2[1024] = "";
		if (compare_all(c, d2, sizeof d2, w2, sizeof w2, i2, sizeof i2))
			moert_adderr(why, sizeof why, "a one-ulp flip of a bf16 output failed the comparison: %s", w2);
	}
	if (g_self && !fail && corrupt_outputs(c)) {
		char d2[1024] = "", w2[2048] = "", i2[1024] = "";
		if (compare_all(c, d2, sizeof d2, w2, sizeof w2, i2, sizeof i2))
			g_corruptions++;
		else
			moert_adderr(why, sizeof why, "an output corrupted on the device side went unnoticed: the comparisons cannot fail");
	}
out:
	if (why[0])
		fail = 1;
	print_line(x, c, det, why, fail);
	if (g_verbose && info[0])
		printf("    %s\n", info);
	x->nfail += fail;
	tc_free(c);
	return fail;
}

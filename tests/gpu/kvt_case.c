/* kvt_case.c - the case API the drivers use (kvt.h): buffers, their random fills, the
 * arguments and launch sizes of one case. */
#include "kvt.h"

const size_t dt_size[] = {4, 2, 4, 4, 8, 8, 8};
uint64_t g_rng;

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct tcase *tc_new(struct kctx *x, const char *fmt, ...)
{
	struct tcase *c = xcalloc(1, sizeof *c);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->shape, sizeof c->shape, fmt, ap);
	va_end(ap);
	/* every case has its own stream: the same inputs whatever --only or --max-rows selects */
	g_rng = g_seed ^ hash_str(x->k->name) ^ (0x9e3779b97f4a7c15ull * (uint64_t)(x->ncase + x->nskip + 1));
	x->ncase++;
	return c;
}

/* --max-rows: is a case of `rows` rows (tokens) over the cap? Then the driver skips it, before
 * tc_new; it is counted and listed, and keeps its case number, so every case that runs draws
 * the inputs it draws without the option. */
int over_max_rows(struct kctx *x, const char *what, long rows)
{
	if (!g_max_rows || rows <= g_max_rows)
		return 0;
	char shape[64];
	snprintf(shape, sizeof shape, "%s=%ld", what, rows);
	printf("%-46s %-30s not run: over --max-rows %ld\n", x->k->name, shape, g_max_rows);
	x->nskip++;
	return 1;
}

void sentinel(struct tbuf *b)
{
	/* floats: all-ones bytes are NaN in f32, bf16 and f64; integers: 0xa5a5a5a5 */
	const int fl = b->dt == DT_F32 || b->dt == DT_BF16 || b->dt == DT_F64;
	memset(b->init, fl ? 0xff : 0xa5, b->n * dt_size[b->dt]);
}

int tb_add(struct tcase *c, const char *name, int dt, size_t n, int role)
{
	if (c->nb == MAXB) {
		fprintf(stderr, "kernel_vs_twin: too many buffers in one case\n");
		exit(2);
	}
	struct tbuf *b = &c->b[c->nb];
	memset(b, 0, sizeof *b);
	snprintf(b->name, sizeof b->name, "%s", name);
	b->dt = dt;
	b->role = role;
	b->n = b->ncmp = n;
	b->init = xcalloc(n ? n : 1, dt_size[dt]);
	b->cmp = role == R_IN || role == R_SCRATCH ? C_NONE : C_UNSET;
	if (role == R_OUT)
		sentinel(b);
	return c->nb++;
}

void tb_nmse(struct tcase *c, int i, double tol)
{
	c->b[i].cmp = C_NMSE;
	c->b[i].tol = tol;
}

void tb_exact(struct tcase *c, int i) { c->b[i].cmp = C_EXACT; }

/* an array of pointers to buffers refs[0..n-1] (-1: NULL), in device memory on the GPU side */
int tb_ptrs(struct tcase *c, const char *name, const int *refs, int n)
{
	if (n > MAXREF) {
		fprintf(stderr, "kernel_vs_twin: too many pointers in %s\n", name);
		exit(2);
	}
	int i = tb_add(c, name, DT_PTR, (size_t)n, R_IN);
	c->b[i].nref = n;
	memcpy(c->b[i].ref, refs, (size_t)n * sizeof *refs);
	return i;
}

float *tb_f32(struct tcase *c, int i) { return (float *)(void *)c->b[i].init; }
int *tb_i32(struct tcase *c, int i) { return (int *)(void *)c->b[i].init; }
long *tb_i64(struct tcase *c, int i) { return (long *)(void *)c->b[i].init; }

static void buf_set(struct tbuf *b, size_t j, double v)
{
	if (b->dt == DT_F32)
		((float *)(void *)b->init)[j] = (float)v;
	else if (b->dt == DT_BF16)
		((uint16_t *)(void *)b->init)[j] = f2bf((float)v);
	else if (b->dt == DT_F64)
		((double *)(void *)b->init)[j] = v;
	else {
		fprintf(stderr, "kernel_vs_twin: tb_set on a non-float buffer %s\n", b->name);
		exit(2);
	}
}

void tb_set(struct tcase *c, int i, size_t j, double v) { buf_set(&c->b[i], j, v); }

/* the value as the kernel sees it (bf16 rounded) */
double tb_get(const struct tcase *c, int i, size_t j)
{
	const struct tbuf *b = &c->b[i];
	if (b->dt == DT_F32)
		return ((const float *)(const void *)b->init)[j];
	if (b->dt == DT_BF16)
		return bf2f(((const uint16_t *)(const void *)b->init)[j]);
	return ((const double *)(const void *)b->init)[j];
}

/* Elements [j0, j1) of a float buffer filled from the stream that is at `base` before element
 * 0, two draws per element: tb_normal's normals, or (uniform) a cheap stand-in of the same mean
 * and spread. Big ranges are split over threads; every element's value depends only on its
 * index, so the result is the one thread's. */
struct nfill {
	struct tbuf *b;
	size_t j0, j1;
	uint64_t base;
	double mean, sd;
	int uniform;
};

static void *nfill_run(void *arg)
{
	const struct nfill *f = arg;
	uint64_t s = f->base + 2 * GOLDEN * (uint64_t)f->j0;
	if (f->uniform)
		for (size_t j = f->j0; j < f->j1; j++, s += 2 * GOLDEN)
			buf_set(f->b, j, f->mean + f->sd * 1.7320508075688772 * (2 * unif_of(mix64(s + GOLDEN)) - 1));
	else
		for (size_t j = f->j0; j < f->j1; j++)
			buf_set(f->b, j, f->mean + f->sd * normal_at(&s));
	return NULL;
}

static void fill_range(struct tbuf *b, size_t j0, size_t j1, uint64_t base, double mean, double sd, int uniform)
{
	if (b->dt != DT_F32 && b->dt != DT_BF16 && b->dt != DT_F64) {
		fprintf(stderr, "kernel_vs_twin: tb_set on a non-float buffer %s\n", b->name);
		exit(2);
	}
	const size_t n = j1 - j0;
	const int nt = n < ((size_t)1 << 20) ? 1 : g_threads;
	struct nfill f[MAXTHREADS];
	pthread_t t[MAXTHREADS];
	int started[MAXTHREADS] = {0};
	for (int k = 0; k < nt; k++)
		f[k] = (struct nfill){b, j0 + n * (size_t)k / (size_t)nt, j0 + n * (size_t)(k + 1) / (size_t)nt, base, mean, sd, uniform};
	for (int k = 1; k < nt; k++)
		started[k] = !pthread_create(&t[k], NULL, nfill_run, &f[k]);
	nfill_run(&f[0]);
	for (int k = 1; k < nt; k++) {
		if (started[k])
			pthread_join(t[k], NULL);
		else
			nfill_run(&f[k]); /* no thread: here */
	}
}

/* buffer i filled from the case's stream, two draws per element (uniform: fill_range's stand-in).
 * --time: the values only need a realistic spread, not independence: the first 1M elements
 * are drawn and the rest are copies of them (a 1 GiB input in a fraction of a second) */
static void tb_fill(struct tcase *c, int i, double mean, double sd, int uniform)
{
	const uint64_t base = g_rng;
	struct tbuf *b = &c->b[i];
	const size_t block = (size_t)1 << 20;
	fill_range(b, 0, g_time && b->n > block ? block : b->n, base, mean, sd, uniform);
	if (g_time && b->n > block) {
		const size_t es = dt_size[b->dt], total = b->n * es;
		for (size_t have = block * es; have < total; have *= 2)
			memcpy(b->init + have, b->init, total - have < have ? total - have : have);
	}
	g_rng = base + 2 * GOLDEN * (uint64_t)b->n;
}

void tb_normal(struct tcase *c, int i, double mean, double sd) { tb_fill(c, i, mean, sd, 0); }

/* The expert weights of a grouped GEMM, [E, ...], or their fp32 gradients (accumulated into):
 * normals; with --max-rows the cheap stand-in, from the same stream positions (the case's other
 * inputs keep their values). At E = 128 experts of 2I x H = 1536 x 2048, drawing w_gate_up's
 * 400M normals took most of a case's time whatever its rows (15-20 s on one core). */
void tb_weights(struct tcase *c, int i, double mean, double sd) { tb_fill(c, i, mean, sd, g_max_rows > 0); }

static void ta_add(struct tcase *c, const char *name, int kind, int buf, union av v)
{
	if (c->na == MAXA) {
		fprintf(stderr, "kernel_vs_twin: too many arguments\n");
		exit(2);
	}
	struct targ *a = &c->a[c->na++];
	snprintf(a->name, sizeof a->name, "%s", name);
	a->kind = kind;
	a->buf = buf;
	a->v = v;
}

void ta_buf(struct tcase *c, const char *name, int buf) { ta_add(c, name, buf < 0 ? A_NULL : A_BUF, buf, (union av){0}); }
void ta_int(struct tcase *c, const char *name, int v) { ta_add(c, name, A_INT, -1, (union av){.i = v}); }
void ta_long(struct tcase *c, const char *name, long v) { ta_add(c, name, A_LONG, -1, (union av){.l = v}); }
void ta_float(struct tcase *c, const char *name, float v) { ta_add(c, name, A_FLOAT, -1, (union av){.f = v}); }
void ta_double(struct tcase *c, const char *name, double v) { ta_add(c, name, A_DOUBLE, -1, (union av){.g = v}); }

/* a runtime size the launch text refers to */
void tv(struct tcase *c, const char *name, long long v)
{
	if (c->nv == MAXV) {
		fprintf(stderr, "kernel_vs_twin: too many launch variables\n");
		exit(2);
	}
	snprintf(c->vn[c->nv], sizeof c->vn[c->nv], "%s", name);
	c->vv[c->nv++] = v;
}

/* the driver's launch geometry (mirroring the template's launch line) */
void tg(struct tcase *c, long gx, long gy, long bx)
{
	c->grid[0] = (unsigned)gx;
	c->grid[1] = (unsigned)gy;
	c->grid[2] = 1;
	c->block[0] = (unsigned)bx;
	c->block[1] = c->block[2] = 1;
	c->smem = 0;
}

void tc_free(struct tcase *c)
{
	for (int i = 0; i < c->nb; i++) {
		free(c->b[i].init);
		free(c->b[i].twin);
		free(c->b[i].got);
		free(c->b[i].got2);
		dev_free(c->b[i].dev);
	}
	free(c);
}


int need(struct kctx *x, const char *name, long *v)
{
	if (!kconst_int(x->k, name, v))
		return 0;
	printf("%-46s %-30s constant %s missing or not an integer FAIL\n", x->k->name, "-", name);
	x->nfail++;
	return -1;
}

int tb_in(struct tcase *c, const char *name, int dt, size_t n, double mean, double sd)
{
	const int i = tb_add(c, name, dt, n, R_IN);
	tb_normal(c, i, mean, sd);
	return i;
}

int tb_out(struct tcase *c, const char *name, int dt, size_t n, double tol)
{
	const int i = tb_add(c, name, dt, n, R_OUT);
	if (tol == TOL_EXACT)
		tb_exact(c, i);
	else
		tb_nmse(c, i, tol);
	return i;
}

void ta_bufs(struct tcase *c, ...)
{
	va_list ap;
	va_start(ap, c);
	for (const char *name; (name = va_arg(ap, const char *));)
		ta_buf(c, name, va_arg(ap, int));
	va_end(ap);
}

int tc_run_n(struct kctx *x, struct tcase *c, const char *name, int n, long gx, long gy, long bx)
{
	ta_int(c, name, n);
	tv(c, name, n);
	tg(c, gx, gy, bx);
	return run_case(x, c);
}

int tb_copy(struct tcase *c, const char *name, int dt, size_t n, int role, const void *src)
{
	const int i = tb_add(c, name, dt, n, role);
	memcpy(c->b[i].init, src, n * dt_size[dt]);
	return i;
}

/* --time's routing (kvt_core.c): for each of T tokens, the K experts of the top-K of E N(0,1)
 * logits (+4 on experts 0..7 when skewed), into pick[T K], highest first */
void time_route(int E, int K, int T, int skewed, int *pick)
{
	double *l = xcalloc((size_t)E, sizeof *l);
	for (int t = 0; t < T; t++) {
		for (int e = 0; e < E; e++)
			l[e] = rnd_normal() + (skewed && e < 8 ? 4 : 0);
		for (int k = 0; k < K; k++) { /* selection: K is small */
			int best = 0;
			for (int e = 1; e < E; e++)
				if (l[e] > l[best])
					best = e;
			pick[(size_t)t * K + k] = best;
			l[best] = -INFINITY;
		}
	}
	free(l);
}

/* --time's case i of TIME_CASES: T = 4096 or 32768 tokens, balanced or skewed; NULL when --case
 * leaves it out (it keeps its case number: the others draw the same routings) */
struct tcase *tc_time(struct kctx *x, int i, int *T, int *skewed)
{
	static const int tokens[] = {4096, 32768};
	*T = tokens[i / 2];
	*skewed = i % 2;
	char shape[64];
	snprintf(shape, sizeof shape, "T=%d %s", *T, *skewed ? "skewed" : "balanced");
	if (g_time_case && !strstr(shape, g_time_case)) {
		x->nskip++;
		return NULL;
	}
	return tc_new(x, "%s", shape);
}

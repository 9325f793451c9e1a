/* kvt_launch.c - the template's `// moec: launch` text (the manifest's "launch"), evaluated
 * for a case's sizes: the geometry a driver sets must be the one the trainer launches with. */
#include "kvt.h"
/* ---- the launch text: grid=(...) block=(...) [smem=(...)], evaluated --------------------- */
/* Integer arithmetic as C evaluates it, except that inside ceil(...) '/' is exact division
 * (the texts write ceil(rows/64) for the rounded-up quotient and (a + b - 1) / b for the same
 * in C). Names: the case's runtime sizes, the instance's integer constants, and the tile
 * defaults of moe_gemm.cuh (TILE_M, TILE_N, TILE_K, STAGES, PERSIST) where the manifest has none. */
struct ev {
	const char *p;
	const struct kinst *k;
	const struct tcase *c;
	int real, noeval;
	char err[200];
};

static double ev_ternary(struct ev *e);
static int ev_lookup(struct ev *e, const char *name, double *v);

static void ev_ws(struct ev *e)
{
	while (*e->p == ' ' || *e->p == '\t')
		e->p++;
}

static int ev_eat(struct ev *e, const char *tok)
{
	ev_ws(e);
	size_t n = strlen(tok);
	if (strncmp(e->p, tok, n))
		return 0;
	/* "<" must not eat "<=", "=" is not an operator here */
	if (n == 1 && (tok[0] == '<' || tok[0] == '>' || tok[0] == '!') && e->p[1] == '=')
		return 0;
	e->p += n;
	return 1;
}

static void ev_fail(struct ev *e, const char *fmt, ...)
{
	if (e->err[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->err, sizeof e->err, fmt, ap);
	va_end(ap);
}

static double ev_primary(struct ev *e)
{
	ev_ws(e);
	if (*e->p >= '0' && *e->p <= '9') {
		double v = 0;
		while (*e->p >= '0' && *e->p <= '9')
			v = v * 10 + (*e->p++ - '0');
		return v;
	}
	if (*e->p == '(') {
		e->p++;
		double v = ev_ternary(e);
		if (!ev_eat(e, ")"))
			ev_fail(e, "expected ')' at \"%.20s\"", e->p);
		return v;
	}
	if (*e->p == '_' || (*e->p >= 'a' && *e->p <= 'z') || (*e->p >= 'A' && *e->p <= 'Z')) {
		char name[40];
		size_t n = 0;
		while ((*e->p == '_' || (*e->p >= 'a' && *e->p <= 'z') || (*e->p >= 'A' && *e->p <= 'Z') ||
			(*e->p >= '0' && *e->p <= '9')) &&
		       n + 1 < sizeof name)
			name[n++] = *e->p++;
		name[n] = 0;
		ev_ws(e);
		if (*e->p == '(') {
			e->p++;
			double a[2] = {0, 0};
			int na = 0;
			const int real = e->real;
			if (!strcmp(name, "ceil"))
				e->real = 1;
			do {
				double v = ev_ternary(e);
				if (na < 2)
					a[na] = v;
				na++;
			} while (ev_eat(e, ","));
			e->real = real;
			if (!ev_eat(e, ")"))
				ev_fail(e, "expected ')' after the arguments of %s", name);
			if (!strcmp(name, "ceil") && na == 1)
				return ceil(a[0]);
			if (!strcmp(name, "max") && na == 2)
				return a[0] > a[1] ? a[0] : a[1];
			if (!strcmp(name, "min") && na == 2)
				return a[0] < a[1] ? a[0] : a[1];
			ev_fail(e, "unknown function %s/%d", name, na);
			return NAN;
		}
		double v = 0;
		if (e->noeval)
			return 1;
		if (ev_lookup(e, name, &v))
			ev_fail(e, "unknown name %s", name);
		return v;
	}
	ev_fail(e, "unexpected \"%.20s\"", e->p);
	return NAN;
}

static double ev_unary(struct ev *e)
{
	if (ev_eat(e, "-"))
		return -ev_unary(e);
	if (ev_eat(e, "!"))
		return !ev_unary(e);
	if (ev_eat(e, "+"))
		return ev_unary(e);
	return ev_primary(e);
}

static double ev_mul(struct ev *e)
{
	double v = ev_unary(e);
	for (;;) {
		if (ev_eat(e, "*")) {
			v *= ev_unary(e);
		} else if (ev_eat(e, "/")) {
			double d = ev_unary(e);
			if (d == 0)
				v = e->noeval ? 0 : NAN;
			else
				v = e->real ? v / d : trunc(v / d);
		} else if (ev_eat(e, "%")) {
			double d = ev_unary(e);
			v = d == 0 ? (e->noeval ? 0 : NAN) : fmod(v, d);
		} else {
			return v;
		}
	}
}

static double ev_add(struct ev *e)
{
	double v = ev_mul(e);
	for (;;) {
		if (ev_eat(e, "+"))
			v += ev_mul(e);
		else if (ev_eat(e, "-"))
			v -= ev_mul(e);
		else
			return v;
	}
}

static double ev_rel(struct ev *e)
{
	double v = ev_add(e);
	for (;;) {
		if (ev_eat(e, "<="))
			v = v <= ev_add(e);
		else if (ev_eat(e, ">="))
			v = v >= ev_add(e);
		else if (ev_eat(e, "<"))
			v = v < ev_add(e);
		else if (ev_eat(e, ">"))
			v = v > ev_add(e);
		else
			return v;
	}
}

static double ev_eq(struct ev *e)
{
	double v = ev_rel(e);
	for (;;) {
		if (ev_eat(e, "=="))
			v = v == ev_rel(e);
		else if (ev_eat(e, "!="))
			v = v != ev_rel(e);
		else
			return v;
	}
}

static double ev_and(struct ev *e)
{
	double v = ev_eq(e);
	while (ev_eat(e, "&&")) {
		double w = ev_eq(e);
		v = v != 0 && w != 0;
	}
	return v;
}

static double ev_or(struct ev *e)
{
	double v = ev_and(e);
	while (ev_eat(e, "||")) {
		double w = ev_and(e);
		v = v != 0 || w != 0;
	}
	return v;
}

static double ev_ternary(struct ev *e)
{
	double c = ev_or(e);
	if (!ev_eat(e, "?"))
		return c;
	double a = ev_ternary(e);
	if (!ev_eat(e, ":"))
		ev_fail(e, "expected ':'");
	double b = ev_ternary(e);
	return c != 0 ? a : b;
}

/* grid/block/smem of the launch text; only_smem: grid and block are parsed, not evaluated
 * (the cubin is loaded before any case fixes the runtime sizes). */
int launch_eval(const struct kinst *k, const struct tcase *c, int only_smem, unsigned grid[3], unsigned block[3],
		       unsigned *smem, char *err, size_t errlen)
{
	struct ev e = {.p = k->launch, .k = k, .c = c};
	int have_grid = 0, have_block = 0;
	*smem = 0;
	for (int i = 0; i < 3; i++)
		grid[i] = block[i] = 1;
	for (;;) {
		ev_ws(&e);
		const char *key = e.p;
		size_t kn = 0;
		while ((key[kn] >= 'a' && key[kn] <= 'z'))
			kn++;
		if (!kn || key[kn] != '=' || key[kn + 1] != '(')
			break; /* "grid=(E) block=(1024), only when ..." stops at the comma */
		e.p = key + kn + 2;
		const int is_grid = kn == 4 && !strncmp(key, "grid", 4), is_block = kn == 5 && !strncmp(key, "block", 5),
			  is_smem = kn == 4 && !strncmp(key, "smem", 4);
		if (!is_grid && !is_block && !is_smem) {
			snprintf(err, errlen, "launch text \"%s\": unknown key %.*s", k->launch, (int)kn, key);
			return -1;
		}
		e.noeval = only_smem && !is_smem;
		double v[3] = {1, 1, 1};
		int nv = 0;
		do {
			double x = ev_ternary(&e);
			if (nv < 3)
				v[nv] = x;
			nv++;
		} while (ev_eat(&e, ","));
		if (!ev_eat(&e, ")"))
			ev_fail(&e, "expected ')' closing %.*s", (int)kn, key);
		if (nv > (is_smem ? 1 : 3))
			ev_fail(&e, "%.*s has %d values", (int)kn, key, nv);
		if (e.err[0]) {
			snprintf(err, errlen, "launch text \"%s\": %s", k->launch, e.err);
			return -1;
		}
		if (!e.noeval)
			for (int i = 0; i < nv && i < 3; i++)
				if (!(v[i] >= 0 && v[i] <= 2147483647.0) || v[i] != floor(v[i])) {
					snprintf(err, errlen, "launch text \"%s\": %.*s value %g is not a count", k->launch, (int)kn, key,
						 v[i]);
					return -1;
				}
		if (is_grid) {
			have_grid = 1;
			if (!e.noeval)
				for (int i = 0; i < 3; i++)
					grid[i] = (unsigned)v[i];
		} else if (is_block) {
			have_block = 1;
			if (!e.noeval)
				for (int i = 0; i < 3; i++)
					block[i] = (unsigned)v[i];
		} else {
			*smem = (unsigned)v[0];
		}
	}
	if (!have_grid || !have_block) {
		snprintf(err, errlen, "launch text \"%s\": needs grid=(...) and block=(...)", k->launch);
		return -1;
	}
	return 0;
}


static int ev_lookup(struct ev *e, const char *name, double *v)
{
	if (e->c)
		for (int i = 0; i < e->c->nv; i++)
			if (!strcmp(e->c->vn[i], name)) {
				*v = (double)e->c->vv[i];
				return 0;
			}
	long x;
	if (!kconst_int(e->k, name, &x)) {
		*v = (double)x;
		return 0;
	}
	if (kconst(e->k, name)) {
		ev_fail(e, "constant %s = %s is not an integer", name, kconst(e->k, name));
		return 0;
	}
	/* moe_gemm.cuh's defaults when the emitter does not set the tiles */
	long bf = 0;
	kconst_int(e->k, "ACT_BF16", &bf);
	if (!strcmp(name, "TILE_M"))
		*v = bf ? 128 : 64;
	else if (!strcmp(name, "TILE_N"))
		*v = bf ? 256 : 64;
	else if (!strcmp(name, "TILE_K"))
		*v = bf ? 64 : 16;
	else if (!strcmp(name, "STAGES"))
		*v = 3;
	else if (!strcmp(name, "PERSIST"))
		*v = 0;
	else
		return -1;
	return 0;
}

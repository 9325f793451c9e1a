/* kernel_vs_twin.c - every CUDA kernel of a moec build against its CPU twin, by NMSE.
 *
 *   kernel_vs_twin [-v] [--only SUBSTR] [--seed N] [--max-rows N] BUILD_DIR   GPU: cubins against twins
 *   kernel_vs_twin --self-check [-v] [--only SUBSTR] [--max-rows N] BUILD_DIR   no GPU: twin against twin
 *   kernel_vs_twin --probe                                          print moec's --arch for GPU 0
 *
 * BUILD_DIR is a `moec build` output directory. For every kernel instance in
 * BUILD_DIR/manifest.json the program finds the driver of its template (below, one per
 * template in kernels/), generates seeded random inputs from the instance's constants for
 * several runtime shapes, runs the CPU twin `<name>_cpu` (found with dlsym: the twin objects
 * are linked into this program, see run.sh), runs the cubin on the GPU with the launch
 * geometry of the template's `// moec: launch` line, and compares every output. One line per
 * kernel and shape: name, shape, the NMSE (or "exact") of every output, PASS or FAIL.
 * Exit 0 when everything passes, 1 on any failure, 2 on a usage or manifest error, 77 (with
 * "SKIP: ...") when there is no GPU (moert_cuda_open fails) - ctest's SKIP_RETURN_CODE.
 *
 * Comparisons. Float outputs: NMSE = sum (gpu - twin)^2 / max(sum twin^2, n floor^2) against
 * a tolerance per op and dtype (the TOL_* classes below say why each value); floor is 0
 * except for outputs that are exactly zero in exact arithmetic for some inputs (attention dq
 * and dk of one-token documents), where the quotient would compare two roundoffs. Elements
 * with identical bits (also the NaN sentinel that outputs are pre-filled with, where neither
 * side writes) count as equal; any other non-finite difference fails. Integer outputs and the
 * ops their templates document as bitwise (copies, casts, embedding_bwd) must match exactly.
 * bf16 outputs rounded once from agreeing fp32 math may also differ by a few one-ulp flips
 * (at most max(2, n/1000) elements, nothing else): one flip of a large element of a small
 * output is NMSE ~1e-6 on its own, so NMSE alone would make such cases flaky.
 * Besides the twin comparison, every case checks on the GPU side: that inputs are unchanged,
 * that scratch which must come back zero does (router_fwd's ws, the tickets of rmsnorm_bwd
 * and grad_sumsq), and that a second launch on the same scratch with the inputs reset gives
 * bitwise the same outputs (every template documents itself as deterministic).
 *
 * Driver checks that need no GPU: each driver's argument list is compared, name by name and
 * type by type, with the kernel's parameter list in BUILD_DIR/gen/launch.h (generated from
 * the template by lint), and its launch geometry with the value of the manifest's launch
 * text, evaluated for the case's sizes (grid/block/smem; the smem value is also what the
 * cubin is loaded with). --self-check runs everything with the twin on both sides ("GPU"
 * memory = separate host allocations of the exact sizes, the launch = a second twin call),
 * so allocation sizes, argument order, comparisons and the printing run under ASan with no
 * GPU (ctest gpu/self_check_*); then it corrupts one element of every compared output, which
 * every case must catch, and moves one element of every bf16 output to its neighbouring
 * value, which must pass.
 *
 * --max-rows N, for a real model's constants (bench/specs/qwen3_30b_a3b_4layers.yaml: E = 128
 * experts of 2I x H = 1536 x 2048, 32 heads of 128, vocab 151936): no case of more than N rows
 * or tokens. Such a case is not run: it prints a "not run" line, the last line counts them, and
 * it keeps its case number, so the cases that run draw the inputs they draw without the option
 * (but for the GEMMs' weights, below).
 * Cases whose sizes are element counts no constant scales (add, the casts, grad_sumsq, scale,
 * adamw) are not capped, and the grouped GEMMs' tile-edge case keeps the tile-edge sizes for
 * the first experts that fit (whole rounds of 8; the rest get no rows). Besides, the GEMMs'
 * expert weights (and the weight gradients they accumulate into) are a cheap stand-in, uniform
 * values of the same mean and spread instead of normals: at those constants drawing them was
 * most of the time, 15-20 s per case on one core whatever its rows. And freed memory stays in
 * the heap for the next case's buffers instead of being mapped and zeroed afresh.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACT_BF16 0
#include "moec_host.h" /* kernels/cpu: bf16, float_to_bf16, bf16_to_float - the twins' own */
#undef ACT_BF16
#include "device_cuda.h"

/* The CUDA backend may be missing from libmoert (runtime/device_cuda.c not there yet, or a
 * libmoert built without it): weak references resolve to NULL then, and GPU mode reports
 * SKIP. run.sh forces the archive member in with -u when libmoert has it. */
#pragma weak moert_cuda_open
#pragma weak moert_cuda_close
#pragma weak moert_cuda_describe
#pragma weak moert_cuda_cc
#pragma weak moert_cuda_alloc
#pragma weak moert_cuda_free
#pragma weak moert_cuda_h2d
#pragma weak moert_cuda_d2h
#pragma weak moert_cuda_sync
#pragma weak moert_cuda_kernel
#pragma weak moert_cuda_launch

/* ---- tolerances (NMSE), by class; each output of each driver names its class ----------- */
/* fp32 outputs of the same operations in the same order, up to the last bit of a library
 * function (expf/logf/sqrtf/pow on the GPU vs glibc: 1-2 ulp, NMSE ~1e-14): add, scale,
 * adamw, rope, ce_chunk_bwd, ce_finish's lse, combine_bwd's dy_perm, casts' neighbours. */
#define TOL_F32_EW 1e-12
/* fp32 outputs of reductions and GEMMs in another order (warp trees vs sequential, tiles vs
 * OpenBLAS), fast intrinsics (__expf in SwiGLU, rsqrtf, ex2.approx in attention): relative
 * errors ~1e-7..1e-6 per element give NMSE ~1e-14..1e-12; 1e-10 leaves 100x headroom and
 * still catches any real bug (a wrong element, row or tile is NMSE >= 1e-6). */
#define TOL_F32_RED 1e-10
/* bf16 outputs rounded once from fp32 math that agrees as above: the two sides differ only
 * where the fp32 values straddle a rounding boundary, a one-ulp (2^-8 relative) flip with
 * probability ~(fp32 difference)/(bf16 ulp) ~1e-4, NMSE ~1e-9. 1e-6 is under the NMSE of a
 * systematic rounding error (truncation, double rounding: ~1e-6..1e-5) and of any real bug. */
#define TOL_BF16 1e-6 /* besides: rare one-ulp flips alone pass (see compare_all) */
/* bf16 attention (out, dq, dk, dv): the GPU rounds P (and dS) to bf16 for the tensor-core
 * products, the twin keeps them fp32 (attention_bwd.cu). The emulator run of the real
 * templates (tests/kernels/attention_emu) measures NMSE 3e-6 (out) and 1e-5 (grads) for
 * every configuration; 1e-4 is 10x that. */
#define TOL_BF16_ATTN 1e-4
#define TOL_EXACT 0.0

/* ---- small utilities ------------------------------------------------------------------- */
static int g_self, g_verbose;
static int g_corruptions; /* self-check: cases whose corrupted outputs the comparisons caught */
static uint64_t g_seed = 20240611;
static long g_max_rows; /* --max-rows (0: none) */
static int g_nskip;     /* cases not run: over --max-rows */
static int g_threads = 1;
static struct moert_cuda *g_dev;
static int g_dev_broken; /* a device error after a launch: the context is unusable */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "kernel_vs_twin: out of memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

static void *xcalloc(size_t n, size_t s)
{
	void *p = calloc(n ? n : 1, s ? s : 1);
	if (!p) {
		fprintf(stderr, "kernel_vs_twin: out of memory (%zu x %zu bytes)\n", n, s);
		exit(2);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

/* appends to a fixed buffer, truncating */
static void sadd(char *buf, size_t cap, const char *fmt, ...)
{
	size_t n = strlen(buf);
	if (n + 1 >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
}

static char *read_text(const char *path, size_t *size, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 1 << 16, n = 0;
	char *b = xmalloc(cap);
	for (;;) {
		if (n + 1 >= cap) {
			cap *= 2;
			char *nb = realloc(b, cap);
			if (!nb) {
				free(b);
				fclose(f);
				snprintf(err, errlen, "%s: out of memory", path);
				return NULL;
			}
			b = nb;
		}
		size_t r = fread(b + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(b);
		snprintf(err, errlen, "%s: read error", path);
		return NULL;
	}
	b[n] = 0;
	if (size)
		*size = n;
	return b;
}

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }
static long ceil_div(long a, long b) { return (a + b - 1) / b; }

/* ---- random numbers: splitmix64, reseeded per case from (seed, kernel name, case) ------- */
/* The state is a counter (+GOLDEN per draw) and every draw a function of it, so the draw at
 * any position of a case's stream can be computed directly: tb_normal fills big buffers on
 * several threads with the very values one thread would draw. */
#define GOLDEN 0x9e3779b97f4a7c15ull
static uint64_t g_rng;

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd_next(void) { return mix64(g_rng += GOLDEN); }

static double unif_of(uint64_t z) { return (double)(z >> 11) * (1.0 / 9007199254740992.0); }

static double rnd_unif(void) { return unif_of(rnd_next()); }

static int rnd_int(int n) { return n > 0 ? (int)(rnd_unif() * n) : 0; }

/* a standard normal from the two draws after state *s (Box-Muller) */
static double normal_at(uint64_t *s)
{
	double u = unif_of(mix64(*s += GOLDEN)), v = unif_of(mix64(*s += GOLDEN));
	if (u < 1e-300)
		u = 1e-300;
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static double rnd_normal(void) { return normal_at(&g_rng); }

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static uint16_t f2bf(float f) { return float_to_bf16(f).bits; }

static float bf2f(uint16_t b)
{
	bf16 h = {b};
	return bf16_to_float(h);
}

/* ---- a strict JSON reader (RFC 8259), enough for manifest.json -------------------------- */
enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	int t;
	int b;
	double d;
	char *s;
	int n;
	struct jv *v; /* J_ARR / J_OBJ: n values */
	char **k;     /* J_OBJ: n keys */
};

struct jparse {
	const char *s, *p;
	char err[200];
	int depth;
};

static void jerr(struct jparse *j, const char *msg)
{
	if (j->err[0])
		return;
	int line = 1, col = 1;
	for (const char *q = j->s; q < j->p; q++) {
		if (*q == '\n')
			line++, col = 1;
		else
			col++;
	}
	snprintf(j->err, sizeof j->err, "%d:%d: %s", line, col, msg);
}

static void jws(struct jparse *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static void jfree(struct jv *v)
{
	if (v->t == J_STR)
		free(v->s);
	if (v->t == J_ARR || v->t == J_OBJ) {
		for (int i = 0; i < v->n; i++) {
			jfree(&v->v[i]);
			if (v->t == J_OBJ)
				free(v->k[i]);
		}
		free(v->v);
		free(v->k);
	}
	memset(v, 0, sizeof *v);
}

static int jhex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static int jstring(struct jparse *j, char **out)
{
	size_t cap = 32, n = 0;
	char *b = xmalloc(cap);
	j->p++; /* the opening quote */
	for (;;) {
		unsigned char ch = (unsigned char)*j->p;
		char tmp[4];
		int tn = 0;
		if (ch == '"') {
			j->p++;
			break;
		}
		if (ch == 0 || ch < 0x20) {
			jerr(j, ch ? "control character in a string" : "unterminated string");
			free(b);
			return -1;
		}
		if (ch == '\\') {
			j->p++;
			switch (*j->p) {
			case '"': tmp[tn++] = '"'; break;
			case '\\': tmp[tn++] = '\\'; break;
			case '/': tmp[tn++] = '/'; break;
			case 'b': tmp[tn++] = '\b'; break;
			case 'f': tmp[tn++] = '\f'; break;
			case 'n': tmp[tn++] = '\n'; break;
			case 'r': tmp[tn++] = '\r'; break;
			case 't': tmp[tn++] = '\t'; break;
			case 'u': {
				unsigned cp, lo;
				if (jhex4(j->p + 1, &cp)) {
					jerr(j, "bad \\u escape");
					free(b);
					return -1;
				}
				j->p += 4;
				if (cp >= 0xd800 && cp < 0xdc00) {
					if (j->p[1] != '\\' || j->p[2] != 'u' || jhex4(j->p + 3, &lo) || lo < 0xdc00 || lo > 0xdfff) {
						jerr(j, "unpaired surrogate in a \\u escape");
						free(b);
						return -1;
					}
					j->p += 6;
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				} else if (cp >= 0xdc00 && cp < 0xe000) {
					jerr(j, "unpaired surrogate in a \\u escape");
					free(b);
					return -1;
				}
				if (cp == 0) {
					jerr(j, "\\u0000 in a string");
					free(b);
					return -1;
				}
				if (cp < 0x80) {
					tmp[tn++] = (char)cp;
				} else if (cp < 0x800) {
					tmp[tn++] = (char)(0xc0 | (cp >> 6));
					tmp[tn++] = (char)(0x80 | (cp & 0x3f));
				} else if (cp < 0x10000) {
					tmp[tn++] = (char)(0xe0 | (cp >> 12));
					tmp[tn++] = (char)(0x80 | ((cp >> 6) & 0x3f));
					tmp[tn++] = (char)(0x80 | (cp & 0x3f));
				} else {
					tmp[tn++] = (char)(0xf0 | (cp >> 18));
					tmp[tn++] = (char)(0x80 | ((cp >> 12) & 0x3f));
					tmp[tn++] = (char)(0x80 | ((cp >> 6) & 0x3f));
					tmp[tn++] = (char)(0x80 | (cp & 0x3f));
				}
				break;
			}
			default:
				jerr(j, "bad escape in a string");
				free(b);
				return -1;
			}
			j->p++;
		} else {
			tmp[tn++] = (char)ch;
			j->p++;
		}
		if (n + (size_t)tn + 1 > cap) {
			cap = 2 * cap + (size_t)tn;
			char *nb = realloc(b, cap);
			if (!nb) {
				free(b);
				jerr(j, "out of memory");
				return -1;
			}
			b = nb;
		}
		memcpy(b + n, tmp, (size_t)tn);
		n += (size_t)tn;
	}
	b[n] = 0;
	*out = b;
	return 0;
}

static int jnumber(struct jparse *j, double *out)
{
	const char *q = j->p;
	if (*q == '-')
		q++;
	if (*q == '0')
		q++;
	else if (*q >= '1' && *q <= '9')
		while (*q >= '0' && *q <= '9')
			q++;
	else
		goto bad;
	if (*q == '.') {
		q++;
		if (!(*q >= '0' && *q <= '9'))
			goto bad;
		while (*q >= '0' && *q <= '9')
			q++;
	}
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (!(*q >= '0' && *q <= '9'))
			goto bad;
		while (*q >= '0' && *q <= '9')
			q++;
	}
	char tmp[64];
	if ((size_t)(q - j->p) >= sizeof tmp)
		goto bad;
	memcpy(tmp, j->p, (size_t)(q - j->p));
	tmp[q - j->p] = 0;
	*out = strtod(tmp, NULL);
	j->p = q;
	return 0;
bad:
	jerr(j, "bad number");
	return -1;
}

static int jvalue(struct jparse *j, struct jv *v)
{
	memset(v, 0, sizeof *v);
	jws(j);
	if (++j->depth > 64) {
		jerr(j, "nesting too deep");
		return -1;
	}
	int rc = 0;
	char c = *j->p;
	if (c == '{' || c == '[') {
		const int obj = c == '{';
		v->t = obj ? J_OBJ : J_ARR;
		int cap = 0;
		j->p++;
		jws(j);
		if (*j->p == (obj ? '}' : ']')) {
			j->p++;
			goto done;
		}
		for (;;) {
			if (v->n == cap) {
				cap = cap ? 2 * cap : 8;
				struct jv *nv = realloc(v->v, (size_t)cap * sizeof *nv);
				if (!nv) {
					jerr(j, "out of memory");
					rc = -1;
					goto done;
				}
				v->v = nv;
				if (obj) {
					char **nk = realloc(v->k, (size_t)cap * sizeof *nk);
					if (!nk) {
						jerr(j, "out of memory");
						rc = -1;
						goto done;
					}
					v->k = nk;
				}
			}
			if (obj) {
				jws(j);
				if (*j->p != '"') {
					jerr(j, "expected a key string");
					rc = -1;
					goto done;
				}
				char *key;
				if (jstring(j, &key)) {
					rc = -1;
					goto done;
				}
				for (int i = 0; i < v->n; i++)
					if (!strcmp(v->k[i], key)) {
						jerr(j, "duplicate key");
						free(key);
						rc = -1;
						goto done;
					}
				jws(j);
				if (*j->p != ':') {
					free(key);
					jerr(j, "expected ':'");
					rc = -1;
					goto done;
				}
				j->p++;
				v->k[v->n] = key;
			}
			if (jvalue(j, &v->v[v->n])) {
				if (obj)
					free(v->k[v->n]);
				rc = -1;
				goto done;
			}
			v->n++;
			jws(j);
			if (*j->p == ',') {
				j->p++;
				continue;
			}
			if (*j->p == (obj ? '}' : ']')) {
				j->p++;
				break;
			}
			jerr(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
			rc = -1;
			goto done;
		}
	} else if (c == '"') {
		v->t = J_STR;
		rc = jstring(j, &v->s);
		if (rc)
			v->t = J_NULL;
	} else if (!strncmp(j->p, "true", 4) || !strncmp(j->p, "false", 5)) {
		v->t = J_BOOL;
		v->b = c == 't';
		j->p += v->b ? 4 : 5;
	} else if (!strncmp(j->p, "null", 4)) {
		v->t = J_NULL;
		j->p += 4;
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		v->t = J_NUM;
		rc = jnumber(j, &v->d);
	} else {
		jerr(j, c ? "unexpected character" : "unexpected end of input");
		rc = -1;
	}
done:
	j->depth--;
	if (rc)
		jfree(v);
	return rc;
}

static const struct jv *jget(const struct jv *o, const char *key)
{
	if (o->t != J_OBJ)
		return NULL;
	for (int i = 0; i < o->n; i++)
		if (!strcmp(o->k[i], key))
			return &o->v[i];
	return NULL;
}

/* ---- the manifest ------------------------------------------------------------------------ */
struct kinst {
	char *name, *tmpl, *launch, *cubin;
	int nc;
	char **ck, **cv; /* constants, as the manifest spells them ("128", "1e-06f") */
};

struct manifest {
	char *arch;
	int n;
	struct kinst *k;
};

static int ident_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

static void manifest_free(struct manifest *m)
{
	for (int i = 0; i < m->n; i++) {
		struct kinst *k = &m->k[i];
		free(k->name);
		free(k->tmpl);
		free(k->launch);
		free(k->cubin);
		for (int c = 0; c < k->nc; c++) {
			free(k->ck[c]);
			free(k->cv[c]);
		}
		free(k->ck);
		free(k->cv);
	}
	free(m->k);
	free(m->arch);
	memset(m, 0, sizeof *m);
}

static int manifest_load(const char *path, struct manifest *m, char *err, size_t errlen)
{
	memset(m, 0, sizeof *m);
	char *text = read_text(path, NULL, err, errlen);
	if (!text)
		return -1;
	struct jparse jp = {.s = text, .p = text};
	struct jv root;
	int rc = jvalue(&jp, &root);
	if (!rc) {
		jws(&jp);
		if (*jp.p) {
			jerr(&jp, "trailing characters after the JSON value");
			jfree(&root);
			rc = -1;
		}
	}
	if (rc) {
		snprintf(err, errlen, "%.300s:%s", path, jp.err);
		free(text);
		return -1;
	}
	free(text);
	const struct jv *arch = jget(&root, "arch"), *ks = jget(&root, "kernels");
	if (!arch || arch->t != J_STR || !ks || ks->t != J_ARR) {
		snprintf(err, errlen, "%.300s: needs a string \"arch\" and an array \"kernels\"", path);
		jfree(&root);
		return -1;
	}
	m->arch = xstrdup(arch->s);
	m->k = xcalloc((size_t)ks->n, sizeof *m->k);
	for (int i = 0; i < ks->n; i++) {
		const struct jv *o = &ks->v[i];
		const struct jv *name = jget(o, "name"), *tm = jget(o, "template"), *la = jget(o, "launch"),
				*cu = jget(o, "cubin"), *co = jget(o, "constants");
		if (!name || name->t != J_STR || !tm || tm->t != J_STR || !la || la->t != J_STR || !cu || cu->t != J_STR ||
		    !co || co->t != J_OBJ) {
			snprintf(err, errlen, "%.300s: kernels[%d] needs strings name, template, launch, cubin and an object constants",
				 path, i);
			goto bad;
		}
		if (!ident_ok(name->s) || !ident_ok(tm->s)) {
			snprintf(err, errlen, "%.300s: kernels[%d]: name/template is not an identifier", path, i);
			goto bad;
		}
		struct kinst *k = &m->k[m->n++];
		k->name = xstrdup(name->s);
		k->tmpl = xstrdup(tm->s);
		k->launch = xstrdup(la->s);
		k->cubin = xstrdup(cu->s);
		k->ck = xcalloc((size_t)co->n, sizeof *k->ck);
		k->cv = xcalloc((size_t)co->n, sizeof *k->cv);
		for (int c = 0; c < co->n; c++) {
			if (co->v[c].t != J_STR) {
				snprintf(err, errlen, "%.300s: kernels[%d].constants.%s is not a string", path, i, co->k[c]);
				goto bad;
			}
			k->ck[k->nc] = xstrdup(co->k[c]);
			k->cv[k->nc] = xstrdup(co->v[c].s);
			k->nc++;
		}
	}
	jfree(&root);
	return 0;
bad:
	jfree(&root);
	manifest_free(m);
	return -1;
}

static const char *kconst(const struct kinst *k, const char *key)
{
	for (int i = 0; i < k->nc; i++)
		if (!strcmp(k->ck[i], key))
			return k->cv[i];
	return NULL;
}

/* an integer constant ("128"); -1 when absent or not an integer */
static int kconst_int(const struct kinst *k, const char *key, long *out)
{
	const char *s = kconst(k, key);
	if (!s || !*s)
		return -1;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (*end || errno)
		return -1;
	*out = v;
	return 0;
}

/* ---- gen/launch.h: the kernels' parameter lists (what lint read from the templates) ------- */
#define MAXA 24

struct params {
	int n;
	char type[MAXA][48], name[MAXA][32];
};

/* whitespace collapsed to single spaces, none around '*' on the right ("const act_t *") */
static void norm_ws(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	int sp = 0;
	for (size_t i = 0; i < n && o + 2 < cap; i++) {
		char c = s[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			sp = o > 0;
			continue;
		}
		if (sp && o + 2 < cap)
			out[o++] = ' ';
		sp = 0;
		out[o++] = c;
	}
	out[o] = 0;
}

/* "const act_t *x" -> type "const act_t *", name "x" */
static int split_param(const char *s, size_t n, char *type, size_t tcap, char *name, size_t ncap)
{
	char buf[160];
	norm_ws(s, n, buf, sizeof buf);
	size_t len = strlen(buf), e = len;
	while (e > 0 && (buf[e - 1] == '_' || (buf[e - 1] >= '0' && buf[e - 1] <= '9') || (buf[e - 1] >= 'a' && buf[e - 1] <= 'z') ||
			 (buf[e - 1] >= 'A' && buf[e - 1] <= 'Z')))
		e--;
	if (e == len || e == 0 || len - e >= ncap)
		return -1;
	memcpy(name, buf + e, len - e);
	name[len - e] = 0;
	/* canonical pointer spelling: no blanks next to a '*', one blank before the first one
	 * ("float*", "float * " and "float *" all become "float *"; "float **" stays) */
	char t[160];
	size_t o = 0;
	for (size_t i = 0; i < e; i++) {
		if (buf[i] == ' ' && ((i + 1 < e && buf[i + 1] == '*') || (i > 0 && buf[i - 1] == '*') || i + 1 == e))
			continue;
		t[o++] = buf[i];
	}
	t[o] = 0;
	char *star = strchr(t, '*');
	if (star) {
		memmove(star + 1, star, strlen(star) + 1);
		*star = ' ';
	}
	if (strlen(t) >= tcap)
		return -1;
	snprintf(type, tcap, "%s", t);
	return 0;
}

/* params of a comma-separated list, skipping moec_* launch parameters */
static int parse_params(const char *s, size_t n, struct params *p)
{
	p->n = 0;
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != ',')
			j++;
		char type[48], name[32];
		if (split_param(s + i, j - i, type, sizeof type, name, sizeof name))
			return -1;
		if (strncmp(name, "moec_", 5)) {
			if (p->n == MAXA)
				return -1;
			snprintf(p->type[p->n], sizeof p->type[p->n], "%s", type);
			snprintf(p->name[p->n], sizeof p->name[p->n], "%s", name);
			p->n++;
		}
		i = j + 1;
	}
	return 0;
}

static int launch_h_params(const char *text, const char *kname, struct params *p, char *err, size_t errlen)
{
	char pat[200];
	snprintf(pat, sizeof pat, "CUresult launch_%s(", kname);
	const char *s = strstr(text, pat);
	if (!s) {
		snprintf(err, errlen, "gen/launch.h has no launch_%s(", kname);
		return -1;
	}
	s += strlen(pat);
	const char *e = strchr(s, ')');
	if (!e || parse_params(s, (size_t)(e - s), p)) {
		snprintf(err, errlen, "gen/launch.h: cannot read the parameters of launch_%s", kname);
		return -1;
	}
	return 0;
}

static void params_str(const struct params *p, char *out, size_t cap)
{
	out[0] = 0;
	for (int i = 0; i < p->n; i++)
		sadd(out, cap, "%s%s%s%s", i ? ", " : "", p->type[i], p->type[i][strlen(p->type[i]) - 1] == '*' ? "" : " ",
		     p->name[i]);
}

/* ---- the launch text: grid=(...) block=(...) [smem=(...)], evaluated --------------------- */
/* Integer arithmetic as C evaluates it, except that inside ceil(...) '/' is exact division
 * (the texts write ceil(rows/64) for the rounded-up quotient and (a + b - 1) / b for the same
 * in C). Names: the case's runtime sizes, the instance's integer constants, and the tile
 * defaults of moe_gemm.cuh (TILE_M, TILE_N, TILE_K, STAGES) where the manifest has none. */
struct tcase;
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
static int launch_eval(const struct kinst *k, const struct tcase *c, int only_smem, unsigned grid[3], unsigned block[3],
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

/* ---- the device: the GPU through device_cuda.h, or (--self-check) host memory ------------- */
static char g_err[512];

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

static void dev_free(moert_dptr p)
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

/* ---- test cases ---------------------------------------------------------------------------- */
enum { DT_F32, DT_BF16, DT_I32, DT_U32, DT_F64, DT_I64, DT_PTR };
static const size_t dt_size[] = {4, 2, 4, 4, 8, 8, 8};
enum { R_IN, R_OUT, R_INOUT, R_SCRATCH };
enum { C_UNSET, C_NONE, C_EXACT, C_NMSE };
enum { A_BUF, A_NULL, A_INT, A_LONG, A_FLOAT, A_DOUBLE };

#define MAXB 64
#define MAXV 4
#define MAXREF 16

struct tbuf {
	char name[24];
	int dt, role, cmp;
	size_t n, off, ncmp; /* elements; byte offset of the pointer passed; elements compared */
	double tol, floor;
	unsigned char *init; /* n elements: the content before the launch (OUT: the sentinel) */
	unsigned char *twin; /* off + n elements, twin side */
	unsigned char *got, *got2;
	moert_dptr dev;
	int nref, ref[MAXREF]; /* DT_PTR: an array of pointers to these buffers (-1: NULL) */
};

union av {
	void *p;
	uint64_t d;
	int i;
	long l;
	float f;
	double g;
};

struct targ {
	char name[32];
	int kind, buf;
	union av v;
};

struct tcase {
	char shape[128];
	int nb, na, nv;
	struct tbuf b[MAXB];
	struct targ a[MAXA];
	char vn[MAXV][16];
	long long vv[MAXV];
	unsigned grid[3], block[3], smem;
};

typedef void (*invoke_fn)(void *fn, void **a);

struct driver;
struct kctx {
	const struct kinst *k;
	const struct driver *d;
	void *twin;
	invoke_fn inv;
	moert_cuda_fn fn;
	unsigned smem; /* dynamic shared memory, from the launch text */
	int bf;        /* ACT_BF16 */
	int adt;       /* DT_BF16 or DT_F32: act_t */
	struct params par;
	int ncase, nfail;
	int nskip; /* cases not run (over --max-rows): they keep their case numbers */
};

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
	else
		return -1;
	return 0;
}

static struct tcase *tc_new(struct kctx *x, const char *fmt, ...)
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
static int over_max_rows(struct kctx *x, const char *what, long rows)
{
	if (!g_max_rows || rows <= g_max_rows)
		return 0;
	char shape[64];
	snprintf(shape, sizeof shape, "%s=%ld", what, rows);
	printf("%-46s %-30s not run: over --max-rows %ld\n", x->k->name, shape, g_max_rows);
	x->nskip++;
	return 1;
}

static void sentinel(struct tbuf *b)
{
	/* floats: all-ones bytes are NaN in f32, bf16 and f64; integers: 0xa5a5a5a5 */
	const int fl = b->dt == DT_F32 || b->dt == DT_BF16 || b->dt == DT_F64;
	memset(b->init, fl ? 0xff : 0xa5, b->n * dt_size[b->dt]);
}

static int tb_add(struct tcase *c, const char *name, int dt, size_t n, int role)
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

static void tb_nmse(struct tcase *c, int i, double tol)
{
	c->b[i].cmp = C_NMSE;
	c->b[i].tol = tol;
}

static void tb_exact(struct tcase *c, int i) { c->b[i].cmp = C_EXACT; }

/* an array of pointers to buffers refs[0..n-1] (-1: NULL), in device memory on the GPU side */
static int tb_ptrs(struct tcase *c, const char *name, const int *refs, int n)
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

static float *tb_f32(struct tcase *c, int i) { return (float *)(void *)c->b[i].init; }
static int *tb_i32(struct tcase *c, int i) { return (int *)(void *)c->b[i].init; }
static long *tb_i64(struct tcase *c, int i) { return (long *)(void *)c->b[i].init; }

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

static void tb_set(struct tcase *c, int i, size_t j, double v) { buf_set(&c->b[i], j, v); }

/* the value as the kernel sees it (bf16 rounded) */
static double tb_get(const struct tcase *c, int i, size_t j)
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

#define MAXTHREADS 16
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

/* buffer i filled from the case's stream, two draws per element (uniform: fill_range's stand-in) */
static void tb_fill(struct tcase *c, int i, double mean, double sd, int uniform)
{
	const uint64_t base = g_rng;
	fill_range(&c->b[i], 0, c->b[i].n, base, mean, sd, uniform);
	g_rng = base + 2 * GOLDEN * (uint64_t)c->b[i].n;
}

static void tb_normal(struct tcase *c, int i, double mean, double sd) { tb_fill(c, i, mean, sd, 0); }

/* The expert weights of a grouped GEMM, [E, ...], or their fp32 gradients (accumulated into):
 * normals; with --max-rows the cheap stand-in, from the same stream positions (the case's other
 * inputs keep their values). At E = 128 experts of 2I x H = 1536 x 2048, drawing w_gate_up's
 * 400M normals took most of a case's time whatever its rows (15-20 s on one core). */
static void tb_weights(struct tcase *c, int i, double mean, double sd) { tb_fill(c, i, mean, sd, g_max_rows > 0); }

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

static void ta_buf(struct tcase *c, const char *name, int buf) { ta_add(c, name, buf < 0 ? A_NULL : A_BUF, buf, (union av){0}); }
static void ta_int(struct tcase *c, const char *name, int v) { ta_add(c, name, A_INT, -1, (union av){.i = v}); }
static void ta_long(struct tcase *c, const char *name, long v) { ta_add(c, name, A_LONG, -1, (union av){.l = v}); }
static void ta_float(struct tcase *c, const char *name, float v) { ta_add(c, name, A_FLOAT, -1, (union av){.f = v}); }
static void ta_double(struct tcase *c, const char *name, double v) { ta_add(c, name, A_DOUBLE, -1, (union av){.g = v}); }

/* a runtime size the launch text refers to */
static void tv(struct tcase *c, const char *name, long long v)
{
	if (c->nv == MAXV) {
		fprintf(stderr, "kernel_vs_twin: too many launch variables\n");
		exit(2);
	}
	snprintf(c->vn[c->nv], sizeof c->vn[c->nv], "%s", name);
	c->vv[c->nv++] = v;
}

/* the driver's launch geometry (mirroring the template's launch line) */
static void tg(struct tcase *c, long gx, long gy, long bx)
{
	c->grid[0] = (unsigned)gx;
	c->grid[1] = (unsigned)gy;
	c->grid[2] = 1;
	c->block[0] = (unsigned)bx;
	c->block[1] = c->block[2] = 1;
	c->smem = 0;
}

static void tc_free(struct tcase *c)
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
	sadd(why, cap, "device: %s; ", g_err);
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
				sadd(why, wcap, "the kernel changed its input %s; ", b->name);
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
					sadd(why, wcap, "%s: %zu/%zu differ, [%zu] gpu %.9g, %s %.9g; ", b->name, bad, n, first,
					     elem_d(b->got, b->dt, first), b->role == R_SCRATCH ? "must be" : "twin", elem_d(ref, b->dt, first));
				else
					sadd(why, wcap, "%s: %zu/%zu differ, [%zu] gpu %.0f, %s %.0f; ", b->name, bad, n, first,
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
				sadd(why, wcap, "%s: %zu non-finite differences, [%zu] gpu %.9g twin %.9g; ", b->name, nonfinite,
				     first, elem_d(b->got, b->dt, first), elem_d(ref, b->dt, first));
				fail = 1;
			} else if (!(e <= b->tol) && !flips_ok) {
				sadd(why, wcap, "%s: NMSE %.3g over %.0e (%zu one-ulp flips%s); ", b->name, e, b->tol, flips,
				     hard ? " and larger differences" : "");
				fail = 1;
			} else if (!(e <= b->tol)) {
				a->flips += flips; /* passed on the flip rule */
			}
			if (b->dt == DT_BF16 && flips)
				sadd(info, icap, "%s: %zu one-ulp flips; ", b->name, flips);
			if (!(e <= a->worst))
				a->worst = e;
			if (!br)
				sadd(info, icap, "%s rms %.3g; ", b->name, rms);
		}
	}
	for (int k = 0; k < nag; k++) {
		const struct agg *a = &ag[k];
		if (a->exact)
			a->bad ? sadd(det, dcap, "%s=%zu/%zu-differ ", a->base, a->bad, a->n) : sadd(det, dcap, "%s=exact ", a->base);
		else if (a->nonfinite)
			sadd(det, dcap, "%s=nonfinite ", a->base);
		else if (a->worst == 0)
			sadd(det, dcap, "%s=0 ", a->base);
		else if (a->flips)
			sadd(det, dcap, "%s=%.1e(%zu-flips) ", a->base, a->worst, a->flips);
		else
			sadd(det, dcap, "%s=%.1e ", a->base, a->worst);
		if (g_verbose && a->untouched)
			sadd(det, dcap, "(untouched) ");
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
static int run_case(struct kctx *x, struct tcase *c)
{
	char det[1024] = "", why[2048] = "", info[1024] = "";
	int fail = 0;

	/* the driver against the kernel's parameters (gen/launch.h) */
	if (c->na != x->par.n)
		sadd(why, sizeof why, "driver passes %d arguments, the kernel has %d; ", c->na, x->par.n);
	for (int i = 0; i < c->na && i < x->par.n; i++) {
		const struct targ *a = &c->a[i];
		if (strcmp(a->name, x->par.name[i]))
			sadd(why, sizeof why, "argument %d is %s, the kernel's is %s; ", i, a->name, x->par.name[i]);
		else if (!param_kind_ok(x->par.type[i], a->kind))
			sadd(why, sizeof why, "argument %s: wrong kind for %s; ", a->name, x->par.type[i]);
		else if (a->kind == A_BUF) {
			const struct tbuf *b = &c->b[a->buf];
			size_t es = param_elem(x->par.type[i]);
			if (!es && strstr(x->par.type[i], "act_t"))
				es = x->bf ? 2 : 4;
			if (es && es != dt_size[b->dt])
				sadd(why, sizeof why, "argument %s (%s) gets %zu-byte elements; ", a->name, x->par.type[i],
				     dt_size[b->dt]);
			if (strstr(x->par.type[i], "act_t") && b->dt != x->adt)
				sadd(why, sizeof why, "argument %s is act_t, the buffer is not; ", a->name);
		}
	}
	for (int i = 0; i < c->nb; i++)
		if (c->b[i].cmp == C_UNSET)
			sadd(why, sizeof why, "driver: output %s has no comparison; ", c->b[i].name);
	/* the geometry against the launch text */
	unsigned g[3], bl[3], sm;
	char err[400];
	if (launch_eval(x->k, c, 0, g, bl, &sm, err, sizeof err))
		sadd(why, sizeof why, "%s; ", err);
	else if (memcmp(g, c->grid, sizeof g) || memcmp(bl, c->block, sizeof bl) || sm != c->smem || sm != x->smem)
		sadd(why, sizeof why,
		     "launch text gives grid=(%u,%u,%u) block=(%u,%u,%u) smem=%u (at load: %u), the driver "
		     "grid=(%u,%u,%u) block=(%u,%u,%u) smem=%u; ",
		     g[0], g[1], g[2], bl[0], bl[1], bl[2], sm, x->smem, c->grid[0], c->grid[1], c->grid[2], c->block[0],
		     c->block[1], c->block[2], c->smem);
	if (!c->grid[0] || !c->grid[1] || !c->grid[2])
		sadd(why, sizeof why, "driver: an empty grid (the host skips such a launch); ");
	if (why[0]) {
		fail = 1;
		goto out;
	}
	if (g_dev_broken) {
		sadd(why, sizeof why, "not run: an earlier kernel left the device unusable");
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
			sadd(why, sizeof why, "the twin changed its input %s; ", b->name);
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
			sadd(why, sizeof why, "%s: a second launch gives other bits; ", b->name);
			fail = 1;
		}
	}
	/* self-check: the comparisons must forgive a one-ulp bf16 flip, and must be able to fail */
	if (g_self && !fail && flip_outputs(c)) {
		char d2[1024] = "", w2[2048] = "", i2[1024] = "";
		if (compare_all(c, d2, sizeof d2, w2, sizeof w2, i2, sizeof i2))
			sadd(why, sizeof why, "a one-ulp flip of a bf16 output failed the comparison: %s", w2);
	}
	if (g_self && !fail && corrupt_outputs(c)) {
		char d2[1024] = "", w2[2048] = "", i2[1024] = "";
		if (compare_all(c, d2, sizeof d2, w2, sizeof w2, i2, sizeof i2))
			g_corruptions++;
		else
			sadd(why, sizeof why, "an output corrupted on the device side went unnoticed: the comparisons cannot fail");
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

/* ---- the twins' signatures: one invoker per template (and act_t: float, bf16) ------------ */
/* a[i] points at argument i's value, as cuLaunchKernel's kernelParams do. The casts use the
 * twins' exact parameter types (bf16 is moec_host.h's), so calling through them is the
 * call the trainer makes. */
#define AP(i) (*(void **)a[i])
#define AI(i) (*(int *)a[i])
#define AL(i) (*(long *)a[i])
#define AF(i) (*(float *)a[i])
#define AD(i) (*(double *)a[i])
#define FN(sig) ((void(*) sig)f)

#define INV_EMBEDDING_FWD(T) \
	static void inv_embedding_fwd_##T(void *f, void **a) { FN((T *, const T *, const int *, int, int, int))(AP(0), AP(1), AP(2), AI(3), AI(4), AI(5)); }
#define INV_RMSNORM_FWD(T) \
	static void inv_rmsnorm_fwd_##T(void *f, void **a) { FN((T *, float *, const T *, const float *, int))(AP(0), AP(1), AP(2), AP(3), AI(4)); }
#define INV_ROPE(T) \
	static void inv_rope_##T(void *f, void **a) { FN((T *, const T *, const int *, int, int))(AP(0), AP(1), AP(2), AI(3), AI(4)); }
#define INV_ATTENTION_FWD(T)                                                                                            \
	static void inv_attention_fwd_##T(void *f, void **a)                                                              \
	{                                                                                                                 \
		FN((const T *, const T *, const T *, const int *, T *, float *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AI(6)); \
	}
#define INV_ADD(T) \
	static void inv_add_##T(void *f, void **a) { FN((T *, const T *, const T *, long))(AP(0), AP(1), AP(2), AL(3)); }
#define INV_MOE_PERMUTE(T) \
	static void inv_moe_permute_##T(void *f, void **a) { FN((const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AI(3)); }
#define INV_MOE_GATE_UP_FWD(T)                                                                                          \
	static void inv_moe_gate_up_fwd_##T(void *f, void **a)                                                            \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, T *, T *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AI(5));             \
	}
#define INV_MOE_DOWN_FWD(T) \
	static void inv_moe_down_fwd_##T(void *f, void **a) { FN((const T *, const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AP(3), AI(4)); }
#define INV_MOE_COMBINE(T)                                                                                              \
	static void inv_moe_combine_##T(void *f, void **a)                                                                \
	{                                                                                                                 \
		FN((const T *, const int *, const float *, T *, int))(AP(0), AP(1), AP(2), AP(3), AI(4));                     \
	}
#define INV_RMSNORM_BWD(T)                                                                                              \
	static void inv_rmsnorm_bwd_##T(void *f, void **a)                                                                \
	{                                                                                                                 \
		FN((T *, float *, float *, unsigned int *, const T *, const T *, const float *, const float *, int, int))(       \
			AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AI(8), AI(9));                                    \
	}
#define INV_MOE_COMBINE_BWD(T)                                                                                          \
	static void inv_moe_combine_bwd_##T(void *f, void **a)                                                            \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, const float *, T *, float *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AI(6)); \
	}
#define INV_MOE_DOWN_BWD_DATA(T)                                                                                        \
	static void inv_moe_down_bwd_data_##T(void *f, void **a)                                                          \
	{                                                                                                                 \
		FN((const T *, const T *, const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AP(3), AP(4), AI(5));       \
	}
#define INV_MOE_GATE_UP_BWD_DATA(T)                                                                                     \
	static void inv_moe_gate_up_bwd_data_##T(void *f, void **a)                                                       \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AP(3), AI(4));                         \
	}
#define INV_MOE_BWD_WEIGHT(T)                                                                                           \
	static void inv_moe_bwd_weight_##T(void *f, void **a)                                                             \
	{                                                                                                                 \
		FN((const T *, const T *, const int *, float *, int))(AP(0), AP(1), AP(2), AP(3), AI(4));                     \
	}
#define INV_MOE_PERMUTE_BWD(T) \
	static void inv_moe_permute_bwd_##T(void *f, void **a) { FN((const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AI(3)); }
#define INV_ATTENTION_BWD_PRE(T) \
	static void inv_attention_bwd_pre_##T(void *f, void **a) { FN((const T *, const T *, float *, int))(AP(0), AP(1), AP(2), AI(3)); }
#define INV_ATTENTION_BWD(T)                                                                                            \
	static void inv_attention_bwd_##T(void *f, void **a)                                                              \
	{                                                                                                                 \
		FN((const T *, const T *, const T *, const int *, const T *, const float *, const float *, T *, T *, T *, int))( \
			AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AP(8), AP(9), AI(10));                            \
	}
#define INV_EMBEDDING_BWD(T) \
	static void inv_embedding_bwd_##T(void *f, void **a) { FN((float *, const T *, const int *, int, int, int))(AP(0), AP(1), AP(2), AI(3), AI(4), AI(5)); }

#define INV_EP_REGROUP(T) \
	static void inv_ep_regroup_##T(void *f, void **a) { FN((const T *, const int *, T *, int))(AP(0), AP(1), AP(2), AI(3)); }

#define INV_BOTH(M) M(float) M(bf16)
INV_BOTH(INV_EMBEDDING_FWD)
INV_BOTH(INV_RMSNORM_FWD)
INV_BOTH(INV_ROPE)
INV_BOTH(INV_ATTENTION_FWD)
INV_BOTH(INV_ADD)
INV_BOTH(INV_MOE_PERMUTE)
INV_BOTH(INV_EP_REGROUP)
INV_BOTH(INV_MOE_GATE_UP_FWD)
INV_BOTH(INV_MOE_DOWN_FWD)
INV_BOTH(INV_MOE_COMBINE)
INV_BOTH(INV_RMSNORM_BWD)
INV_BOTH(INV_MOE_COMBINE_BWD)
INV_BOTH(INV_MOE_DOWN_BWD_DATA)
INV_BOTH(INV_MOE_GATE_UP_BWD_DATA)
INV_BOTH(INV_MOE_BWD_WEIGHT)
INV_BOTH(INV_MOE_PERMUTE_BWD)
INV_BOTH(INV_ATTENTION_BWD_PRE)
INV_BOTH(INV_ATTENTION_BWD)
INV_BOTH(INV_EMBEDDING_BWD)

static void inv_router_fwd(void *f, void **a)
{
	FN((const float *, const float *, int *, float *, float *, int *, int *, float *, void *, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AP(7), AP(8), AI(9));
}
static void inv_moe_count(void *f, void **a) { FN((const int *, int *, int))(AP(0), AP(1), AI(2)); }
static void inv_moe_scan(void *f, void **a) { FN((int *, int *, int *, int *, int))(AP(0), AP(1), AP(2), AP(3), AI(4)); }
static void inv_moe_route(void *f, void **a)
{
	FN((const int *, const int *, const int *, const int *, int *, int *, int *, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7));
}
static void inv_moe_capacity(void *f, void **a)
{
	FN((const float *, const int *, const int *, const int *, int *, int *))(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5));
}
static void inv_ce_chunk_fwd(void *f, void **a)
{
	FN((float *, float *, float *, const float *, const int *, int, int, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AI(5), AI(6), AI(7));
}
static void inv_ce_finish(void *f, void **a)
{
	FN((float *, float *, float *, const float *, const float *, const float *, const int *, int))
	(AP(0), AP(1), AP(2), AP(3), AP(4), AP(5), AP(6), AI(7));
}
static void inv_ce_chunk_bwd(void *f, void **a)
{
	FN((float *, const float *, const int *, const float *, float, int, int, int))
	(AP(0), AP(1), AP(2), AP(3), AF(4), AI(5), AI(6), AI(7));
}
static void inv_router_bwd(void *f, void **a)
{
	FN((const float *, const int *, const float *, const float *, float, float *, int))
	(AP(0), AP(1), AP(2), AP(3), AF(4), AP(5), AI(6));
}
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
static void inv_cast_f32_bf16(void *f, void **a) { FN((bf16 *, const float *, long))(AP(0), AP(1), AL(2)); }
static void inv_cast_bf16_f32(void *f, void **a) { FN((float *, const bf16 *, long))(AP(0), AP(1), AL(2)); }

/* ---- input generation ---------------------------------------------------------------------- */
static int need(struct kctx *x, const char *name, long *v)
{
	if (!kconst_int(x->k, name, v))
		return 0;
	printf("%-46s %-30s constant %s missing or not an integer FAIL\n", x->k->name, "-", name);
	x->nfail++;
	return -1;
}
#define NEED(var, name)              \
	long var;                    \
	if (need(x, name, &var))     \
		return

static double act_tol(const struct kctx *x, double f32_tol) { return x->bf ? TOL_BF16 : f32_tol; }

static uint32_t order_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* A routing of T tokens to K of E experts and what the dispatch pipeline derives from it, on
 * the host (moe_count.cu's rules): the inputs of the routing kernels, consistent with each
 * other. Patterns: RT_RANDOM skews the load (u^2), never picks experts e % 5 == 3 (when E
 * leaves room: experts with no tokens), masks every 7th token (all K ids -1) and gives every
 * 11th token an out-of-range id (>= E) in its last slot; RT_ONE routes every token to expert
 * E/2 (the maximum load, T pairs) plus K-1 others; RT_TIED is RT_RANDOM with weights from
 * {1,2,3,4}/8 (ties for low_prob). cap/policy: moe_scan/moe_route/moe_capacity's capacity. */
enum { RT_RANDOM, RT_ONE, RT_TIED };

struct route {
	int E, K, T, P, nblk, R, ndrop;
	int *ids, *counts, *offsets, *dest, *row_src, *hist, *blk_base, *scratch;
	float *w;
};

struct keyed {
	uint64_t key;
	int p;
};

static int keyed_desc(const void *a, const void *b)
{
	const uint64_t x = ((const struct keyed *)a)->key, y = ((const struct keyed *)b)->key;
	return x < y ? 1 : x > y ? -1 : 0;
}

static void route_free(struct route *r)
{
	free(r->ids);
	free(r->w);
	free(r->counts);
	free(r->offsets);
	free(r->dest);
	free(r->row_src);
	free(r->hist);
	free(r->blk_base);
	free(r->scratch);
}

static void route_make(struct route *r, int E, int K, int T, int pat, int cap, int policy)
{
	memset(r, 0, sizeof *r);
	r->E = E, r->K = K, r->T = T, r->P = T * K, r->nblk = (T + 255) / 256;
	const int P = r->P, estar = E / 2, dead = pat != RT_ONE && E - (E + 1) / 5 >= K + 1;
	r->ids = xcalloc((size_t)P, sizeof(int));
	r->w = xcalloc((size_t)P, sizeof(float));
	for (int t = 0; t < T; t++) {
		int *id = r->ids + (size_t)t * K;
		for (int k = 0; k < K; k++) {
			int e;
			for (;;) {
				double u = rnd_unif();
				e = pat == RT_ONE && k == 0 ? estar : (int)(u * u * E);
				if (e >= E)
					e = E - 1;
				if (dead && e % 5 == 3)
					continue;
				if (pat == RT_ONE && k > 0 && e == estar)
					continue;
				int dup = 0;
				for (int j = 0; j < k; j++)
					dup |= id[j] == e;
				if (!dup)
					break;
			}
			id[k] = e;
			r->w[(size_t)t * K + k] = pat == RT_TIED ? (float)(1 + rnd_int(4)) * 0.125f : (float)(0.05 + rnd_unif());
		}
		if (pat != RT_ONE && t % 7 == 3)
			for (int k = 0; k < K; k++)
				id[k] = -1;
		else if (pat != RT_ONE && t % 11 == 5)
			id[K - 1] = E + t % 3;
	}
	r->counts = xcalloc((size_t)E, sizeof(int));
	r->offsets = xcalloc((size_t)E + 1, sizeof(int));
	r->hist = xcalloc((size_t)r->nblk * E, sizeof(int));
	r->blk_base = xcalloc((size_t)r->nblk * E, sizeof(int));
	r->scratch = xcalloc((size_t)P, sizeof(int));
	r->dest = xmalloc((size_t)P * sizeof(int));
	for (int p = 0; p < P; p++) {
		const int e = r->ids[p];
		r->dest[p] = -1;
		if ((unsigned)e < (unsigned)E) {
			r->counts[e]++;
			r->hist[(size_t)(p / K / 256) * E + e]++;
		}
	}
	for (int e = 0; e < E; e++) {
		int run = 0;
		for (int b = 0; b < r->nblk; b++) {
			r->blk_base[(size_t)b * E + e] = run;
			run += r->hist[(size_t)b * E + e];
		}
		const int kept = cap > 0 && r->counts[e] > cap ? cap : r->counts[e];
		r->offsets[e + 1] = r->offsets[e] + kept;
		r->ndrop += r->counts[e] - kept;
	}
	r->R = r->offsets[E];
	r->row_src = xcalloc((size_t)(r->R ? r->R : 1), sizeof(int));
	/* each expert's pairs in token order: the dropless slots (pair_scratch) */
	int *start = xcalloc((size_t)E + 1, sizeof(int)), *fill = xcalloc((size_t)E, sizeof(int));
	for (int e = 0; e < E; e++)
		start[e + 1] = start[e] + r->counts[e];
	for (int p = 0; p < P; p++) {
		const int e = r->ids[p];
		if ((unsigned)e < (unsigned)E)
			r->scratch[start[e] + fill[e]++] = p;
	}
	/* the kept pairs: late_tokens (and dropless) the first ones, low_prob the highest
	 * (weight, earlier token) keys; kept rows in token order either way */
	unsigned char *keep = xcalloc((size_t)P, 1);
	struct keyed *ks = xcalloc((size_t)P, sizeof *ks);
	for (int e = 0; e < E; e++) {
		const int n = r->counts[e], nk = r->offsets[e + 1] - r->offsets[e];
		const int *seg = r->scratch + start[e];
		if (cap > 0 && policy == 1 && n > nk) {
			for (int i = 0; i < n; i++)
				ks[i] = (struct keyed){((uint64_t)order_bits(r->w[seg[i]]) << 32) | (0xffffffffu - (uint32_t)(seg[i] / K)), seg[i]};
			qsort(ks, (size_t)n, sizeof *ks, keyed_desc);
			for (int i = 0; i < nk; i++)
				keep[ks[i].p] = 1;
		} else {
			for (int i = 0; i < nk; i++)
				keep[seg[i]] = 1;
		}
		for (int i = 0, row = r->offsets[e]; i < n; i++)
			if (keep[seg[i]]) {
				r->dest[seg[i]] = row;
				r->row_src[row++] = seg[i];
			}
	}
	free(keep);
	free(ks);
	free(start);
	free(fill);
}

/* Rows of each of E experts for a grouped GEMM over `*rows` permuted rows; returns
 * offsets[E] (rows used; rows past it belong to no expert). GP_RANDOM: skewed sizes, every
 * expert e % 4 == 1 empty (E > 1); GP_ONE: all rows to the last expert; GP_TAIL: GP_RANDOM
 * over 3/4 of the rows; GP_TILES: sizes at tile edges (TILE_M - 1, TILE_M, TILE_M + 1, 2 TILE_M,
 * 0, 1, ...) for the first `tiles` experts (tiles_experts), the others empty, *rows set to their
 * sum + 7. */
enum { GP_RANDOM, GP_ONE, GP_TAIL, GP_TILES };

static int tile_size(int e, int tile_m)
{
	const int sz[] = {tile_m, tile_m + 1, 0, tile_m - 1, 1, 2 * tile_m, 3, 0};
	return sz[e % 8];
}

/* GP_TILES: how many experts get the tile-edge sizes: all E; with --max-rows, the whole rounds
 * of 8 sizes that fit in it (0: not even one) */
static int tiles_experts(int E, int tile_m)
{
	if (!g_max_rows)
		return E;
	int ne = 0;
	long sum = 7;
	for (int e = 0; e < E; e += 8) {
		long r = 0;
		for (int k = e; k < e + 8 && k < E; k++)
			r += tile_size(k, tile_m);
		if (sum + r > g_max_rows)
			break;
		sum += r;
		ne = imin(e + 8, E);
	}
	return ne;
}

static int gemm_offsets(int *off, int E, int *rows, int pat, int tile_m, int tiles)
{
	off[0] = 0;
	if (pat == GP_TILES) {
		for (int e = 0; e < E; e++)
			off[e + 1] = off[e] + (e < tiles ? tile_size(e, tile_m) : 0);
		*rows = off[E] + 7;
		return off[E];
	}
	const int used = pat == GP_TAIL ? *rows * 3 / 4 : *rows;
	if (pat == GP_ONE || E == 1) {
		for (int e = 0; e < E; e++)
			off[e + 1] = e == E - 1 ? used : 0;
		return used;
	}
	double *w = xcalloc((size_t)E, sizeof(double)), W = 0;
	for (int e = 0; e < E; e++) {
		const double u = rnd_unif();
		w[e] = e % 4 == 1 ? 0 : u * u + 0.05;
		W += w[e];
	}
	int left = used;
	for (int e = 0; e < E; e++) {
		const int n = (int)(used * w[e] / W);
		off[e + 1] = off[e] + (n < left ? n : left);
		left -= off[e + 1] - off[e];
	}
	/* the remainder to a random non-empty expert: shift the later offsets */
	int e0;
	do
		e0 = rnd_int(E);
	while (w[e0] == 0);
	for (int e = e0 + 1; e <= E; e++)
		off[e] += left;
	free(w);
	return used;
}

/* Document ids of T tokens: runs of lens[] (cycled), or of 1..maxlen tokens when lens is NULL;
 * every run gets its own id (decreasing, so no kernel can rely on an order). */
static void make_docs(int *doc, int T, const int *lens, int nl, int maxlen)
{
	int run = 0, left = 0, li = 0;
	for (int t = 0; t < T; t++) {
		if (left == 0) {
			left = lens ? lens[li++ % nl] : 1 + rnd_int(maxlen);
			run++;
		}
		doc[t] = 5000 - 3 * run;
		left--;
	}
}

/* Causal document-masked attention in double: lse [NH, T] and out [T, NH, HD] (the inputs
 * attention_bwd needs, consistent with q, k, v). */
static void attn_ref(const struct tcase *c, int bq, int bk, int bv, const int *doc, int T, int NH, int NKV, int HD,
		     double *out, float *lse)
{
	const int G = NH / NKV;
	const double scale = 1.0 / sqrt((double)HD);
	double *q = xcalloc((size_t)T * NH * HD, sizeof(double)), *k = xcalloc((size_t)T * NKV * HD, sizeof(double)),
	       *v = xcalloc((size_t)T * NKV * HD, sizeof(double)), *s = xcalloc((size_t)T, sizeof(double));
	int *start = xcalloc((size_t)T, sizeof(int));
	for (size_t j = 0; j < (size_t)T * NH * HD; j++)
		q[j] = tb_get(c, bq, j);
	for (size_t j = 0; j < (size_t)T * NKV * HD; j++) {
		k[j] = tb_get(c, bk, j);
		v[j] = tb_get(c, bv, j);
	}
	for (int i = 0; i < T; i++)
		start[i] = i > 0 && doc[i - 1] == doc[i] ? start[i - 1] : i;
	for (int h = 0; h < NH; h++)
		for (int i = 0; i < T; i++) {
			const double *qi = q + ((size_t)i * NH + h) * HD;
			double m = -INFINITY;
			for (int j = start[i]; j <= i; j++) {
				const double *kj = k + ((size_t)j * NKV + h / G) * HD;
				double d = 0;
				for (int e = 0; e < HD; e++)
					d += qi[e] * kj[e];
				s[j] = d * scale;
				m = s[j] > m ? s[j] : m;
			}
			double sum = 0;
			for (int j = start[i]; j <= i; j++)
				sum += exp(s[j] - m);
			const double l = m + log(sum);
			lse[(size_t)h * T + i] = (float)l;
			double *o = out + ((size_t)i * NH + h) * HD;
			for (int e = 0; e < HD; e++)
				o[e] = 0;
			for (int j = start[i]; j <= i; j++) {
				const double p = exp(s[j] - l), *vj = v + ((size_t)j * NKV + h / G) * HD;
				for (int e = 0; e < HD; e++)
					o[e] += p * vj[e];
			}
		}
	free(q);
	free(k);
	free(v);
	free(s);
	free(start);
}

/* Router logits of one token whose routing has no near-ties, and its picks: router_fwd.cu's
 * selection recomputed in double; a draw is kept when the choices (score + bias) of the K
 * picks and the best unpicked eligible expert are pairwise apart by 1e-4 relative (+1e-7),
 * and so are the group scores at the TOPK_GROUP boundary: orders of magnitude above the
 * fp32 difference of the GPU's and the twin's scores (expf, sums in another order), so the
 * picks cannot legitimately differ. boost: added to expert `hot`'s logit (the maximum load). */
static void router_logits(float *l, const float *bias, int E, int K, int sigmoid, int ngroup, int topkg, int hot, double boost,
			  int *picks)
{
	double *sc = xcalloc((size_t)E, sizeof(double)), *ch = xcalloc((size_t)E, sizeof(double));
	unsigned char *elig = xcalloc((size_t)E, 1);
	double *gs = xcalloc((size_t)(ngroup > 0 ? ngroup : 1), sizeof(double));
	for (int tries = 0;; tries++) {
		if (tries == 10000) {
			fprintf(stderr, "kernel_vs_twin: cannot draw tie-free router logits (E=%d K=%d)\n", E, K);
			exit(2);
		}
		for (int e = 0; e < E; e++)
			l[e] = (float)(1.5 * rnd_normal() + (e == hot ? boost : 0));
		double m = -INFINITY, se = 0;
		for (int e = 0; e < E; e++)
			m = l[e] > m ? l[e] : m;
		for (int e = 0; e < E; e++)
			se += exp(l[e] - m);
		for (int e = 0; e < E; e++) {
			sc[e] = sigmoid ? 1.0 / (1.0 + exp(-(double)l[e])) : exp(l[e] - m) / se;
			ch[e] = sc[e] + (bias ? bias[e] : 0.0f);
			elig[e] = 1;
		}
		int ok = 1;
		if (ngroup > 1) {
			const int G = E / ngroup;
			for (int g = 0; g < ngroup; g++) {
				double t1 = -INFINITY, t2 = -INFINITY;
				for (int e = g * G; e < g * G + G; e++) {
					if (ch[e] > t1)
						t2 = t1, t1 = ch[e];
					else if (ch[e] > t2)
						t2 = ch[e];
				}
				gs[g] = t1 + t2;
			}
			unsigned gmask = 0;
			double last = 0;
			for (int r = 0; r <= topkg && r < ngroup; r++) {
				int bi = -1;
				for (int g = 0; g < ngroup; g++)
					if (!(gmask >> g & 1) && (bi < 0 || gs[g] > gs[bi]))
						bi = g;
				if (r == topkg) { /* the best dropped group must be clearly below the last kept one */
					if (last - gs[bi] < 1e-4 * fabs(last) + 1e-7)
						ok = 0;
					break;
				}
				gmask |= 1u << bi;
				last = gs[bi];
			}
			for (int e = 0; e < E; e++)
				if (!(gmask >> (e / G) & 1))
					elig[e] = 0;
		}
		double prev = 0;
		for (int k = 0; k <= K && ok; k++) {
			int best = -1;
			for (int e = 0; e < E; e++)
				if (elig[e] && (best < 0 || ch[e] > ch[best]))
					best = e;
			if (best < 0)
				break; /* exactly K eligible */
			if (k > 0 && prev - ch[best] < 1e-4 * fabs(prev) + 1e-7)
				ok = 0;
			if (k == K)
				break;
			elig[best] = 0;
			picks[k] = best;
			prev = ch[best];
		}
		if (ok)
			break;
	}
	free(sc);
	free(ch);
	free(elig);
	free(gs);
}

/* ---- drivers: one per template; each mirrors its template's header comment ---------------- */
/* Shapes: the runtime sizes 1, 37, 256, 1000 everywhere (rows, tokens, n), plus per template
 * the edge its geometry has: 0 where the launch line allows it (max(1, ...)), a size past the
 * capped grid's first sweep (grid-stride loops), unaligned pointers where the template has a
 * scalar fallback, in-place aliasing where documented, NULL where an argument may be NULL. */

/* the slot-group geometry of rmsnorm_fwd/_bwd (RMS_G), embedding_fwd (EMB_G) */
static int pow2_group(int nv, int lim32)
{
	if (nv <= 1)
		return 1;
	if (nv <= 2)
		return 2;
	if (nv <= 4)
		return 4;
	if (nv <= 8)
		return 8;
	if (nv <= 16)
		return 16;
	if (nv <= lim32)
		return 32;
	if (nv <= 2 * lim32)
		return 64;
	if (nv <= 4 * lim32)
		return 128;
	return 256;
}

static void drv_embedding_fwd(struct kctx *x)
{
	NEED(H, "H");
	const int vec = x->bf ? 8 : 4, nv = (int)ceil_div(H, vec);
	/* EMB_G: 1..256 by powers of two (no 32-wide plateau) */
	int g = 1;
	while (g < nv && g < 256)
		g *= 2;
	const int stride = 1024 * (256 / g) + 37;
	const struct {
		int tokens, v0, vocab, unaligned;
		const char *what;
	} cs[] = {{0, 0, 300, 0, ""},       {1, 0, 300, 0, ""},      {37, 0, 300, 0, ""},
		  {256, 0, 300, 0, ""},     {1000, 0, 300, 0, ""},   {stride, 0, 300, 0, " grid-stride"},
		  {256, 100, 200, 0, " v0=100"}, {37, 0, 300, 1, " unaligned"}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int T = cs[ci].tokens, v0 = cs[ci].v0, V = cs[ci].vocab;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d%s", T, cs[ci].what);
		int bt = tb_add(c, "table", x->adt, (size_t)V * H, R_IN);
		tb_normal(c, bt, 0, 1);
		int bi = tb_add(c, "ids", DT_I32, (size_t)T, R_IN);
		for (int t = 0; t < T; t++) {
			const double u = rnd_unif();
			tb_i32(c, bi)[t] = u < 0.03 ? -1 - rnd_int(5) : u < 0.06 ? v0 + V + rnd_int(50) : u < 0.08 && v0 ? rnd_int(v0) : v0 + rnd_int(V);
		}
		int bo = tb_add(c, "out", x->adt, (size_t)T * H, R_OUT);
		tb_exact(c, bo); /* a row copy */
		if (cs[ci].unaligned)
			c->b[bo].off = dt_size[x->adt];
		ta_buf(c, "out", bo);
		ta_buf(c, "table", bt);
		ta_buf(c, "ids", bi);
		ta_int(c, "tokens", T);
		ta_int(c, "v0", v0);
		ta_int(c, "vocab", V);
		tv(c, "tokens", T);
		tg(c, imax(1, imin(T, 1024)), 1, 256);
		run_case(x, c);
	}
}

/* x rows with magnitudes 1e-2, 1 and 30, as the residual stream has */
static void norm_rows(struct tcase *c, int b, int rows, int dim)
{
	for (int r = 0; r < rows; r++) {
		const double s = r % 3 == 0 ? 1.0 : r % 3 == 1 ? 30.0 : 0.01;
		for (int i = 0; i < dim; i++)
			tb_set(c, b, (size_t)r * dim + i, s * rnd_normal());
	}
}

static void drv_rmsnorm_fwd(struct kctx *x)
{
	NEED(DIM, "DIM");
	const int g = pow2_group((int)ceil_div(DIM, x->bf ? 8 : 4), 256);
	enum { PLAIN, INPLACE, NORSTD, UNALIGNED };
	const struct {
		int rows, how;
	} cs[] = {{0, PLAIN},    {1, PLAIN},      {37, PLAIN},     {256, PLAIN},      {1000, PLAIN},
		  {1024 * (256 / g) + 5, PLAIN}, {37, INPLACE}, {256, NORSTD}, {37, UNALIGNED}};
	const char *what[] = {"", " in-place", " rstd=NULL", " unaligned"};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, how = cs[ci].how;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s%s", rows, rows > 1000 ? " grid-stride" : "", what[how]);
		int bx = tb_add(c, how == INPLACE ? "y=x" : "x", x->adt, (size_t)rows * DIM, how == INPLACE ? R_INOUT : R_IN);
		norm_rows(c, bx, rows, (int)DIM);
		int bw = tb_add(c, "w", DT_F32, (size_t)DIM, R_IN);
		tb_normal(c, bw, 1, 0.1);
		int by = how == INPLACE ? bx : tb_add(c, "y", x->adt, (size_t)rows * DIM, R_OUT);
		int br = how == NORSTD ? -1 : tb_add(c, "rstd", DT_F32, (size_t)rows, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_RED)); /* a row sum in another order, rsqrtf */
		if (br >= 0)
			tb_nmse(c, br, TOL_F32_RED);
		if (how == UNALIGNED)
			c->b[bx].off = dt_size[x->adt];
		ta_buf(c, "y", by);
		ta_buf(c, "rstd", br);
		ta_buf(c, "x", bx);
		ta_buf(c, "w", bw);
		ta_int(c, "rows", rows);
		tv(c, "rows", rows);
		tg(c, imax(1, imin(rows, 1024)), 1, 256);
		run_case(x, c);
	}
}

/* rope_fwd and rope_bwd: the same arguments and geometry */
static void drv_rope(struct kctx *x)
{
	NEED(HD, "HD");
	const int P = HD % 4 == 0 ? 2 : 1, tok = (int)(256 / (HD / 2 / P));
	enum { PLAIN, INPLACE, UNALIGNED };
	const struct {
		int tokens, heads, how;
	} cs[] = {{0, 4, PLAIN},      {1, 4, PLAIN},      {37, 4, PLAIN},      {256, 4, PLAIN},
		  {1000, 4, PLAIN},   {1024 * tok + 5, 2, PLAIN}, {37, 1, PLAIN}, {256, 4, INPLACE},
		  {37, 3, UNALIGNED}};
	const char *what[] = {"", " in-place", " unaligned"};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int T = cs[ci].tokens, nh = cs[ci].heads, how = cs[ci].how;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d heads=%d%s%s", T, nh, T > 1024 * tok ? " grid-stride" : "", what[how]);
		const size_t n = (size_t)T * nh * HD;
		int bx = tb_add(c, how == INPLACE ? "y=x" : "x", x->adt, n, how == INPLACE ? R_INOUT : R_IN);
		tb_normal(c, bx, 0, 1);
		int bp = tb_add(c, "pos", DT_I32, (size_t)T, R_IN);
		for (int t = 0; t < T; t++) /* positions in a document; some far beyond a 4k context */
			tb_i32(c, bp)[t] = t % 10 == 9 ? rnd_int(1 << 17) : rnd_int(4096);
		int by = how == INPLACE ? bx : tb_add(c, "y", x->adt, n, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_EW)); /* the same double sin/cos, products rounded alike */
		if (how == UNALIGNED)
			c->b[bx].off = dt_size[x->adt];
		ta_buf(c, "y", by);
		ta_buf(c, "x", bx);
		ta_buf(c, "pos", bp);
		ta_int(c, "tokens", T);
		ta_int(c, "heads", nh);
		tv(c, "tokens", T);
		tg(c, imax(1, imin(T, 1024)), 1, 256);
		run_case(x, c);
	}
}

static void drv_add(struct kctx *x)
{
	enum { PLAIN, INPLACE, UNALIGNED };
	const struct {
		long n;
		int how;
	} cs[] = {{0, PLAIN}, {1, PLAIN}, {37 * 128 + 3, PLAIN}, {256 * 128, PLAIN}, {1000 * 128 + 5, PLAIN},
		  {3000001, PLAIN}, {4101, INPLACE}, {4101, UNALIGNED}};
	const char *what[] = {"", " in-place", " unaligned"};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const long n = cs[ci].n;
		const int how = cs[ci].how;
		struct tcase *c = tc_new(x, "n=%ld%s", n, what[how]);
		int ba = tb_add(c, how == INPLACE ? "y=a" : "a", x->adt, (size_t)n, how == INPLACE ? R_INOUT : R_IN);
		int bb = tb_add(c, "b", x->adt, (size_t)n, R_IN);
		tb_normal(c, ba, 0, 1);
		tb_normal(c, bb, 0, 1);
		int by = how == INPLACE ? ba : tb_add(c, "y", x->adt, (size_t)n, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_EW));
		if (how == UNALIGNED)
			c->b[bb].off = dt_size[x->adt];
		ta_buf(c, "y", by);
		ta_buf(c, "a", ba);
		ta_buf(c, "b", bb);
		ta_long(c, "n", n);
		tv(c, "n", n);
		tg(c, imax(1, (int)ceil_div(n, 2048)), 1, 256);
		run_case(x, c);
	}
}

static const long cast_n[] = {0, 1, 7, 37 * 128 + 3, 128000, 300001};

static void drv_cast_f32_bf16(struct kctx *x)
{
	/* NaNs, infinities, zeros, subnormals, the largest float, exact ties (to even) */
	static const uint32_t special[] = {0x7fc00000u, 0xffa00001u, 0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u,
					   0x00000001u, 0x007fffffu, 0x7f7fffffu, 0x3f808000u, 0x3f818000u, 0xbf808000u};
	for (size_t ci = 0; ci <= sizeof cast_n / sizeof cast_n[0]; ci++) {
		const int unaligned = ci == sizeof cast_n / sizeof cast_n[0];
		const long n = unaligned ? 4101 : cast_n[ci];
		struct tcase *c = tc_new(x, "n=%ld%s", n, unaligned ? " unaligned" : "");
		int bx = tb_add(c, "x", DT_F32, (size_t)n, R_IN);
		for (long i = 0; i < n; i++) {
			float v = (float)ldexp(rnd_normal(), rnd_int(61) - 30);
			if (i % 97 == 5) {
				uint32_t u = special[(i / 97) % (sizeof special / sizeof special[0])];
				memcpy(&v, &u, 4);
			}
			tb_f32(c, bx)[i] = v;
		}
		int by = tb_add(c, "y", DT_BF16, (size_t)n, R_OUT);
		tb_exact(c, by); /* round to nearest even on both sides; NaN stays NaN */
		if (unaligned)
			c->b[by].off = 2;
		ta_buf(c, "y", by);
		ta_buf(c, "x", bx);
		ta_long(c, "n", n);
		tv(c, "n", n);
		tg(c, imax(1, (int)ceil_div(n, 2048)), 1, 256);
		run_case(x, c);
	}
}

static void drv_cast_bf16_f32(struct kctx *x)
{
	for (size_t ci = 0; ci <= sizeof cast_n / sizeof cast_n[0]; ci++) {
		const int unaligned = ci == sizeof cast_n / sizeof cast_n[0];
		const long n = unaligned ? 4101 : cast_n[ci];
		struct tcase *c = tc_new(x, "n=%ld%s", n, unaligned ? " unaligned" : "");
		int bx = tb_add(c, "x", DT_BF16, (size_t)n, R_IN);
		for (long i = 0; i < n; i++) /* every bit pattern is a value (NaNs, infinities, subnormals) */
			((uint16_t *)(void *)c->b[bx].init)[i] = (uint16_t)rnd_next();
		int by = tb_add(c, "y", DT_F32, (size_t)n, R_OUT);
		tb_exact(c, by); /* exact */
		if (unaligned)
			c->b[bx].off = 2;
		ta_buf(c, "y", by);
		ta_buf(c, "x", bx);
		ta_long(c, "n", n);
		tv(c, "n", n);
		tg(c, imax(1, (int)ceil_div(n, 2048)), 1, 256);
		run_case(x, c);
	}
}

/* token/document layouts for attention: one document, several (some of one token), many
 * one-token documents (dq = dk = 0 exactly), random lengths; amp scales q and k (peaky) */
static const struct attn_layout {
	int T;
	int lens[6], nl, maxlen;
	double amp;
	const char *what;
} attn_layouts[] = {
	{1, {1}, 1, 0, 1.0, "1 doc"},
	{37, {37}, 1, 0, 1.0, "1 doc"},
	{256, {256}, 1, 0, 1.0, "1 doc"},
	{256, {100, 1, 60, 95}, 4, 0, 1.0, "docs 100,1,60,95"},
	{1000, {1000}, 1, 0, 1.0, "1 doc"},
	{1000, {0}, 0, 300, 1.0, "random docs"},
	{64, {1}, 1, 0, 1.0, "64 one-token docs"},
	{130, {0}, 0, 40, 2.5, "random docs amp 2.5"},
};

static void attn_inputs(struct tcase *c, const struct attn_layout *L, int NH, int NKV, int HD, int adt, int *bq, int *bk,
			int *bv, int *bd)
{
	const int T = L->T;
	*bq = tb_add(c, "q", adt, (size_t)T * NH * HD, R_IN);
	*bk = tb_add(c, "k", adt, (size_t)T * NKV * HD, R_IN);
	*bv = tb_add(c, "v", adt, (size_t)T * NKV * HD, R_IN);
	*bd = tb_add(c, "doc", DT_I32, (size_t)T, R_IN);
	tb_normal(c, *bq, 0, L->amp);
	tb_normal(c, *bk, 0, L->amp);
	tb_normal(c, *bv, 0, 1);
	make_docs(tb_i32(c, *bd), T, L->nl ? L->lens : NULL, L->nl, L->maxlen);
}

static void drv_attention_fwd(struct kctx *x)
{
	NEED(NH, "NH");
	NEED(NKV, "NKV");
	NEED(HD, "HD");
	NEED(BM, "BLOCK_M");
	for (size_t li = 0; li < sizeof attn_layouts / sizeof attn_layouts[0]; li++) {
		const struct attn_layout *L = &attn_layouts[li];
		if (over_max_rows(x, "tokens", L->T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d %s", L->T, L->what);
		int bq, bk, bv, bd;
		attn_inputs(c, L, (int)NH, (int)NKV, (int)HD, x->adt, &bq, &bk, &bv, &bd);
		int bo = tb_add(c, "out", x->adt, (size_t)L->T * NH * HD, R_OUT);
		int bl = tb_add(c, "lse", DT_F32, (size_t)NH * L->T, R_OUT);
		tb_nmse(c, bo, x->bf ? TOL_BF16_ATTN : TOL_F32_RED);
		tb_nmse(c, bl, TOL_F32_RED);
		ta_buf(c, "q", bq);
		ta_buf(c, "k", bk);
		ta_buf(c, "v", bv);
		ta_buf(c, "doc", bd);
		ta_buf(c, "out", bo);
		ta_buf(c, "lse", bl);
		ta_int(c, "tokens", L->T);
		tv(c, "tokens", L->T);
		tg(c, NH, ceil_div(L->T, BM), 2 * BM);
		run_case(x, c);
	}
}

static void drv_attention_bwd_pre(struct kctx *x)
{
	NEED(NH, "NH");
	NEED(HD, "HD");
	const int Ts[] = {1, 37, 256, 1000};
	for (size_t ci = 0; ci < sizeof Ts / sizeof Ts[0]; ci++) {
		const int T = Ts[ci];
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d", T);
		int bo = tb_add(c, "out", x->adt, (size_t)T * NH * HD, R_IN);
		int bd = tb_add(c, "dout", x->adt, (size_t)T * NH * HD, R_IN);
		tb_normal(c, bo, 0, 1);
		tb_normal(c, bd, 0, 1);
		int bdl = tb_add(c, "delta", DT_F32, (size_t)NH * T, R_OUT);
		tb_nmse(c, bdl, TOL_F32_RED);
		ta_buf(c, "out", bo);
		ta_buf(c, "dout", bd);
		ta_buf(c, "delta", bdl);
		ta_int(c, "tokens", T);
		tv(c, "tokens", T);
		tg(c, ceil_div((long)T * NH, 8), 1, 256);
		run_case(x, c);
	}
}

static void drv_attention_bwd(struct kctx *x)
{
	NEED(NH, "NH");
	NEED(NKV, "NKV");
	NEED(HD, "HD");
	NEED(BM, "BLOCK_M");
	NEED(BN, "BLOCK_N");
	for (size_t li = 0; li < sizeof attn_layouts / sizeof attn_layouts[0]; li++) {
		const struct attn_layout *L = &attn_layouts[li];
		const int T = L->T;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d %s", T, L->what);
		int bq, bk, bv, bd;
		attn_inputs(c, L, (int)NH, (int)NKV, (int)HD, x->adt, &bq, &bk, &bv, &bd);
		int bdo = tb_add(c, "dout", x->adt, (size_t)T * NH * HD, R_IN);
		tb_normal(c, bdo, 0, 1);
		/* lse and delta = rowsum(dout * out) consistent with q, k, v (out rounded to act_t
		 * first, as attention_fwd stores it) */
		int bl = tb_add(c, "lse", DT_F32, (size_t)NH * T, R_IN);
		int bdl = tb_add(c, "delta", DT_F32, (size_t)NH * T, R_IN);
		double *out = xcalloc((size_t)T * NH * HD, sizeof(double));
		attn_ref(c, bq, bk, bv, tb_i32(c, bd), T, (int)NH, (int)NKV, (int)HD, out, tb_f32(c, bl));
		for (int i = 0; i < T; i++)
			for (int h = 0; h < NH; h++) {
				double s = 0;
				for (int e = 0; e < HD; e++) {
					const size_t j = ((size_t)i * NH + h) * HD + e;
					const double o = x->bf ? bf2f(f2bf((float)out[j])) : (float)out[j];
					s += o * tb_get(c, bdo, j);
				}
				tb_f32(c, bdl)[(size_t)h * T + i] = (float)s;
			}
		free(out);
		int bdq = tb_add(c, "dq", x->adt, (size_t)T * NH * HD, R_OUT);
		int bdk = tb_add(c, "dk", x->adt, (size_t)T * NKV * HD, R_OUT);
		int bdv = tb_add(c, "dv", x->adt, (size_t)T * NKV * HD, R_OUT);
		const double tol = x->bf ? TOL_BF16_ATTN : TOL_F32_RED;
		tb_nmse(c, bdq, tol);
		tb_nmse(c, bdk, tol);
		tb_nmse(c, bdv, tol);
		/* dq and dk of a one-token document are 0 exactly: measure the roundoff both sides
		 * leave against the gradients' natural size instead */
		c->b[bdq].floor = c->b[bdk].floor = 0.1;
		ta_buf(c, "q", bq);
		ta_buf(c, "k", bk);
		ta_buf(c, "v", bv);
		ta_buf(c, "doc", bd);
		ta_buf(c, "dout", bdo);
		ta_buf(c, "lse", bl);
		ta_buf(c, "delta", bdl);
		ta_buf(c, "dq", bdq);
		ta_buf(c, "dk", bdk);
		ta_buf(c, "dv", bdv);
		ta_int(c, "tokens", T);
		tv(c, "tokens", T);
		tg(c, (NKV + NH) * ceil_div(T, BM), 1, 2 * BM);
		c->smem = (unsigned)(x->bf ? 2 * (2 * BM + 4 * BN) * (HD + 8) + 16 * BN
					   : 4 * (2 * BM * HD + 2 * BN * (HD + 1) + 2 * BN + BM * BN));
		run_case(x, c);
	}
}

/* router_fwd: near-tie-free logits (router_logits), bias, the maximum load */
static void drv_router_fwd(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(SIG, "ROUTER_SIGMOID");
	NEED(NG, "N_GROUP");
	NEED(TG, "TOPK_GROUP");
	const struct {
		int rows, bias, hot;
	} cs[] = {{0, 0, 0}, {1, 0, 0}, {37, 0, 0}, {256, 0, 0}, {1000, 0, 0}, {256, 1, 0}, {1000, 0, 1}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, nblk = imax(1, (int)ceil_div(rows, 64));
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s%s", rows, cs[ci].bias ? " bias" : "", cs[ci].hot ? " one-expert" : "");
		int bb = -1;
		if (cs[ci].bias) {
			bb = tb_add(c, "bias", DT_F32, (size_t)E, R_IN);
			tb_normal(c, bb, 0, 0.05);
		}
		int bl = tb_add(c, "logits", DT_F32, (size_t)rows * E, R_IN);
		int *picks = xcalloc((size_t)K, sizeof(int));
		for (int t = 0; t < rows; t++)
			router_logits(tb_f32(c, bl) + (size_t)t * E, bb >= 0 ? tb_f32(c, bb) : NULL, (int)E, (int)K, (int)SIG,
				      (int)NG, (int)TG, (int)(E / 3), cs[ci].hot ? 8.0 : 0.0, picks);
		free(picks);
		int bid = tb_add(c, "topk_ids", DT_I32, (size_t)rows * K, R_OUT);
		int bw = tb_add(c, "topk_w", DT_F32, (size_t)rows * K, R_OUT);
		int bps = tb_add(c, "prob_sum", DT_F32, (size_t)E, R_OUT);
		int bsc = tb_add(c, "sel_count", DT_I32, (size_t)K * E, R_OUT);
		int bec = tb_add(c, "expert_count", DT_I32, (size_t)E, R_OUT);
		int bz = tb_add(c, "z_sum", DT_F32, 1, R_OUT);
		/* ws: zero-filled once; every launch must leave the accumulators zero again */
		const size_t wsb = 8 * (size_t)E + 4 * (size_t)K * E + 4 + 4 * (size_t)nblk;
		int bws = tb_add(c, "ws", DT_U32, wsb / 4, R_SCRATCH);
		tb_exact(c, bws);
		c->b[bws].ncmp = (8 * (size_t)E + 4 * (size_t)K * E + 4) / 4;
		tb_exact(c, bid);
		tb_nmse(c, bw, TOL_F32_RED);
		tb_nmse(c, bps, TOL_F32_RED);
		tb_exact(c, bsc);
		tb_exact(c, bec);
		tb_nmse(c, bz, TOL_F32_RED);
		ta_buf(c, "logits", bl);
		ta_buf(c, "bias", bb);
		ta_buf(c, "topk_ids", bid);
		ta_buf(c, "topk_w", bw);
		ta_buf(c, "prob_sum", bps);
		ta_buf(c, "sel_count", bsc);
		ta_buf(c, "expert_count", bec);
		ta_buf(c, "z_sum", bz);
		ta_buf(c, "ws", bws);
		ta_int(c, "rows", rows);
		tv(c, "rows", rows);
		tg(c, nblk, 1, 256);
		run_case(x, c);
	}
}

static void drv_router_bwd(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(SIG, "ROUTER_SIGMOID");
	const struct {
		int rows, aux;
		float dz;
	} cs[] = {{1, 1, 0.3f}, {37, 1, 0.3f}, {256, 1, 0.3f}, {1000, 1, 0.3f}, {37, 0, 0.3f}, {256, 0, 0.0f}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s dz=%g", rows, cs[ci].aux ? " aux" : " dprob_sum=NULL", cs[ci].dz);
		int bl = tb_add(c, "logits", DT_F32, (size_t)rows * E, R_IN);
		int bid = tb_add(c, "topk_ids", DT_I32, (size_t)rows * K, R_IN);
		for (int t = 0; t < rows; t++) /* the picks router_fwd makes of these logits */
			router_logits(tb_f32(c, bl) + (size_t)t * E, NULL, (int)E, (int)K, (int)SIG, 1, 1, 0, 0.0,
				      tb_i32(c, bid) + (size_t)t * K);
		int bdw = tb_add(c, "dtopk_w", DT_F32, (size_t)rows * K, R_IN);
		tb_normal(c, bdw, 0, 1);
		int bdp = -1;
		if (cs[ci].aux) {
			bdp = tb_add(c, "dprob_sum", DT_F32, (size_t)E, R_IN);
			tb_normal(c, bdp, 0, 0.1);
		}
		int bdl = tb_add(c, "dlogits", DT_F32, (size_t)rows * E, R_OUT);
		tb_nmse(c, bdl, TOL_F32_RED);
		ta_buf(c, "logits", bl);
		ta_buf(c, "topk_ids", bid);
		ta_buf(c, "dtopk_w", bdw);
		ta_buf(c, "dprob_sum", bdp);
		ta_float(c, "dz_sum", cs[ci].dz);
		ta_buf(c, "dlogits", bdl);
		ta_int(c, "rows", rows);
		tv(c, "rows", rows);
		tg(c, ceil_div(rows, 8), 1, 256);
		run_case(x, c);
	}
}

/* the routing shapes of moe_count / moe_scan / moe_route / moe_capacity: 40000 tokens give
 * moe_scan more token blocks than it has thread groups, and moe_capacity experts with more
 * pairs than its 1024 threads */
static const struct {
	int rows, pat;
} route_cases[] = {{1, RT_RANDOM},    {37, RT_RANDOM}, {256, RT_RANDOM}, {1000, RT_RANDOM}, {40000, RT_RANDOM},
		   {1000, RT_ONE}, {40000, RT_ONE}, {1000, RT_TIED}};
static const char *const route_what[] = {"random", "one-expert", "tied"};
#define NROUTE (sizeof route_cases / sizeof route_cases[0])

/* case ci of the routing shapes; with a capacity, two more: one expert with exactly CAPACITY
 * pairs (nothing dropped) and with CAPACITY + 1 (one dropped) */
static int route_case(size_t ci, long cap, int *rows, int *pat)
{
	if (ci < NROUTE) {
		*rows = route_cases[ci].rows;
		*pat = route_cases[ci].pat;
		return 1;
	}
	if (cap <= 0 || ci >= NROUTE + 2 || cap > 1000000)
		return 0;
	*rows = (int)cap + (int)(ci - NROUTE);
	*pat = RT_ONE;
	return 1;
}

static void route_shape(struct tcase *c, const struct route *r, int cap)
{
	int empty = 0;
	for (int e = 0; e < r->E; e++)
		empty += r->counts[e] == 0;
	sadd(c->shape, sizeof c->shape, " empty=%d", empty);
	if (cap > 0)
		sadd(c->shape, sizeof c->shape, " dropped=%d", r->ndrop);
}

static void drv_moe_count(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	for (size_t ci = 0; ci < sizeof route_cases / sizeof route_cases[0]; ci++) {
		const int T = route_cases[ci].rows;
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[route_cases[ci].pat]);
		struct route r;
		route_make(&r, (int)E, (int)K, T, route_cases[ci].pat, 0, 0);
		route_shape(c, &r, 0);
		int bid = tb_add(c, "topk_ids", DT_I32, (size_t)r.P, R_IN);
		memcpy(c->b[bid].init, r.ids, (size_t)r.P * 4);
		int bc = tb_add(c, "blk_count", DT_I32, (size_t)r.nblk * E, R_OUT);
		tb_exact(c, bc);
		ta_buf(c, "topk_ids", bid);
		ta_buf(c, "blk_count", bc);
		ta_int(c, "rows", T);
		tv(c, "rows", T);
		tg(c, ceil_div(T, 256), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_scan(struct kctx *x)
{
	NEED(E, "E");
	NEED(CAP, "CAPACITY");
	const int K = E >= 2 ? 2 : 1; /* histograms of some routing; moe_scan has no K */
	int T, pat;
	for (size_t ci = 0; route_case(ci, CAP, &T, &pat); ci++) {
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[pat]);
		struct route r;
		route_make(&r, (int)E, K, T, pat, (int)CAP, 2);
		route_shape(c, &r, (int)CAP);
		int bc = tb_add(c, "blk_count", DT_I32, (size_t)r.nblk * E, R_INOUT);
		memcpy(c->b[bc].init, r.hist, (size_t)r.nblk * E * 4);
		int bn = tb_add(c, "counts", DT_I32, (size_t)E, R_OUT);
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_OUT);
		int bd = tb_add(c, "n_dropped", DT_I32, 1, R_OUT);
		tb_exact(c, bc);
		tb_exact(c, bn);
		tb_exact(c, bo);
		tb_exact(c, bd);
		ta_buf(c, "blk_count", bc);
		ta_buf(c, "counts", bn);
		ta_buf(c, "offsets", bo);
		ta_buf(c, "n_dropped", bd);
		ta_int(c, "rows", T);
		tv(c, "rows", T);
		tg(c, 1, 1, 1024);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_route(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(CAP, "CAPACITY");
	NEED(POL, "DROP_POLICY");
	const int low_prob = CAP > 0 && POL == 1;
	int T, pat;
	for (size_t ci = 0; route_case(ci, CAP, &T, &pat); ci++) {
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[pat]);
		struct route r;
		route_make(&r, (int)E, (int)K, T, pat, (int)CAP, (int)POL);
		route_shape(c, &r, (int)CAP);
		int bid = tb_add(c, "topk_ids", DT_I32, (size_t)r.P, R_IN);
		int bb = tb_add(c, "blk_base", DT_I32, (size_t)r.nblk * E, R_IN);
		int bn = tb_add(c, "counts", DT_I32, (size_t)E, R_IN);
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_IN);
		memcpy(c->b[bid].init, r.ids, (size_t)r.P * 4);
		memcpy(c->b[bb].init, r.blk_base, (size_t)r.nblk * E * 4);
		memcpy(c->b[bn].init, r.counts, (size_t)E * 4);
		memcpy(c->b[bo].init, r.offsets, ((size_t)E + 1) * 4);
		int bd = tb_add(c, "dest", DT_I32, (size_t)r.P, R_OUT);
		int brs = tb_add(c, "row_src", DT_I32, (size_t)r.R, R_OUT);
		/* pair_scratch: low_prob only ("else unused, may be NULL": NULL it is) */
		int bps = low_prob ? tb_add(c, "pair_scratch", DT_I32, (size_t)r.P, R_OUT) : -1;
		tb_exact(c, bd);
		tb_exact(c, brs);
		if (bps >= 0)
			tb_exact(c, bps);
		ta_buf(c, "topk_ids", bid);
		ta_buf(c, "blk_base", bb);
		ta_buf(c, "counts", bn);
		ta_buf(c, "offsets", bo);
		ta_buf(c, "dest", bd);
		ta_buf(c, "row_src", brs);
		ta_buf(c, "pair_scratch", bps);
		ta_int(c, "rows", T);
		tv(c, "rows", T);
		tg(c, ceil_div(T, 256), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_capacity(struct kctx *x)
{
	NEED(E, "E");
	NEED(K, "K");
	NEED(CAP, "CAPACITY");
	int T, pat;
	for (size_t ci = 0; route_case(ci, CAP, &T, &pat); ci++) {
		if (over_max_rows(x, "rows", T))
			continue;
		struct tcase *c = tc_new(x, "rows=%d %s", T, route_what[pat]);
		struct route r;
		route_make(&r, (int)E, (int)K, T, pat, (int)CAP, 1);
		route_shape(c, &r, (int)CAP);
		int bw = tb_add(c, "topk_w", DT_F32, (size_t)r.P, R_IN);
		int bn = tb_add(c, "counts", DT_I32, (size_t)E, R_IN);
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_IN);
		int bs = tb_add(c, "pair_scratch", DT_I32, (size_t)r.P, R_IN);
		memcpy(c->b[bw].init, r.w, (size_t)r.P * 4);
		memcpy(c->b[bn].init, r.counts, (size_t)E * 4);
		memcpy(c->b[bo].init, r.offsets, ((size_t)E + 1) * 4);
		memcpy(c->b[bs].init, r.scratch, (size_t)r.P * 4);
		/* dest as moe_route leaves it: -1 for invalid ids, the rest for moe_capacity */
		int bd = tb_add(c, "dest", DT_I32, (size_t)r.P, R_INOUT);
		sentinel(&c->b[bd]);
		for (int p = 0; p < r.P; p++)
			if ((unsigned)r.ids[p] >= (unsigned)E)
				tb_i32(c, bd)[p] = -1;
		int brs = tb_add(c, "row_src", DT_I32, (size_t)r.R, R_OUT);
		tb_exact(c, bd);
		tb_exact(c, brs);
		ta_buf(c, "topk_w", bw);
		ta_buf(c, "counts", bn);
		ta_buf(c, "offsets", bo);
		ta_buf(c, "pair_scratch", bs);
		ta_buf(c, "dest", bd);
		ta_buf(c, "row_src", brs);
		tg(c, E, 1, 1024);
		run_case(x, c);
		route_free(&r);
	}
}

/* permute / combine and their backward: any dest works; routings of 8 experts (dropless
 * with masked tokens, the maximum load, and with capacity drops, late_tokens) */
static const struct {
	int rows, pat, drops;
} perm_cases[] = {{1, RT_RANDOM, 0},   {37, RT_RANDOM, 0}, {256, RT_RANDOM, 0}, {1000, RT_RANDOM, 0},
		  {256, RT_ONE, 0}, {1000, RT_RANDOM, 1}};

static struct tcase *perm_case(struct kctx *x, size_t ci, long K, struct route *r)
{
	const int T = perm_cases[ci].rows, Er = (int)(K * 2 > 8 ? K * 2 : 8);
	const int cap = perm_cases[ci].drops ? imax(1, T * (int)K / Er / 2) : 0;
	struct tcase *c = tc_new(x, "rows=%d %s%s", T, route_what[perm_cases[ci].pat], cap ? " drops" : "");
	route_make(r, Er, (int)K, T, perm_cases[ci].pat, cap, 2);
	if (cap)
		sadd(c->shape, sizeof c->shape, "=%d", r->ndrop);
	return c;
}

static int perm_dest(struct tcase *c, const struct route *r)
{
	int bd = tb_add(c, "dest", DT_I32, (size_t)r->P, R_IN);
	memcpy(c->b[bd].init, r->dest, (size_t)r->P * 4);
	return bd;
}

static void drv_moe_permute(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int bx = tb_add(c, "x", x->adt, (size_t)r.T * H, R_IN);
		tb_normal(c, bx, 0, 1);
		int bd = perm_dest(c, &r);
		int bp = tb_add(c, "x_perm", x->adt, (size_t)r.R * H, R_OUT);
		tb_exact(c, bp); /* a row copy */
		ta_buf(c, "x", bx);
		ta_buf(c, "dest", bd);
		ta_buf(c, "x_perm", bp);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

/* ep_regroup: the received rows of one rank between arrival and expert-major order, both
 * directions, with tables laid out as runtime/ep.c's (ep.h; built here, since this program
 * links no MPI, which ep.c's route pulls in) from counts per (source rank, local expert) of
 * E = ep x E_LOCAL blocks. ep = 2, 4 and 8 where E allows (the instance fixes only E); a third
 * of the blocks empty, or every row in one block. */
static const struct {
	int ep, rows, one; /* one: every row in one block, the rest empty */
} ep_cases[] = {{2, 37, 0}, {2, 1000, 0}, {4, 300, 1}, {4, 4096, 0}, {8, 1000, 0}, {8, 1, 1}};

static void ep_route_counts(int *from, int nb, int rows, int one)
{
	for (int b = 0; b < nb; b++)
		from[b] = 0;
	if (one) {
		from[rnd_int(nb)] = rows;
		return;
	}
	int live = 0, last = 0, left = rows;
	for (int b = 0; b < nb; b++) /* a third of the blocks get no rows */
		if ((from[b] = rnd_int(3) != 0))
			live++, last = b;
	for (int b = 0; b < last; b++) /* the live blocks' rows, about rows / live each; the last the rest */
		if (from[b]) {
			int n = rnd_int(2 * rows / (live ? live : 1) + 1);
			from[b] = n < left ? n : left;
			left -= from[b];
		}
	from[last] = left;
}

/* One direction's table (kernels/ep_regroup.cu): the blocks in destination order, their
 * first destination rows (then the total), then their first source rows. Dispatch
 * (to_em): arrival order [s][j] -> expert-major [j][s]; combine the reverse. */
static void ep_table(const int *from, int ep, int el, int to_em, int *table)
{
	const int nb = ep * el;
	for (int s = 0; s < ep; s++)
		for (int j = 0; j < el; j++) {
			int arr = 0, em = 0; /* block (s, j)'s first row in either order */
			for (int b = 0; b < s * el + j; b++)
				arr += from[b];
			for (int jj = 0; jj < el; jj++)
				for (int ss = 0; ss < ep; ss++)
					em += (jj < j || (jj == j && ss < s)) ? from[ss * el + jj] : 0;
			const int at = to_em ? j * ep + s : s * el + j;
			table[at] = to_em ? em : arr;
			table[nb + 1 + at] = to_em ? arr : em;
		}
	table[nb] = 0;
	for (int b = 0; b < nb; b++)
		table[nb] += from[b];
	/* the twin on both sides would agree on a table that drops or repeats rows: check it is a
	 * permutation, destination runs ascending and every source row used once */
	const int rows = table[nb];
	char *seen = xcalloc((size_t)rows + 1, 1);
	for (int b = 0; b < nb; b++) {
		const int n = table[b + 1] - table[b];
		for (int i = (n < 0 || table[0]) ? -1 : 0; i < n; i++)
			if (i < 0 || table[nb + 1 + b] + i >= rows || seen[table[nb + 1 + b] + i]++) {
				fprintf(stderr, "kernel_vs_twin: ep_table is not a permutation (block %d)\n", b);
				exit(2);
			}
	}
	free(seen);
}

static void drv_ep_regroup(struct kctx *x)
{
	NEED(E, "E");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof ep_cases / sizeof ep_cases[0]; ci++) {
		const int ep = ep_cases[ci].ep, rows = ep_cases[ci].rows;
		if (E % ep || over_max_rows(x, "rows", rows))
			continue;
		for (int dir = 1; dir >= 0; dir--) { /* dispatch's table, then combine's */
			int *from = xcalloc((size_t)E, sizeof *from), *table = xcalloc((size_t)(2 * E + 1), sizeof *table);
			struct tcase *c = tc_new(x, "ep=%d rows=%d %s%s", ep, rows, dir ? "dispatch" : "combine",
						 ep_cases[ci].one ? " one-block" : "");
			ep_route_counts(from, (int)E, rows, ep_cases[ci].one);
			ep_table(from, ep, (int)(E / ep), dir, table);
			const int n = (int)(2 * E + 1);
			int bs = tb_add(c, "src", x->adt, (size_t)rows * H, R_IN);
			tb_normal(c, bs, 0, 1);
			int bt = tb_add(c, "table", DT_I32, (size_t)n, R_IN);
			memcpy(c->b[bt].init, table, (size_t)n * 4);
			int bd = tb_add(c, "dst", x->adt, (size_t)rows * H, R_OUT);
			tb_exact(c, bd); /* a row copy */
			ta_buf(c, "src", bs);
			ta_buf(c, "table", bt);
			ta_buf(c, "dst", bd);
			ta_int(c, "rows", rows);
			tv(c, "rows", rows);
			tg(c, ceil_div(rows, 8), 1, 256);
			run_case(x, c);
			free(from);
			free(table);
		}
	}
}

static void drv_moe_combine(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int byp = tb_add(c, "y_perm", x->adt, (size_t)r.R * H, R_IN);
		tb_normal(c, byp, 0, 1);
		int bd = perm_dest(c, &r);
		int bw = tb_add(c, "topk_w", DT_F32, (size_t)r.P, R_IN);
		memcpy(c->b[bw].init, r.w, (size_t)r.P * 4);
		int by = tb_add(c, "y", x->adt, (size_t)r.T * H, R_OUT);
		tb_nmse(c, by, act_tol(x, TOL_F32_RED)); /* k-order sums; the GPU may fuse w * y + acc */
		ta_buf(c, "y_perm", byp);
		ta_buf(c, "dest", bd);
		ta_buf(c, "topk_w", bw);
		ta_buf(c, "y", by);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_combine_bwd(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int bdy = tb_add(c, "dy", x->adt, (size_t)r.T * H, R_IN);
		int byp = tb_add(c, "y_perm", x->adt, (size_t)r.R * H, R_IN);
		tb_normal(c, bdy, 0, 1);
		tb_normal(c, byp, 0, 1);
		int bd = perm_dest(c, &r);
		int bw = tb_add(c, "topk_w", DT_F32, (size_t)r.P, R_IN);
		memcpy(c->b[bw].init, r.w, (size_t)r.P * 4);
		int bdyp = tb_add(c, "dy_perm", x->adt, (size_t)r.R * H, R_OUT);
		int bdw = tb_add(c, "dtopk_w", DT_F32, (size_t)r.P, R_OUT);
		tb_nmse(c, bdyp, act_tol(x, TOL_F32_EW)); /* one product each */
		tb_nmse(c, bdw, TOL_F32_RED);             /* dot products */
		ta_buf(c, "dy", bdy);
		ta_buf(c, "y_perm", byp);
		ta_buf(c, "dest", bd);
		ta_buf(c, "topk_w", bw);
		ta_buf(c, "dy_perm", bdyp);
		ta_buf(c, "dtopk_w", bdw);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

static void drv_moe_permute_bwd(struct kctx *x)
{
	NEED(K, "K");
	NEED(H, "H");
	for (size_t ci = 0; ci < sizeof perm_cases / sizeof perm_cases[0]; ci++) {
		struct route r;
		if (over_max_rows(x, "rows", perm_cases[ci].rows))
			continue;
		struct tcase *c = perm_case(x, ci, K, &r);
		int bxp = tb_add(c, "dx_perm", x->adt, (size_t)r.R * H, R_IN);
		tb_normal(c, bxp, 0, 1);
		int bd = perm_dest(c, &r);
		int bdx = tb_add(c, "dx", x->adt, (size_t)r.T * H, R_OUT);
		tb_nmse(c, bdx, act_tol(x, TOL_F32_RED));
		ta_buf(c, "dx_perm", bxp);
		ta_buf(c, "dest", bd);
		ta_buf(c, "dx", bdx);
		ta_int(c, "rows", r.T);
		tv(c, "rows", r.T);
		tg(c, ceil_div(r.T, 8), 1, 256);
		run_case(x, c);
		route_free(&r);
	}
}

/* ---- the six grouped expert GEMMs ---- */
enum { G_GATE_UP_FWD, G_DOWN_FWD, G_DOWN_BWD_DATA, G_GATE_UP_BWD_DATA, G_DOWN_BWD_WEIGHT, G_GATE_UP_BWD_WEIGHT };

static const struct {
	int rows, pat, gu_null;
} gemm_cases[] = {{1, GP_RANDOM, 0},    {37, GP_RANDOM, 0}, {256, GP_RANDOM, 0}, {1000, GP_RANDOM, 0},
		  {37, GP_ONE, 0},   {1000, GP_ONE, 0}, {300, GP_TAIL, 0},   {0, GP_TILES, 0},
		  {256, GP_RANDOM, 1}};
static const char *const gemm_what[] = {"random", "one-expert", "tail", "tile-edges"};

static long gemm_tile(const struct kinst *k, const char *name, int bf)
{
	long v;
	if (!kconst_int(k, name, &v))
		return v;
	if (!strcmp(name, "TILE_M"))
		return bf ? 128 : 64;
	if (!strcmp(name, "TILE_N"))
		return bf ? 256 : 64;
	if (!strcmp(name, "TILE_K"))
		return bf ? 64 : 16;
	return 3; /* STAGES */
}

static void drv_gemm(struct kctx *x, int which)
{
	NEED(E, "E_LOCAL");
	NEED(H, "H");
	NEED(I, "I");
	const long TM = gemm_tile(x->k, "TILE_M", x->bf), TN = gemm_tile(x->k, "TILE_N", x->bf),
		   TK = gemm_tile(x->k, "TILE_K", x->bf), ST = gemm_tile(x->k, "STAGES", x->bf);
	for (size_t ci = 0; ci < sizeof gemm_cases / sizeof gemm_cases[0]; ci++) {
		if (gemm_cases[ci].gu_null && which != G_GATE_UP_FWD)
			continue;
		/* --max-rows: the tile-edge sizes for the first experts only (whole rounds of 8) */
		const int tiles = gemm_cases[ci].pat == GP_TILES ? tiles_experts((int)E, (int)TM) : 0;
		if (gemm_cases[ci].pat == GP_TILES && !tiles) {
			int r = 7;
			for (int e = 0; e < E && e < 8; e++)
				r += tile_size(e, (int)TM);
			over_max_rows(x, "rows", r);
			continue;
		}
		if (over_max_rows(x, "rows", gemm_cases[ci].rows))
			continue;
		struct tcase *c = tc_new(x, "-");
		int bo = tb_add(c, "offsets", DT_I32, (size_t)E + 1, R_IN);
		int rows = gemm_cases[ci].rows, empty = 0;
		const int used = gemm_offsets(tb_i32(c, bo), (int)E, &rows, gemm_cases[ci].pat, (int)TM, tiles);
		for (int e = 0; e < E; e++)
			empty += tb_i32(c, bo)[e + 1] == tb_i32(c, bo)[e];
		snprintf(c->shape, sizeof c->shape, "rows=%d %s empty=%d%s%s", rows, gemm_what[gemm_cases[ci].pat], empty,
			 used < rows ? " used<rows" : "", gemm_cases[ci].gu_null ? " gu=NULL" : "");
		if (tiles && tiles < E)
			sadd(c->shape, sizeof c->shape, " (sizes for %d experts: --max-rows)", tiles);
		const size_t R = (size_t)rows;
		const int A = x->adt;
		long grid = 0;
		/* the kernel's arguments, in order */
		if (which == G_GATE_UP_FWD) {
			int bx = tb_add(c, "x", A, R * H, R_IN);
			int bw = tb_add(c, "w_gate_up", A, (size_t)E * 2 * I * H, R_IN);
			tb_normal(c, bx, 0, 1);
			tb_weights(c, bw, 0, 1 / sqrt((double)H));
			int bh = tb_add(c, "h", A, R * I, R_OUT);
			int bgu = gemm_cases[ci].gu_null ? -1 : tb_add(c, "gu", A, R * 2 * I, R_OUT);
			tb_nmse(c, bh, act_tol(x, TOL_F32_RED));
			if (bgu >= 0)
				tb_nmse(c, bgu, act_tol(x, TOL_F32_RED));
			ta_buf(c, "x", bx);
			ta_buf(c, "w_gate_up", bw);
			ta_buf(c, "offsets", bo);
			ta_buf(c, "h", bh);
			ta_buf(c, "gu", bgu);
			grid = (ceil_div(rows, TM) + E) * ceil_div(I, TN / 2);
		} else if (which == G_DOWN_FWD) {
			int bh = tb_add(c, "h", A, R * I, R_IN);
			int bw = tb_add(c, "w_down", A, (size_t)E * H * I, R_IN);
			tb_normal(c, bh, 0, 1);
			tb_weights(c, bw, 0, 1 / sqrt((double)I));
			int by = tb_add(c, "y", A, R * H, R_OUT);
			tb_nmse(c, by, act_tol(x, TOL_F32_RED));
			ta_buf(c, "h", bh);
			ta_buf(c, "w_down", bw);
			ta_buf(c, "offsets", bo);
			ta_buf(c, "y", by);
			grid = (ceil_div(rows, TM) + E) * ceil_div(H, TN);
		} else if (which == G_DOWN_BWD_DATA) {
			int bdy = tb_add(c, "dy", A, R * H, R_IN);
			int bw = tb_add(c, "w_down", A, (size_t)E * H * I, R_IN);
			int bgu = tb_add(c, "gu", A, R * 2 * I, R_IN);
			tb_normal(c, bdy, 0, 1);
			tb_weights(c, bw, 0, 1 / sqrt((double)H));
			tb_normal(c, bgu, 0, 1.5);
			int bdg = tb_add(c, "dgu", A, R * 2 * I, R_OUT);
			tb_nmse(c, bdg, act_tol(x, TOL_F32_RED));
			ta_buf(c, "dy", bdy);
			ta_buf(c, "w_down", bw);
			ta_buf(c, "gu", bgu);
			ta_buf(c, "offsets", bo);
			ta_buf(c, "dgu", bdg);
			grid = (ceil_div(rows, TM) + E) * ceil_div(I, TN);
		} else if (which == G_GATE_UP_BWD_DATA) {
			int bdg = tb_add(c, "dgu", A, R * 2 * I, R_IN);
			int bw = tb_add(c, "w_gate_up", A, (size_t)E * 2 * I * H, R_IN);
			tb_normal(c, bdg, 0, 1);
			tb_weights(c, bw, 0, 1 / sqrt(2.0 * I));
			int bdx = tb_add(c, "dx", A, R * H, R_OUT);
			tb_nmse(c, bdx, act_tol(x, TOL_F32_RED));
			ta_buf(c, "dgu", bdg);
			ta_buf(c, "w_gate_up", bw);
			ta_buf(c, "offsets", bo);
			ta_buf(c, "dx", bdx);
			grid = (ceil_div(rows, TM) + E) * ceil_div(H, TN);
		} else {
			const int down = which == G_DOWN_BWD_WEIGHT;
			/* dw[e] += a_e^T b_e: accumulated into, fp32 (empty experts untouched) */
			int ba = tb_add(c, down ? "dy" : "dgu", A, R * (down ? H : 2 * I), R_IN);
			int bb = tb_add(c, down ? "h" : "x", A, R * (down ? I : H), R_IN);
			tb_normal(c, ba, 0, 1);
			tb_normal(c, bb, 0, 1);
			int bdw = tb_add(c, down ? "dw_down" : "dw_gate_up", DT_F32, (size_t)E * H * 2 * I / (down ? 2 : 1), R_INOUT);
			tb_weights(c, bdw, 0, 0.5);
			tb_nmse(c, bdw, TOL_F32_RED);
			ta_buf(c, down ? "dy" : "dgu", ba);
			ta_buf(c, down ? "h" : "x", bb);
			ta_buf(c, "offsets", bo);
			ta_buf(c, down ? "dw_down" : "dw_gate_up", bdw);
			grid = down ? E * ceil_div(H, TM) * ceil_div(I, TN) : E * ceil_div(2 * I, TM) * ceil_div(H, TN);
		}
		ta_int(c, "rows", rows);
		tv(c, "rows", rows);
		tg(c, grid, 1, TM * TN / (x->bf ? 128 : 16));
		c->smem = (unsigned)(x->bf ? ST * (TM + TN) * TK * 2 : TK * (TM + TN + 8) * 4);
		run_case(x, c);
	}
}

static void drv_moe_gate_up_fwd(struct kctx *x) { drv_gemm(x, G_GATE_UP_FWD); }
static void drv_moe_down_fwd(struct kctx *x) { drv_gemm(x, G_DOWN_FWD); }
static void drv_moe_down_bwd_data(struct kctx *x) { drv_gemm(x, G_DOWN_BWD_DATA); }
static void drv_moe_gate_up_bwd_data(struct kctx *x) { drv_gemm(x, G_GATE_UP_BWD_DATA); }
static void drv_moe_down_bwd_weight(struct kctx *x) { drv_gemm(x, G_DOWN_BWD_WEIGHT); }
static void drv_moe_gate_up_bwd_weight(struct kctx *x) { drv_gemm(x, G_GATE_UP_BWD_WEIGHT); }

/* ---- fused cross-entropy ---- */
static void ce_labels(struct tcase *c, int b, int rows, int V)
{
	for (int r = 0; r < rows; r++) {
		const double u = rnd_unif();
		tb_i32(c, b)[r] = u < 0.1 ? -100 : u < 0.15 ? V + rnd_int(10) : rnd_int(V);
	}
}

static void drv_ce_chunk_fwd(struct kctx *x)
{
	NEED(V, "V");
	const int full = imin((int)V, 2048);
	const struct {
		int rows, v0, chunk, unaligned;
	} cs[] = {{0, 0, full, 0},    {1, 0, full, 0},   {37, 0, full, 0},    {256, 0, full, 0},  {1000, 0, full, 0},
		  {37, 0, 203, 0},    {256, 200, 312, 0}, {1000, 200, 312, 0}, {37, 203, 309, 0}, {37, 0, full, 1}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, v0 = cs[ci].v0, chunk = imin(cs[ci].chunk, (int)V - v0);
		if (chunk <= 0)
			continue; /* a vocabulary too small for this chunking */
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d v0=%d chunk=%d%s", rows, v0, chunk, cs[ci].unaligned ? " unaligned" : "");
		/* the running state: overwritten by the v0 == 0 chunk, merged into by the others */
		int bm = tb_add(c, "row_max", DT_F32, (size_t)rows, R_INOUT);
		int bs = tb_add(c, "row_sum", DT_F32, (size_t)rows, R_INOUT);
		int bt = tb_add(c, "target", DT_F32, (size_t)rows, R_INOUT);
		if (v0 == 0) {
			sentinel(&c->b[bm]);
			sentinel(&c->b[bs]);
			sentinel(&c->b[bt]);
		} else {
			for (int r = 0; r < rows; r++) {
				tb_f32(c, bm)[r] = (float)(1 + rnd_normal());
				tb_f32(c, bs)[r] = (float)(1 + 99 * rnd_unif());
				tb_f32(c, bt)[r] = (float)rnd_normal();
			}
		}
		int bl = tb_add(c, "logits", DT_F32, (size_t)rows * chunk, R_IN);
		for (int r = 0; r < rows; r++) /* some rows far above the state's max */
			for (int j = 0; j < chunk; j++)
				tb_f32(c, bl)[(size_t)r * chunk + j] = (float)(3 * rnd_normal() + (r % 5 == 2 ? 20 : 0));
		if (cs[ci].unaligned)
			c->b[bl].off = 4;
		int bla = tb_add(c, "labels", DT_I32, (size_t)rows, R_IN);
		ce_labels(c, bla, rows, (int)V);
		tb_nmse(c, bm, TOL_F32_EW);
		tb_nmse(c, bs, TOL_F32_RED);
		tb_nmse(c, bt, TOL_F32_EW);
		ta_buf(c, "row_max", bm);
		ta_buf(c, "row_sum", bs);
		ta_buf(c, "target", bt);
		ta_buf(c, "logits", bl);
		ta_buf(c, "labels", bla);
		ta_int(c, "rows", rows);
		ta_int(c, "chunk", chunk);
		ta_int(c, "v0", v0);
		tv(c, "rows", rows);
		tg(c, imax(1, rows), 1, 256);
		run_case(x, c);
	}
}

static void drv_ce_finish(struct kctx *x)
{
	NEED(V, "V");
	const struct {
		int rows, noloss;
	} cs[] = {{0, 0}, {1, 0}, {37, 0}, {256, 0}, {1000, 0}, {2500, 0}, {256, 1}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d%s", rows, cs[ci].noloss ? " loss=NULL" : "");
		int bm = tb_add(c, "row_max", DT_F32, (size_t)rows, R_IN);
		int bs = tb_add(c, "row_sum", DT_F32, (size_t)rows, R_IN);
		int bt = tb_add(c, "target", DT_F32, (size_t)rows, R_IN);
		for (int r = 0; r < rows; r++) {
			tb_f32(c, bm)[r] = (float)(2 + rnd_normal());
			tb_f32(c, bs)[r] = (float)(1 + 100 * rnd_unif());
			tb_f32(c, bt)[r] = tb_f32(c, bm)[r] - (float)fabs(3 * rnd_normal());
		}
		int bla = tb_add(c, "labels", DT_I32, (size_t)rows, R_IN);
		ce_labels(c, bla, rows, (int)V);
		int bloss = cs[ci].noloss ? -1 : tb_add(c, "loss", DT_F32, (size_t)rows, R_OUT);
		int blse = tb_add(c, "lse", DT_F32, (size_t)rows, R_OUT);
		int btot = tb_add(c, "totals", DT_F32, 3, R_OUT);
		if (bloss >= 0)
			tb_nmse(c, bloss, TOL_F32_EW);
		tb_nmse(c, blse, TOL_F32_EW);
		tb_nmse(c, btot, TOL_F32_RED);
		ta_buf(c, "loss", bloss);
		ta_buf(c, "lse", blse);
		ta_buf(c, "totals", btot);
		ta_buf(c, "row_max", bm);
		ta_buf(c, "row_sum", bs);
		ta_buf(c, "target", bt);
		ta_buf(c, "labels", bla);
		ta_int(c, "rows", rows);
		tv(c, "rows", rows);
		tg(c, 1, 1, 1024);
		run_case(x, c);
	}
}

static void drv_ce_chunk_bwd(struct kctx *x)
{
	NEED(V, "V");
	const int full = imin((int)V, 2048);
	const struct {
		int rows, v0, chunk, zero, unaligned;
		float dloss;
	} cs[] = {{0, 0, full, 0, 0, 1.0f},    {1, 0, full, 0, 0, 1.0f},  {37, 0, full, 0, 0, 1.0f},
		  {256, 0, full, 0, 0, 1.0f},  {1000, 0, full, 0, 0, 0.25f}, {37, 200, 309, 0, 0, 0.5f},
		  {256, 0, full, 1, 0, 1.0f},  {37, 0, full, 0, 1, 1.0f}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, v0 = cs[ci].v0, chunk = imin(cs[ci].chunk, (int)V - v0);
		if (chunk <= 0 || over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d v0=%d chunk=%d%s%s", rows, v0, chunk, cs[ci].zero ? " totals[1]=0" : "",
					 cs[ci].unaligned ? " unaligned" : "");
		int bl = tb_add(c, "dlogits", DT_F32, (size_t)rows * chunk, R_INOUT);
		int blse = tb_add(c, "lse", DT_F32, (size_t)rows, R_IN);
		for (int r = 0; r < rows; r++) {
			double m = -INFINITY, s = 0;
			float *row = tb_f32(c, bl) + (size_t)r * chunk;
			for (int j = 0; j < chunk; j++) {
				row[j] = (float)(3 * rnd_normal());
				m = row[j] > m ? row[j] : m;
			}
			for (int j = 0; j < chunk; j++)
				s += exp(row[j] - m);
			/* the chunk's logsumexp plus the rest of the vocabulary's share */
			tb_f32(c, blse)[r] = (float)(m + log(s) + log(1 + 2 * rnd_unif()));
		}
		if (cs[ci].unaligned)
			c->b[bl].off = 4;
		int bla = tb_add(c, "labels", DT_I32, (size_t)rows, R_IN);
		ce_labels(c, bla, rows, (int)V);
		int counted = 0;
		for (int r = 0; r < rows; r++)
			counted += tb_i32(c, bla)[r] >= 0 && tb_i32(c, bla)[r] < V;
		int btot = tb_add(c, "totals", DT_F32, 3, R_IN);
		tb_f32(c, btot)[0] = 2.0f * (float)counted;
		tb_f32(c, btot)[1] = cs[ci].zero ? 0.0f : (float)counted;
		tb_f32(c, btot)[2] = 2.0f;
		tb_nmse(c, bl, TOL_F32_EW);
		ta_buf(c, "dlogits", bl);
		ta_buf(c, "lse", blse);
		ta_buf(c, "labels", bla);
		ta_buf(c, "totals", btot);
		ta_float(c, "dloss", cs[ci].dloss);
		ta_int(c, "rows", rows);
		ta_int(c, "chunk", chunk);
		ta_int(c, "v0", v0);
		tv(c, "rows", rows);
		tg(c, imax(1, rows), 1, 256);
		run_case(x, c);
	}
}

static void drv_rmsnorm_bwd(struct kctx *x)
{
	NEED(DIM, "DIM");
	const struct {
		int rows, acc;
	} cs[] = {{1, 0}, {37, 0}, {37, 1}, {256, 0}, {1000, 1}, {1000, 0}, {5000, 0}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int rows = cs[ci].rows, acc = cs[ci].acc;
		const int nblk = imax(1, imin(rows, 256)), ngrp = (nblk + 15) / 16;
		if (over_max_rows(x, "rows", rows))
			continue;
		struct tcase *c = tc_new(x, "rows=%d accumulate=%d", rows, acc);
		int bdx = tb_add(c, "dx", x->adt, (size_t)rows * DIM, R_INOUT);
		if (acc)
			tb_normal(c, bdx, 0, 1);
		else
			sentinel(&c->b[bdx]);
		int bdw = tb_add(c, "dw", DT_F32, (size_t)DIM, R_INOUT);
		tb_normal(c, bdw, 0, 1);
		/* ws [nblk + ngrp, DIM]: partials; count [1 + ngrp]: zero, and zero again after */
		int bws = tb_add(c, "ws", DT_F32, (size_t)(nblk + ngrp) * DIM, R_SCRATCH);
		int bcnt = tb_add(c, "count", DT_U32, (size_t)(1 + ngrp), R_SCRATCH);
		tb_exact(c, bcnt);
		int bdy = tb_add(c, "dy", x->adt, (size_t)rows * DIM, R_IN);
		tb_normal(c, bdy, 0, 1);
		int bx = tb_add(c, "x", x->adt, (size_t)rows * DIM, R_IN);
		norm_rows(c, bx, rows, (int)DIM);
		int bw = tb_add(c, "w", DT_F32, (size_t)DIM, R_IN);
		tb_normal(c, bw, 1, 0.1);
		int brs = tb_add(c, "rstd", DT_F32, (size_t)rows, R_IN);
		for (int r = 0; r < rows; r++) { /* what rmsnorm_fwd saved (EPS 1e-6) */
			double ss = 0;
			for (int i = 0; i < DIM; i++) {
				const double v = tb_get(c, bx, (size_t)r * DIM + i);
				ss += v * v;
			}
			tb_f32(c, brs)[r] = (float)(1 / sqrt(ss / (double)DIM + 1e-6));
		}
		tb_nmse(c, bdx, act_tol(x, TOL_F32_RED));
		tb_nmse(c, bdw, TOL_F32_RED);
		ta_buf(c, "dx", bdx);
		ta_buf(c, "dw", bdw);
		ta_buf(c, "ws", bws);
		ta_buf(c, "count", bcnt);
		ta_buf(c, "dy", bdy);
		ta_buf(c, "x", bx);
		ta_buf(c, "w", bw);
		ta_buf(c, "rstd", brs);
		ta_int(c, "rows", rows);
		ta_int(c, "accumulate", acc);
		tv(c, "rows", rows);
		tg(c, nblk, 1, 256);
		run_case(x, c);
	}
}

static void drv_embedding_bwd(struct kctx *x)
{
	NEED(H, "H");
	enum { SPREAD, SAME };
	const struct {
		int tokens, v0, vocab, how;
	} cs[] = {{0, 0, 300, SPREAD},    {1, 0, 300, SPREAD},   {37, 0, 300, SPREAD}, {256, 0, 300, SPREAD},
		  {1000, 0, 300, SPREAD}, {3000, 0, 300, SPREAD}, {1000, 0, 300, SAME}, {1000, 100, 200, SPREAD}};
	for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
		const int T = cs[ci].tokens, v0 = cs[ci].v0, V = cs[ci].vocab;
		if (over_max_rows(x, "tokens", T))
			continue;
		struct tcase *c = tc_new(x, "tokens=%d%s%s", T, cs[ci].how == SAME ? " one id" : " repeats",
					 v0 ? " v0=100" : "");
		int bt = tb_add(c, "dtable", DT_F32, (size_t)V * H, R_INOUT);
		tb_normal(c, bt, 0, 1);
		int bd = tb_add(c, "dout", x->adt, (size_t)T * H, R_IN);
		tb_normal(c, bd, 0, 1);
		int bi = tb_add(c, "ids", DT_I32, (size_t)T, R_IN);
		for (int t = 0; t < T; t++) { /* 60 distinct ids (many repeats), 5% outside the shard */
			const double u = rnd_unif();
			tb_i32(c, bi)[t] = cs[ci].how == SAME ? v0 + 5 : u < 0.05 ? (rnd_int(2) ? -7 : v0 + V + rnd_int(9)) : v0 + (rnd_int(60) * 7) % V;
		}
		tb_exact(c, bt); /* documented: bitwise equal to the twin (token order per row) */
		ta_buf(c, "dtable", bt);
		ta_buf(c, "dout", bd);
		ta_buf(c, "ids", bi);
		ta_int(c, "tokens", T);
		ta_int(c, "v0", v0);
		ta_int(c, "vocab", V);
		tv(c, "tokens", T);
		tg(c, imax(1, T), 1, 256);
		run_case(x, c);
	}
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

static void drv_grad_sumsq(struct kctx *x)
{
	for (size_t li = 0; li < sizeof tlists / sizeof tlists[0]; li++) {
		const struct tlist *L = &tlists[li];
		const long total = tl_total(L);
		const int nblk = imax(1, imin((int)ceil_div(total, 2048), 256));
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
		ta_buf(c, "sumsq", bs);
		ta_buf(c, "ws", bws);
		ta_buf(c, "count", bcnt);
		ta_buf(c, "x", bx);
		ta_buf(c, "offsets", bo);
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
		ta_buf(c, "x", bx);
		ta_buf(c, "offsets", bo);
		ta_int(c, "n_tensors", L->n);
		ta_float(c, "s", cs[ci].s);
		ta_buf(c, "sumsq", bs);
		ta_float(c, "max_norm", cs[ci].max_norm);
		tv(c, "total", total);
		tg(c, imax(1, imin((int)ceil_div(total, 2048), 1024)), 1, 256);
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
		ta_buf(c, "params", ap);
		ta_buf(c, "grads", ag);
		ta_buf(c, "m", am);
		ta_buf(c, "v", avv);
		ta_buf(c, "params_bf16", apb);
		ta_buf(c, "offsets", bo);
		ta_buf(c, "decay", bd);
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
		tg(c, imax(1, imin((int)ceil_div(total, 2048), 1024)), 1, 256);
		run_case(x, c);
	}
}

/* ---- templates -> drivers ---------------------------------------------------------------- */
/* sig: the template's parameter list as lint reads it (gen/launch.h must say the same) */
struct driver {
	const char *tmpl, *sig;
	void (*run)(struct kctx *);
	invoke_fn inv_f32, inv_bf16;
};

#define ACT(name) inv_##name##_float, inv_##name##_bf16
#define NOACT(name) inv_##name, inv_##name

static const struct driver drivers[] = {
	{"embedding_fwd", "act_t *out, const act_t *table, const int *ids, int tokens, int v0, int vocab", drv_embedding_fwd,
	 ACT(embedding_fwd)},
	{"rmsnorm_fwd", "act_t *y, float *rstd, const act_t *x, const float *w, int rows", drv_rmsnorm_fwd, ACT(rmsnorm_fwd)},
	{"rope_fwd", "act_t *y, const act_t *x, const int *pos, int tokens, int heads", drv_rope, ACT(rope)},
	{"rope_bwd", "act_t *y, const act_t *x, const int *pos, int tokens, int heads", drv_rope, ACT(rope)},
	{"attention_fwd", "const act_t *q, const act_t *k, const act_t *v, const int *doc, act_t *out, float *lse, int tokens",
	 drv_attention_fwd, ACT(attention_fwd)},
	{"add", "act_t *y, const act_t *a, const act_t *b, long n", drv_add, ACT(add)},
	{"router_fwd",
	 "const float *logits, const float *bias, int *topk_ids, float *topk_w, float *prob_sum, int *sel_count, "
	 "int *expert_count, float *z_sum, void *ws, int rows",
	 drv_router_fwd, NOACT(router_fwd)},
	{"moe_count", "const int *topk_ids, int *blk_count, int rows", drv_moe_count, NOACT(moe_count)},
	{"moe_scan", "int *blk_count, int *counts, int *offsets, int *n_dropped, int rows", drv_moe_scan, NOACT(moe_scan)},
	{"moe_route",
	 "const int *topk_ids, const int *blk_base, const int *counts, const int *offsets, int *dest, int *row_src, "
	 "int *pair_scratch, int rows",
	 drv_moe_route, NOACT(moe_route)},
	{"moe_capacity",
	 "const float *topk_w, const int *counts, const int *offsets, const int *pair_scratch, int *dest, int *row_src",
	 drv_moe_capacity, NOACT(moe_capacity)},
	{"moe_permute", "const act_t *x, const int *dest, act_t *x_perm, int rows", drv_moe_permute, ACT(moe_permute)},
	{"ep_regroup", "const act_t *src, const int *table, act_t *dst, int rows", drv_ep_regroup, ACT(ep_regroup)},
	{"moe_gate_up_fwd", "const act_t *x, const act_t *w_gate_up, const int *offsets, act_t *h, act_t *gu, int rows",
	 drv_moe_gate_up_fwd, ACT(moe_gate_up_fwd)},
	{"moe_down_fwd", "const act_t *h, const act_t *w_down, const int *offsets, act_t *y, int rows", drv_moe_down_fwd,
	 ACT(moe_down_fwd)},
	{"moe_combine", "const act_t *y_perm, const int *dest, const float *topk_w, act_t *y, int rows", drv_moe_combine,
	 ACT(moe_combine)},
	{"ce_chunk_fwd",
	 "float *row_max, float *row_sum, float *target, const float *logits, const int *labels, int rows, int chunk, int v0",
	 drv_ce_chunk_fwd, NOACT(ce_chunk_fwd)},
	{"ce_finish",
	 "float *loss, float *lse, float *totals, const float *row_max, const float *row_sum, const float *target, "
	 "const int *labels, int rows",
	 drv_ce_finish, NOACT(ce_finish)},
	{"ce_chunk_bwd",
	 "float *dlogits, const float *lse, const int *labels, const float *totals, float dloss, int rows, int chunk, int v0",
	 drv_ce_chunk_bwd, NOACT(ce_chunk_bwd)},
	{"rmsnorm_bwd",
	 "act_t *dx, float *dw, float *ws, unsigned int *count, const act_t *dy, const act_t *x, const float *w, "
	 "const float *rstd, int rows, int accumulate",
	 drv_rmsnorm_bwd, ACT(rmsnorm_bwd)},
	{"moe_combine_bwd",
	 "const act_t *dy, const act_t *y_perm, const int *dest, const float *topk_w, act_t *dy_perm, float *dtopk_w, int rows",
	 drv_moe_combine_bwd, ACT(moe_combine_bwd)},
	{"moe_down_bwd_data", "const act_t *dy, const act_t *w_down, const act_t *gu, const int *offsets, act_t *dgu, int rows",
	 drv_moe_down_bwd_data, ACT(moe_down_bwd_data)},
	{"moe_gate_up_bwd_data", "const act_t *dgu, const act_t *w_gate_up, const int *offsets, act_t *dx, int rows",
	 drv_moe_gate_up_bwd_data, ACT(moe_gate_up_bwd_data)},
	{"moe_down_bwd_weight", "const act_t *dy, const act_t *h, const int *offsets, float *dw_down, int rows",
	 drv_moe_down_bwd_weight, ACT(moe_bwd_weight)},
	{"moe_gate_up_bwd_weight", "const act_t *dgu, const act_t *x, const int *offsets, float *dw_gate_up, int rows",
	 drv_moe_gate_up_bwd_weight, ACT(moe_bwd_weight)},
	{"moe_permute_bwd", "const act_t *dx_perm, const int *dest, act_t *dx, int rows", drv_moe_permute_bwd,
	 ACT(moe_permute_bwd)},
	{"router_bwd",
	 "const float *logits, const int *topk_ids, const float *dtopk_w, const float *dprob_sum, float dz_sum, "
	 "float *dlogits, int rows",
	 drv_router_bwd, NOACT(router_bwd)},
	{"attention_bwd_pre", "const act_t *out, const act_t *dout, float *delta, int tokens", drv_attention_bwd_pre,
	 ACT(attention_bwd_pre)},
	{"attention_bwd",
	 "const act_t *q, const act_t *k, const act_t *v, const int *doc, const act_t *dout, const float *lse, "
	 "const float *delta, act_t *dq, act_t *dk, act_t *dv, int tokens",
	 drv_attention_bwd, ACT(attention_bwd)},
	{"embedding_bwd", "float *dtable, const act_t *dout, const int *ids, int tokens, int v0, int vocab", drv_embedding_bwd,
	 ACT(embedding_bwd)},
	{"grad_sumsq", "float *sumsq, double *ws, unsigned int *count, float **x, const long *offsets, int n_tensors",
	 drv_grad_sumsq, NOACT(grad_sumsq)},
	{"scale", "float **x, const long *offsets, int n_tensors, float s, const float *sumsq, float max_norm", drv_scale,
	 NOACT(scale)},
	{"adamw",
	 "float **params, float **grads, float **m, float **v, bf16 **params_bf16, const long *offsets, const int *decay, "
	 "int n_tensors, double lr, double beta1, double beta2, double eps, double weight_decay, int step, "
	 "const float *sumsq, float max_norm",
	 drv_adamw, NOACT(adamw)},
	{"cast_f32_bf16", "bf16 *y, const float *x, long n", drv_cast_f32_bf16, NOACT(cast_f32_bf16)},
	{"cast_bf16_f32", "float *y, const bf16 *x, long n", drv_cast_bf16_f32, NOACT(cast_bf16_f32)},
};

/* cubin images stay loaded until the device is closed */
static void **g_images;
static int g_nimages;

static void kernel_fail(const struct kinst *k, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	printf("%-46s %-30s %s FAIL\n", k->name, "-", "setup");
	printf("    %s\n", msg);
	fflush(stdout);
}

/* All cases of one kernel instance; returns failed cases (setup failures count one). */
static int test_kernel(const struct kinst *k, const char *build, const char *launch_h, int *ncases, int *nskip)
{
	const struct driver *d = NULL;
	for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
		if (!strcmp(drivers[i].tmpl, k->tmpl))
			d = &drivers[i];
	if (!d) {
		kernel_fail(k, "no driver for template %s: add one to tests/gpu/kernel_vs_twin.c", k->tmpl);
		return 1;
	}
	struct kctx x;
	memset(&x, 0, sizeof x);
	x.k = k;
	x.d = d;
	long bf = 0;
	if (kconst(k, "ACT_BF16") && kconst_int(k, "ACT_BF16", &bf)) {
		kernel_fail(k, "ACT_BF16 = %s", kconst(k, "ACT_BF16"));
		return 1;
	}
	x.bf = bf != 0;
	x.adt = x.bf ? DT_BF16 : DT_F32;
	x.inv = x.bf ? d->inv_bf16 : d->inv_f32;

	char sym[256], err[600];
	snprintf(sym, sizeof sym, "%s_cpu", k->name);
	x.twin = dlsym(RTLD_DEFAULT, sym);
	if (!x.twin) {
		kernel_fail(k, "the twin %s is not linked into this program (run.sh links BUILD_DIR's gen/cpu/*.c)", sym);
		return 1;
	}
	/* the driver's signature is the kernel's */
	struct params want;
	if (launch_h_params(launch_h, k->name, &x.par, err, sizeof err)) {
		kernel_fail(k, "%s", err);
		return 1;
	}
	if (parse_params(d->sig, strlen(d->sig), &want)) {
		kernel_fail(k, "driver signature of %s unreadable", d->tmpl);
		return 1;
	}
	char a[1200], b[1200];
	params_str(&x.par, a, sizeof a);
	params_str(&want, b, sizeof b);
	if (strcmp(a, b)) {
		kernel_fail(k, "the kernel's parameters changed; update its driver.\n    kernel: (%s)\n    driver: (%s)", a, b);
		return 1;
	}
	unsigned g3[3], b3[3];
	if (launch_eval(k, NULL, 1, g3, b3, &x.smem, err, sizeof err)) {
		kernel_fail(k, "%s", err);
		return 1;
	}
	if (!g_self) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", build, k->cubin);
		size_t size = 0;
		char *img = read_text(path, &size, err, sizeof err);
		if (!img) {
			kernel_fail(k, "%s", err);
			return 1;
		}
		g_images = realloc(g_images, (size_t)(g_nimages + 1) * sizeof *g_images);
		if (!g_images) {
			fprintf(stderr, "kernel_vs_twin: out of memory\n");
			exit(2);
		}
		g_images[g_nimages++] = img;
		if (moert_cuda_kernel(g_dev, img, size, k->name, x.smem, &x.fn, err, sizeof err)) {
			kernel_fail(k, "loading %s (dynamic smem %u): %s", path, x.smem, err);
			return 1;
		}
	}
	d->run(&x);
	*ncases += x.ncase;
	*nskip += x.nskip;
	return x.nfail;
}

/* moec's --arch for a compute capability */
static const char *arch_for_cc(int cc, char *buf, size_t cap)
{
	if (cc == 90 || cc == 100)
		snprintf(buf, cap, "sm_%da", cc);
	else
		snprintf(buf, cap, "sm_%d", cc);
	return buf;
}

/* can cubins built for `arch` (sm_XY or sm_XYa) run on a device of compute capability cc? */
static int arch_runs_on(const char *arch, int cc)
{
	int v = 0;
	if (strncmp(arch, "sm_", 3) || sscanf(arch + 3, "%d", &v) != 1)
		return 0;
	const int a = arch[strlen(arch) - 1] == 'a';
	if (a)
		return v == cc; /* arch-specific features: exactly that GPU */
	return v / 10 == cc / 10 && v <= cc; /* SASS: same major, no newer minor */
}

static int open_device(void)
{
	if (!moert_cuda_open) {
		printf("SKIP: this libmoert has no CUDA backend (runtime/device_cuda.c)\n");
		return 77;
	}
	char err[512];
	if (moert_cuda_open(0, &g_dev, err, sizeof err)) {
		printf("SKIP: no GPU: %s\n", err);
		return 77;
	}
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: kernel_vs_twin [--self-check] [-v] [--only SUBSTR] [--seed N] [--max-rows N] BUILD_DIR\n"
			"       kernel_vs_twin --probe\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *build = NULL, *only = NULL;
	int probe = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--self-check"))
			g_self = 1;
		else if (!strcmp(argv[i], "--probe"))
			probe = 1;
		else if (!strcmp(argv[i], "-v"))
			g_verbose = 1;
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			g_seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--max-rows") && i + 1 < argc) {
			char *end;
			errno = 0;
			g_max_rows = strtol(argv[++i], &end, 10);
			if (errno || *end || end == argv[i] || g_max_rows < 1 || g_max_rows > INT_MAX) {
				fprintf(stderr, "kernel_vs_twin: --max-rows wants a positive row count, not %s\n", argv[i]);
				return 2;
			}
		}		else if (argv[i][0] == '-' || build)
			return usage();
		else
			build = argv[i];
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	g_threads = ncpu < 1 ? 1 : ncpu > MAXTHREADS ? MAXTHREADS : (int)ncpu;
	if (g_max_rows) {
		/* big specs: keep freed memory in the heap for the next case's buffers of the same
		 * sizes, instead of a fresh mmap (its pages faulted in and zeroed again) per buffer */
		mallopt(M_MMAP_MAX, 0);
		mallopt(M_TRIM_THRESHOLD, -1); /* never */
	}
	if (probe) { /* run.sh: is there a GPU, and which --arch does it want? */
		int rc = open_device();
		if (rc)
			return rc;
		char buf[32];
		printf("%s\n", arch_for_cc(moert_cuda_cc(g_dev), buf, sizeof buf));
		moert_cuda_close(g_dev);
		return 0;
	}
	if (!build)
		return usage();

	char path[4096], err[600];
	struct manifest m;
	snprintf(path, sizeof path, "%s/manifest.json", build);
	if (manifest_load(path, &m, err, sizeof err)) {
		fprintf(stderr, "kernel_vs_twin: %s\n", err);
		return 2;
	}
	snprintf(path, sizeof path, "%s/gen/launch.h", build);
	char *launch_h = read_text(path, NULL, err, sizeof err);
	if (!launch_h) {
		fprintf(stderr, "kernel_vs_twin: %s\n", err);
		manifest_free(&m);
		return 2;
	}
	if (g_self) {
		printf("SELF-CHECK: the CPU twin on both sides (no GPU): drivers, sizes, launch lines, comparisons; then one "
		       "element of every output corrupted, which every case must catch\n");
	} else {
		int rc = open_device();
		if (rc) {
			free(launch_h);
			manifest_free(&m);
			return rc;
		}
		const int cc = moert_cuda_cc(g_dev);
		printf("device: %s\n", moert_cuda_describe(g_dev));
		if (!arch_runs_on(m.arch, cc)) {
			char buf[32];
			printf("FAIL: the cubins are %s, the device wants %s (moec build --arch %s)\n", m.arch,
			       arch_for_cc(cc, buf, sizeof buf), buf);
			moert_cuda_close(g_dev);
			free(launch_h);
			manifest_free(&m);
			return 1;
		}
	}
	printf("%s: %d kernels (%s), seed %" PRIu64, build, m.n, m.arch, g_seed);
	if (g_max_rows)
		printf(", --max-rows %ld: no case of more rows or tokens", g_max_rows);
	printf("\n");

	int failed = 0, nk = 0, ncases = 0, kfail = 0;
	for (int i = 0; i < m.n; i++) {
		if (only && !strstr(m.k[i].name, only))
			continue;
		nk++;
		const int f = test_kernel(&m.k[i], build, launch_h, &ncases, &g_nskip);
		failed += f;
		kfail += f != 0;
	}
	if (!nk) {
		printf("FAIL: no kernel matches\n");
		failed = 1;
	}
	printf("%s: %d kernels, %d cases, %d failed (%d kernels with failures)", failed ? "FAIL" : "PASS", nk, ncases, failed,
	       kfail);
	if (g_max_rows)
		printf("; %d case%s over --max-rows %ld not run", g_nskip, g_nskip == 1 ? "" : "s", g_max_rows);
	if (g_self)
		printf(" [self-check: twin vs twin; %d cases caught their corrupted outputs]", g_corruptions);
	printf("\n");
	if (g_dev)
		moert_cuda_close(g_dev);
	for (int i = 0; i < g_nimages; i++)
		free(g_images[i]);
	free(g_images);
	free(launch_h);
	manifest_free(&m);
	return failed ? 1 : 0;
}

/* kvt.h - what kernel_vs_twin's files share: the case model the drivers fill in, the API
 * they fill it with, and the driver table entry. kvt_core.c says how the program works and how
 * to add a kernel; kvt_<family>.c hold the drivers. */
#ifndef KVT_H
#define KVT_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
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
#include "moert.h" /* moert_adderr: appends to a fixed buffer, truncating */

/* The CUDA backend may be missing from libmoert (runtime/device_cuda.c not there yet, or a
 * libmoert built without it): weak references resolve to NULL then, and GPU mode reports
 * SKIP. Every file that includes this one marks them weak, so no object pulls them in.
 * run.sh forces the archive member in with -u when libmoert has it. */
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
#pragma weak moert_cuda_mark
#pragma weak moert_cuda_elapsed_ms

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

/* ---- the program's state (kvt_core.c) --------------------------------------------------- */
extern int g_self, g_verbose;  /* --self-check, -v */
extern int g_corruptions;      /* self-check: cases whose corrupted outputs the comparisons caught */
extern uint64_t g_seed;        /* --seed */
extern long g_max_rows;        /* --max-rows (0: none) */
extern int g_threads;          /* for big random fills */
extern int g_time, g_time_iters; /* --time: GPU timings, no twin; timed launches per case */
extern const char *g_time_case; /* --case: --time's cases whose shape has it (NULL: all) */
extern int g_topk, g_experts;  /* --time: routed experts per token (the build's K; rows = T K), of E */
void time_route(int E, int K, int T, int skewed, int *pick); /* kvt_case.c */
#define MAXTHREADS 16
extern struct moert_cuda *g_dev;

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t s);
char *xstrdup(const char *s);
char *read_text(const char *path, size_t *size, char *err, size_t errlen);
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline long ceil_div(long a, long b) { return (a + b - 1) / b; }

/* ---- random numbers: splitmix64, reseeded per case from (seed, kernel name, case) ------- */
/* The state is a counter (+GOLDEN per draw) and every draw a function of it, so the draw at
 * any position of a case's stream can be computed directly: tb_normal fills big buffers on
 * several threads with the very values one thread would draw. */
#define GOLDEN 0x9e3779b97f4a7c15ull
extern uint64_t g_rng; /* the case's stream: tc_new reseeds it */

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rnd_next(void) { return mix64(g_rng += GOLDEN); }

static inline double unif_of(uint64_t z) { return (double)(z >> 11) * (1.0 / 9007199254740992.0); }

static inline double rnd_unif(void) { return unif_of(rnd_next()); }

static inline int rnd_int(int n) { return n > 0 ? (int)(rnd_unif() * n) : 0; }

/* a standard normal from the two draws after state *s (Box-Muller) */
static inline double normal_at(uint64_t *s)
{
	double u = unif_of(mix64(*s += GOLDEN)), v = unif_of(mix64(*s += GOLDEN));
	if (u < 1e-300)
		u = 1e-300;
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static inline double rnd_normal(void) { return normal_at(&g_rng); }


static inline uint16_t f2bf(float f) { return float_to_bf16(f).bits; }

static inline float bf2f(uint16_t b)
{
	bf16 h = {b};
	return bf16_to_float(h);
}

/* ---- the manifest and gen/launch.h (kvt_manifest.c), the launch text (kvt_launch.c) -------- */
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

int manifest_load(const char *path, struct manifest *m, char *err, size_t errlen);
void manifest_free(struct manifest *m);
const char *kconst(const struct kinst *k, const char *key); /* the constant's text, NULL if none */
int kconst_int(const struct kinst *k, const char *key, long *out);

/* a parameter list: gen/launch.h's for a kernel, or a driver's sig */
#define MAXA 24

struct params {
	int n;
	char type[MAXA][48], name[MAXA][32];
};

int parse_params(const char *s, size_t n, struct params *p);
int launch_h_params(const char *text, const char *kname, struct params *p, char *err, size_t errlen);
void params_str(const struct params *p, char *out, size_t cap);

struct tcase;
int launch_eval(const struct kinst *k, const struct tcase *c, int only_smem, unsigned grid[3], unsigned block[3],
		unsigned *smem, char *err, size_t errlen);

/* ---- a test case: buffers, arguments, launch geometry (kvt_case.c) -------------------------- */
/* DT_*: element types; R_*: what the kernel does with a buffer (IN: read, must come back
 * unchanged; OUT: written, pre-filled with a NaN/0xa5 sentinel; INOUT: both; SCRATCH: its own,
 * compared only when a driver says so); C_*: how an output is compared. */
enum { DT_F32, DT_BF16, DT_I32, DT_U32, DT_F64, DT_I64, DT_PTR };
extern const size_t dt_size[]; /* bytes per element, by DT_* */
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
	double flops; /* --time: the case's floating-point operations (its TFLOP/s) */
	char note[64]; /* --time: printed after the timing (the routing's rows and load) */
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

/* The case API. A driver, per shape: tc_new (reseeds the random stream: case k of a kernel
 * draws the same inputs whatever else runs), buffers in the kernel's argument order or any
 * order (tb_*: they are indexed; fills draw from the stream in call order, so the order of
 * fills is part of what a case is), then the arguments in the kernel's order (ta_*), the
 * launch sizes (tv: the variables of the template's launch line; tg: the geometry the driver
 * expects, checked against that line) and run_case, which runs, compares, prints and frees. */
struct tcase *tc_new(struct kctx *x, const char *fmt, ...);
/* --time's case i of TIME_CASES (T = 4096 or 32768 tokens, balanced or skewed), made with its
 * shape; NULL when --case leaves it out */
#define TIME_CASES 4
struct tcase *tc_time(struct kctx *x, int i, int *T, int *skewed);
int over_max_rows(struct kctx *x, const char *what, long rows); /* 1: skip this case (printed) */
void sentinel(struct tbuf *b);
int tb_add(struct tcase *c, const char *name, int dt, size_t n, int role);
void tb_nmse(struct tcase *c, int i, double tol);
void tb_exact(struct tcase *c, int i);
int tb_ptrs(struct tcase *c, const char *name, const int *refs, int n);
float *tb_f32(struct tcase *c, int i);
int *tb_i32(struct tcase *c, int i);
long *tb_i64(struct tcase *c, int i);
void tb_set(struct tcase *c, int i, size_t j, double v);
double tb_get(const struct tcase *c, int i, size_t j); /* the value as the kernel sees it (bf16 rounded) */
void tb_normal(struct tcase *c, int i, double mean, double sd);
void tb_weights(struct tcase *c, int i, double mean, double sd);
/* shorthands for the common shapes: an input filled with normals; an output with its
 * comparison (tol: an NMSE tolerance class, or TOL_EXACT for bitwise) */
int tb_in(struct tcase *c, const char *name, int dt, size_t n, double mean, double sd);
int tb_out(struct tcase *c, const char *name, int dt, size_t n, double tol);
/* a buffer of n elements copied from src (made on the host: routings, offsets) */
int tb_copy(struct tcase *c, const char *name, int dt, size_t n, int role, const void *src);
void ta_buf(struct tcase *c, const char *name, int buf); /* buf < 0: NULL */
/* ta_buf for each ("name", buffer) pair, in order, up to a NULL name */
void ta_bufs(struct tcase *c, ...);
void ta_int(struct tcase *c, const char *name, int v);
void ta_long(struct tcase *c, const char *name, long v);
void ta_float(struct tcase *c, const char *name, float v);
void ta_double(struct tcase *c, const char *name, double v);
void tv(struct tcase *c, const char *name, long long v);
void tg(struct tcase *c, long gx, long gy, long bx);
void tc_free(struct tcase *c);
/* the common tail: the last argument `name` = n (int), which is also the launch line's
 * variable, geometry (gx, gy, bx), run */
int tc_run_n(struct kctx *x, struct tcase *c, const char *name, int n, long gx, long gy, long bx);

/* kvt_run.c: run the case on both sides, compare, print its line; frees it. 1: failed.
 * Under --time: the checks of the driver's arguments and geometry, then the GPU side alone,
 * timed (a warm-up launch, g_time_iters launches between CUDA events, the median printed with
 * c->flops as TFLOP/s) */
int run_case(struct kctx *x, struct tcase *c);
void dev_free(moert_dptr p);


/* ---- the drivers: one per template, in kvt_<family>.c; each mirrors its template's header
 * comment. Shapes: the runtime sizes 1, 37, 256, 1000 everywhere (rows, tokens, n), plus per
 * template the edge its geometry has: 0 where the launch line allows it (max(1, ...)), a size
 * past the capped grid's first sweep (grid-stride loops), unaligned pointers where the template
 * has a scalar fallback, in-place aliasing where documented, NULL where an argument may be NULL. */
/* sig: the template's parameter list as lint reads it (gen/launch.h must say the same) */
struct driver {
	const char *tmpl, *sig;
	void (*run)(struct kctx *);
	invoke_fn inv_f32, inv_bf16;
	int timed; /* the driver has --time cases (under g_time, run makes those instead) */
};

#define ACT(name) inv_##name##_float, inv_##name##_bf16
#define NOACT(name) inv_##name, inv_##name

/* each family's table, up to an entry with tmpl NULL; kvt_core.c lists the families */
extern const struct driver kvt_elementwise_drivers[], kvt_norm_drivers[], kvt_attention_drivers[],
	kvt_router_drivers[], kvt_dispatch_drivers[], kvt_gemm_drivers[], kvt_ce_drivers[], kvt_optim_drivers[];

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
#define INV_BOTH(M) M(float) M(bf16)

/* a constant of the instance the driver needs: a FAIL line (and the driver returns) without it */
int need(struct kctx *x, const char *name, long *v);
#define NEED(var, name)              \
	long var;                    \
	if (need(x, name, &var))     \
		return

static inline double act_tol(const struct kctx *x, double f32_tol) { return x->bf ? TOL_BF16 : f32_tol; }

#endif

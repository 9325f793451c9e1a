/* kvt_core.c - kernel_vs_twin: every CUDA kernel of a moec build against its CPU twin, by NMSE.
 *
 *   kernel_vs_twin [-v] [--only SUBSTR] [--seed N] [--max-rows N] BUILD_DIR   GPU: cubins against twins
 *   kernel_vs_twin --self-check [-v] [--only SUBSTR] [--max-rows N] BUILD_DIR   no GPU: twin against twin
 *   kernel_vs_twin --probe                                          print moec's --arch for GPU 0
 *   kernel_vs_twin --time [--only SUBSTR] [--case SUBSTR] [--iters N] BUILD_DIR
 *                                                                   GPU: time the expert GEMMs
 *
 * BUILD_DIR is a `moec build` output directory. For every kernel instance in
 * BUILD_DIR/manifest.json the program finds the driver of its template (one per
 * template in kernels/, in kvt_<family>.c), generates seeded random inputs from the instance's constants for
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
/* --time, for tuning the expert GEMMs (bench/gpu_session.sh part tune): no twin and no
 * comparison; the drivers that have timing cases (the six grouped GEMMs of kvt_gemm.c, and
 * moe_permute, moe_combine and their backward in kvt_dispatch.c) make those at real sizes
 * instead of their test shapes: T = 4096 and 32768 tokens, T x K rows
 * (K: the build's top-k), each routed "balanced" (per token, K distinct experts of the top-K of
 * E_LOCAL N(0,1) logits: a random-init router, rows per expert about multinomial) and "skewed"
 * (the same with +4 on the logits of experts 0..7, as bench/moe_gpu.sh's
 * MOERT_ROUTER_BIAS=0-7:4: those 8 experts then get most of the rows). Inputs are random (a 1M
 * block of draws repeated, kvt_case.c). Each case: a warm-up launch, then --iters launches
 * (default 20) between CUDA events; one line per kernel and case with the median ms and
 * TFLOP/s (2 x rows x the GEMM's two other dimensions; the copies: GB/s, every buffer read or
 * written once), the fastest launch, rows and max/mean load; --case SUBSTR keeps the cases whose shape has SUBSTR ("T=32768 balanced": one case per
 * kernel, as Nsight Compute wants). The argument and geometry checks still run; nothing
 * asserts a time. Exit 0, 1 when a
 * launch fails, 77 without a GPU. Device memory: up to about 3 GiB per case at T = 32768 for
 * Qwen3-30B-A3B's shapes. */
/* The files. kvt_core.c (this one): the command line, the loop over the manifest's kernels,
 * the driver lookup. kvt.h: what the others share, and the case API the drivers use.
 * kvt_case.c: that API (buffers, fills, arguments). kvt_run.c: one case on both sides, its
 * comparisons and its line. kvt_manifest.c, kvt_launch.c: manifest.json, gen/launch.h and the
 * launch text. The drivers, by family: kvt_elementwise.c (embedding, add, casts), kvt_norm.c,
 * kvt_attention.c (and rope), kvt_router.c, kvt_dispatch.c (moe_count .. moe_capacity,
 * permute/combine), kvt_gemm.c (the grouped expert GEMMs), kvt_ce.c, kvt_optim.c.
 *
 * How to add a kernel (a template kernels/NAME.cu and its twin kernels/cpu/NAME.c):
 *  1. Its family's file, or a new kvt_FAMILY.c (then: its table in kvt.h's extern list, in
 *     families[] below, and the file in CMakeLists.txt's kvt library).
 *  2. The invoker: calls the twin with a[i] pointing at argument i, through a cast to the
 *     twin's exact prototype: for an act_t template a macro INV_NAME(T) and INV_BOTH(INV_NAME)
 *     (float and bf16), otherwise a function inv_NAME.
 *  3. The driver, static void drv_NAME(struct kctx *x): NEED(var, "CONSTANT") for each
 *     constant of the instance it uses; then per shape (a table of shapes reads best):
 *         if (over_max_rows(x, "rows", rows))               cases of rows or tokens
 *             continue;
 *         struct tcase *c = tc_new(x, "rows=%d", rows);     the shape as printed
 *         int bx = tb_in(c, "x", x->adt, n, 0, 1);          inputs: normals, or tb_add + a fill
 *         int by = tb_out(c, "y", x->adt, n, act_tol(x, TOL_F32_RED));  outputs, tolerance class
 *         ta_bufs(c, "y", by, "x", bx, NULL);               the arguments in the kernel's order
 *         tc_run_n(x, c, "rows", rows, gx, gy, bx);         last int argument, geometry, run
 *     (or ta_int/ta_float/..., tv, tg, run_case when the tail differs). Every case draws
 *     from its own stream (seed, kernel, case number) in call order: the order of tb_* fills
 *     and of cases is part of what a case is; new cases go last.
 *  4. The table entry: {"NAME", "its parameter list as in gen/launch.h", drv_NAME,
 *     ACT(NAME) or NOACT(NAME)}. The program checks the list against gen/launch.h, and the
 *     driver's tg geometry against the template's launch line, for every case.
 *  5. ctest -R self_check (no GPU): the driver runs twin against twin under the build's
 *     sanitizers, and every case must catch its corrupted outputs.
 */
#include "kvt.h"

/* ---- small utilities ------------------------------------------------------------------- */
int g_self, g_verbose;
int g_corruptions; /* self-check: cases whose corrupted outputs the comparisons caught */
uint64_t g_seed = 20240611;
long g_max_rows; /* --max-rows (0: none) */
static int g_nskip; /* cases not run: over --max-rows */
int g_threads = 1;
int g_time, g_time_iters = 20;
const char *g_time_case;
int g_topk = 8, g_experts = 128;
struct moert_cuda *g_dev;

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "kernel_vs_twin: out of memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

void *xcalloc(size_t n, size_t s)
{
	void *p = calloc(n ? n : 1, s ? s : 1);
	if (!p) {
		fprintf(stderr, "kernel_vs_twin: out of memory (%zu x %zu bytes)\n", n, s);
		exit(2);
	}
	return p;
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

char *read_text(const char *path, size_t *size, char *err, size_t errlen)
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


/* ---- templates -> drivers: the families' tables ------------------------------------------ */
static const struct driver *const families[] = {kvt_elementwise_drivers, kvt_norm_drivers, kvt_attention_drivers,
						kvt_router_drivers, kvt_dispatch_drivers, kvt_gemm_drivers,
						kvt_ce_drivers, kvt_optim_drivers};

static const struct driver *find_driver(const char *tmpl)
{
	for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
		for (const struct driver *d = families[f]; d->tmpl; d++)
			if (!strcmp(d->tmpl, tmpl))
				return d;
	return NULL;
}
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
	const struct driver *d = find_driver(k->tmpl);
	if (!d) {
		kernel_fail(k, "no driver for template %s: add one to tests/gpu/kvt_*.c (kvt_core.c says how)", k->tmpl);
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
			"       kernel_vs_twin --time [--only SUBSTR] [--case SUBSTR] [--iters N] BUILD_DIR\n"
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
		else if (!strcmp(argv[i], "--time"))
			g_time = 1;
		else if (!strcmp(argv[i], "--case") && i + 1 < argc)
			g_time_case = argv[++i];
		else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
			char *end;
			const long n = strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || n < 1 || n > 1000) {
				fprintf(stderr, "kernel_vs_twin: --iters wants a count from 1 to 1000, not %s\n", argv[i]);
				return 2;
			}
			g_time_iters = (int)n;
		} else if (!strcmp(argv[i], "--probe"))
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
	if (g_time_case && !g_time) {
		fprintf(stderr, "kernel_vs_twin: --case selects --time's cases\n");
		return 2;
	}
	if (g_time && (g_self || g_max_rows)) {
		fprintf(stderr, "kernel_vs_twin: --time runs the GPU alone, at fixed sizes: not with --self-check or --max-rows\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	g_threads = ncpu < 1 ? 1 : ncpu > MAXTHREADS ? MAXTHREADS : (int)ncpu;
	if (g_max_rows || g_time) {
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
	if (g_time) /* a token's rows: its routed experts, of E, as the routing kernels' K and E say */
		for (int i = m.n - 1; i >= 0; i--) {
			long k;
			if (!kconst_int(&m.k[i], "K", &k) && k >= 1 && k <= 64)
				g_topk = (int)k;
			if (!kconst_int(&m.k[i], "E", &k) && k >= 1 && k <= 4096)
				g_experts = (int)k;
		}
	printf("%s: %d kernels (%s), seed %" PRIu64, build, m.n, m.arch, g_seed);
	if (g_time)
		printf(", --time: top-%d of %d experts, the median of %d launches after a warm-up, no twins", g_topk, g_experts,
		       g_time_iters);
	if (g_max_rows)
		printf(", --max-rows %ld: no case of more rows or tokens", g_max_rows);
	printf("\n");

	int failed = 0, nk = 0, ncases = 0, kfail = 0;
	for (int i = 0; i < m.n; i++) {
		if (only && !strstr(m.k[i].name, only))
			continue;
		if (g_time) { /* the kernels with timing cases; the others are not listed */
			const struct driver *d = find_driver(m.k[i].tmpl);
			if (!d || !d->timed)
				continue;
		}
		nk++;
		const int f = test_kernel(&m.k[i], build, launch_h, &ncases, &g_nskip);
		failed += f;
		kfail += f != 0;
	}
	if (!nk) {
		printf("FAIL: no kernel matches\n");
		failed = 1;
	}
	printf("%s: %d kernels, %d cases%s, %d failed (%d kernels with failures)", failed ? "FAIL" : "PASS", nk, ncases,
	       g_time ? " timed" : "", failed, kfail);
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

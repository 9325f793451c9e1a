/* device_smoke.c - runtime/device_cuda.c on a real GPU (ctest gpu/device_smoke, label gpu).
 *
 * Exits 77 (ctest: skipped) with "SKIP: no CUDA driver/device" where moert_cuda_open finds
 * no driver or no device. On a GPU: memory round trips and fills; moert_cuda_mm for the
 * three ops in fp32, bf16 -> fp32 and bf16 -> bf16 on odd shapes, beta 0 and 1, against a
 * triple loop in double, with a misaligned operand and K = 0; two kernels of one cubin
 * (compiled here with NVRTC for this GPU) sharing a module, one with more than 48 KiB of
 * dynamic shared memory; events; and the error paths (bad images, unknown kernel, too much
 * shared memory, bad event slots) each failing with a message and leaving the device usable.
 */
#include <nvrtc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_cuda.h"
#include "device_cuda_internal.h"
#include "testing.h"

static char err[2048];

#define CHECK_OK(call)                                                                   \
	do {                                                                             \
		err[0] = 0;                                                              \
		int rc_ = (call);                                                        \
		if (rc_)                                                                 \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, err); \
		EXPECT_INT(rc_, 0);                                                      \
	} while (0)

/* ---- memory ---- */

static void test_memory(struct moert_cuda *d)
{
	const size_t n = 1 << 20;
	unsigned char *src = malloc(n), *dst = malloc(n);
	for (size_t i = 0; i < n; i++)
		src[i] = (unsigned char)(i * 131 + 7);
	moert_dptr p = 0;
	CHECK_OK(moert_cuda_alloc(d, n, &p, err, sizeof err));
	CHECK_OK(moert_cuda_h2d(d, p, src, n, err, sizeof err));
	memset(dst, 0, n);
	CHECK_OK(moert_cuda_d2h(d, dst, p, n, err, sizeof err));
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));
	EXPECT(!memcmp(src, dst, n));

	CHECK_OK(moert_cuda_memset(d, p + 1000, 0xab, 4000, err, sizeof err));
	CHECK_OK(moert_cuda_d2h(d, dst, p, n, err, sizeof err));
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));
	int bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += dst[i] != (i >= 1000 && i < 5000 ? 0xab : src[i]);
	EXPECT_INT(bad, 0);
	moert_cuda_free(d, p);

	/* a petabyte: fails with the size and the driver's reason, and nothing breaks */
	moert_dptr huge = 1;
	EXPECT_INT(moert_cuda_alloc(d, (size_t)1 << 50, &huge, err, sizeof err), -1);
	EXPECT(huge == 0);
	EXPECT(strstr(err, "cuMemAlloc(1024 TiB") != NULL);
	EXPECT(strstr(err, ": CUDA_ERROR_") != NULL); /* OUT_OF_MEMORY, as drivers answer today */
	printf("expected failure: %s\n", err);
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));
	free(src);
	free(dst);
}

/* ---- GEMMs ---- */

static uint64_t rng = 0x243f6a8885a308d3ull;
static float rnd(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(rng >> 11) / (double)(1ull << 53) - 0.5) * 2.0f;
}

/* Round to nearest even, as the GPU converts. */
static uint16_t to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

struct mm_case {
	enum moert_mm_op op;
	int M, N, K;
	int ab_bf16, c_bf16;
	float beta;
	size_t a_offset; /* bytes added to A's address: a misaligned operand */
};

/* Host operands, rounded to bf16 where the device sees bf16, so the reference multiplies
 * exactly what the GPU multiplies. */
struct mm_host {
	float *A, *B, *C0;
	void *a_dev_fmt, *b_dev_fmt, *c_dev_fmt; /* as uploaded */
};

static void *pack(const float *x, size_t n, int bf16)
{
	if (!bf16) {
		float *p = malloc(n * 4);
		memcpy(p, x, n * 4);
		return p;
	}
	uint16_t *h = malloc(n * 2);
	for (size_t i = 0; i < n; i++)
		h[i] = to_bf16(x[i]);
	return h;
}

static void make_host(const struct mm_case *c, struct mm_host *h)
{
	size_t na = (size_t)c->M * c->K, nb = (size_t)c->N * c->K, nc = (size_t)c->M * c->N;
	h->A = malloc(na * 4), h->B = malloc(nb * 4), h->C0 = malloc(nc * 4);
	for (size_t i = 0; i < na; i++)
		h->A[i] = c->ab_bf16 ? from_bf16(to_bf16(rnd())) : rnd();
	for (size_t i = 0; i < nb; i++)
		h->B[i] = c->ab_bf16 ? from_bf16(to_bf16(rnd())) : rnd();
	for (size_t i = 0; i < nc; i++)
		h->C0[i] = c->c_bf16 ? from_bf16(to_bf16(rnd())) : rnd();
	h->a_dev_fmt = pack(h->A, na, c->ab_bf16);
	h->b_dev_fmt = pack(h->B, nb, c->ab_bf16);
	h->c_dev_fmt = pack(h->C0, nc, c->c_bf16);
}

static void free_host(struct mm_host *h)
{
	free(h->A), free(h->B), free(h->C0), free(h->a_dev_fmt), free(h->b_dev_fmt), free(h->c_dev_fmt);
}

/* gemm.h's conventions: NT A[M,K] B[N,K]; NN A[M,K] B[K,N]; TN A[K,M] B[K,N]. */
static double at_a(const struct mm_case *c, const float *A, int i, int p)
{
	return c->op == MOERT_MM_TN ? A[(size_t)p * c->M + i] : A[(size_t)i * c->K + p];
}

static double at_b(const struct mm_case *c, const float *B, int p, int j)
{
	return c->op == MOERT_MM_NT ? B[(size_t)j * c->K + p] : B[(size_t)p * c->N + j];
}

/* Tolerance: fp32 accumulation error stays well under 5e-6 of sum |a b| at these K (about
 * 1e-7 typical); TF32 rounding of the inputs would be 2^-11 / sqrt(K) of it (3e-5 to 6e-5
 * here, more at the worst element), so this also proves no TF32 was used. A bf16 C adds its own rounding, half an ulp: at most 2^-8 of |C|, so
 * 2^-7 leaves room for the accumulation's. */
static int check_result(const struct mm_case *c, const struct mm_host *h, const void *got_raw)
{
	int bad = 0;
	for (int i = 0; i < c->M; i++)
		for (int j = 0; j < c->N; j++) {
			double ref = 0, mag = 0;
			for (int p = 0; p < c->K; p++) {
				double t = at_a(c, h->A, i, p) * at_b(c, h->B, p, j);
				ref += t;
				mag += t < 0 ? -t : t;
			}
			double c0 = h->C0[(size_t)i * c->N + j];
			ref += c->beta * c0;
			mag += c->beta * (c0 < 0 ? -c0 : c0);
			size_t at = (size_t)i * c->N + j;
			double got = c->c_bf16 ? from_bf16(((const uint16_t *)got_raw)[at]) : ((const float *)got_raw)[at];
			/* A bf16 C may be rounded twice with beta 1: cuBLASLt can round A.B to bf16 before
			 * adding C (seen on H100: 2-3 ulps of the result where A.B and C nearly cancel),
			 * so the bf16 bound is relative to the two terms, not to their sum. */
			double ab = ref - c->beta * c0, terms = (ab < 0 ? -ab : ab) + c->beta * (c0 < 0 ? -c0 : c0);
			double tol = 5e-6 * mag + 1e-30 + (c->c_bf16 ? (1.0 / 128) * terms : 0);
			double diff = got - ref;
			if (diff < -tol || diff > tol) {
				if (bad++ < 3)
					fprintf(stderr, "  C[%d,%d] = %.9g, want %.9g (tolerance %.3g)\n", i, j, got, ref,
						tol);
			}
		}
	return bad;
}

static void run_mm(struct moert_cuda *d, const struct mm_case *c)
{
	struct mm_host h;
	make_host(c, &h);
	size_t es_ab = c->ab_bf16 ? 2 : 4, es_c = c->c_bf16 ? 2 : 4;
	size_t na = (size_t)c->M * c->K * es_ab, nb = (size_t)c->N * c->K * es_ab, nc = (size_t)c->M * c->N * es_c;
	moert_dptr A, B, C;
	CHECK_OK(moert_cuda_alloc(d, na + c->a_offset, &A, err, sizeof err));
	CHECK_OK(moert_cuda_alloc(d, nb, &B, err, sizeof err));
	CHECK_OK(moert_cuda_alloc(d, nc, &C, err, sizeof err));
	CHECK_OK(moert_cuda_h2d(d, A + c->a_offset, h.a_dev_fmt, na, err, sizeof err));
	CHECK_OK(moert_cuda_h2d(d, B, h.b_dev_fmt, nb, err, sizeof err));
	void *got = malloc(nc ? nc : 1);
	/* twice: the second call reuses the cached algorithm */
	for (int rep = 0; rep < 2; rep++) {
		int cached = moert_cuda_mm_cache_count(d);
		CHECK_OK(moert_cuda_h2d(d, C, h.c_dev_fmt, nc, err, sizeof err));
		CHECK_OK(moert_cuda_mm(d, c->op, c->M, c->N, c->K, A + c->a_offset, B, C, c->beta, c->ab_bf16,
				       c->c_bf16, err, sizeof err));
		CHECK_OK(moert_cuda_d2h(d, got, C, nc, err, sizeof err));
		CHECK_OK(moert_cuda_sync(d, err, sizeof err));
		int bad = check_result(c, &h, got);
		if (bad)
			fprintf(stderr, "mm %s M=%d N=%d K=%d ab_bf16=%d c_bf16=%d beta=%g a+%zu: %d wrong\n",
				moert_mm_op_name(c->op), c->M, c->N, c->K, c->ab_bf16, c->c_bf16, (double)c->beta,
				c->a_offset, bad);
		EXPECT_INT(bad, 0);
		if (rep == 1)
			EXPECT_INT(moert_cuda_mm_cache_count(d), cached);
	}
	free(got);
	moert_cuda_free(d, A);
	moert_cuda_free(d, B);
	moert_cuda_free(d, C);
	free_host(&h);
}

static void test_mm(struct moert_cuda *d)
{
	static const int shapes[][3] = {{64, 96, 128}, {1, 7, 300}, {257, 33, 65}};
	static const int types[][2] = {{0, 0}, {1, 0}, {1, 1}};
	CHECK_OK(moert_cuda_mm_init(d, err, sizeof err));
	CHECK_OK(moert_cuda_mm_init(d, err, sizeof err)); /* idempotent */
	for (int op = MOERT_MM_NT; op <= MOERT_MM_TN; op++)
		for (size_t s = 0; s < 3; s++)
			for (size_t t = 0; t < 3; t++)
				for (int beta = 0; beta <= 1; beta++) {
					struct mm_case c = {(enum moert_mm_op)op, shapes[s][0], shapes[s][1], shapes[s][2],
							    types[t][0], types[t][1], (float)beta, 0};
					run_mm(d, &c);
				}
	/* 3 ops x 3 shapes x 3 types x 2 betas, each built once */
	EXPECT_INT(moert_cuda_mm_cache_count(d), 54);

	/* an fp32 operand 4 bytes off a 256-byte boundary: its own cache entry and algorithm */
	struct mm_case mis = {MOERT_MM_NT, 1, 7, 300, 0, 0, 1.0f, 4};
	run_mm(d, &mis);
	mis = (struct mm_case){MOERT_MM_TN, 33, 17, 9, 0, 0, 1.0f, 4};
	run_mm(d, &mis);
	EXPECT_INT(moert_cuda_mm_cache_count(d), 56);

	/* K = 0: beta 0 clears C, beta 1 leaves it */
	moert_dptr C;
	float host[12], back[12];
	for (int i = 0; i < 12; i++)
		host[i] = (float)i + 1;
	CHECK_OK(moert_cuda_alloc(d, sizeof host, &C, err, sizeof err));
	CHECK_OK(moert_cuda_h2d(d, C, host, sizeof host, err, sizeof err));
	CHECK_OK(moert_cuda_mm(d, MOERT_MM_NN, 3, 4, 0, 0, 0, C, 1.0f, 0, 0, err, sizeof err));
	CHECK_OK(moert_cuda_d2h(d, back, C, sizeof back, err, sizeof err));
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));
	EXPECT(!memcmp(host, back, sizeof host));
	CHECK_OK(moert_cuda_mm(d, MOERT_MM_NN, 3, 4, 0, 0, 0, C, 0.0f, 0, 0, err, sizeof err));
	CHECK_OK(moert_cuda_d2h(d, back, C, sizeof back, err, sizeof err));
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));
	int nonzero = 0;
	for (int i = 0; i < 12; i++)
		nonzero += back[i] != 0.0f;
	EXPECT_INT(nonzero, 0);
	moert_cuda_free(d, C);
}

/* ---- kernels ---- */

static const char kernel_src[] =
	"extern \"C\" __global__ void reverse_smem(float *out, int n)\n"
	"{\n"
	"\textern __shared__ float buf[];\n"
	"\tfor (int i = threadIdx.x; i < n; i += blockDim.x)\n"
	"\t\tbuf[i] = 2.0f * (float)i;\n"
	"\t__syncthreads();\n"
	"\tfor (int i = threadIdx.x; i < n; i += blockDim.x)\n"
	"\t\tout[i] = buf[n - 1 - i];\n"
	"}\n"
	"extern \"C\" __global__ void add_one(float *x, int n)\n"
	"{\n"
	"\tint i = blockIdx.x * blockDim.x + threadIdx.x;\n"
	"\tif (i < n)\n"
	"\t\tx[i] += 1.0f;\n"
	"}\n";

/* A cubin for this GPU, as moec build makes them (NVRTC, a real sm_XY target). */
static char *compile_cubin(int cc, size_t *size)
{
	nvrtcProgram prog;
	char arch[64];
	snprintf(arch, sizeof arch, "--gpu-architecture=sm_%d", cc);
	const char *opts[] = {arch};
	if (nvrtcCreateProgram(&prog, kernel_src, "device_smoke.cu", 0, NULL, NULL) != NVRTC_SUCCESS)
		return NULL;
	nvrtcResult rc = nvrtcCompileProgram(prog, 1, opts);
	char *cubin = NULL;
	if (rc != NVRTC_SUCCESS) {
		size_t n = 0;
		nvrtcGetProgramLogSize(prog, &n);
		char *log = malloc(n + 1);
		if (log && nvrtcGetProgramLog(prog, log) == NVRTC_SUCCESS)
			fprintf(stderr, "NVRTC (%s): %s\n%s\n", arch, nvrtcGetErrorString(rc), log);
		free(log);
	} else if (nvrtcGetCUBINSize(prog, size) == NVRTC_SUCCESS && (cubin = malloc(*size)) &&
		   nvrtcGetCUBIN(prog, cubin) != NVRTC_SUCCESS) {
		free(cubin);
		cubin = NULL;
	}
	nvrtcDestroyProgram(&prog);
	return cubin;
}

/* cubin is kept until moert_cuda_close, as device_cuda.h asks. */
static void test_kernels(struct moert_cuda *d, const char *cubin, size_t size)
{
	EXPECT(cubin != NULL);
	if (!cubin)
		return;
	EXPECT_INT(moert_cuda_image_kind(cubin, size), MOERT_IMAGE_CUBIN);
	int mods = moert_cuda_module_count(d);

	/* 96 KiB of dynamic shared memory: only works if the limit was raised */
	const unsigned smem = 96 * 1024;
	int n = (int)(smem / sizeof(float));
	moert_cuda_fn rev = NULL, add = NULL;
	CHECK_OK(moert_cuda_kernel(d, cubin, size, "reverse_smem", smem, &rev, err, sizeof err));
	CHECK_OK(moert_cuda_kernel(d, cubin, size, "add_one", 0, &add, err, sizeof err));
	EXPECT_INT(moert_cuda_module_count(d), mods + 1); /* one module for both */
	if (!rev || !add)
		return;
	moert_dptr out;
	CHECK_OK(moert_cuda_alloc(d, (size_t)n * sizeof(float), &out, err, sizeof err));
	void *args[] = {&out, &n};
	const unsigned one[3] = {1, 1, 1}, block[3] = {256, 1, 1}, grid[3] = {(unsigned)(n + 255) / 256, 1, 1};
	CHECK_OK(moert_cuda_mark(d, 0, err, sizeof err));
	CHECK_OK(moert_cuda_launch(d, rev, one, block, smem, args, err, sizeof err));
	CHECK_OK(moert_cuda_launch(d, add, grid, block, 0, args, err, sizeof err));
	CHECK_OK(moert_cuda_mark(d, 1, err, sizeof err));
	float *host = malloc((size_t)n * sizeof(float));
	CHECK_OK(moert_cuda_d2h(d, host, out, (size_t)n * sizeof(float), err, sizeof err));
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));
	int bad = 0;
	for (int i = 0; i < n; i++)
		bad += host[i] != 2.0f * (float)(n - 1 - i) + 1.0f;
	EXPECT_INT(bad, 0);
	float ms = -1;
	CHECK_OK(moert_cuda_elapsed_ms(d, 0, 1, &ms, err, sizeof err));
	EXPECT(ms >= 0.0f && ms < 10000.0f);
	printf("two launches: %.3f ms\n", (double)ms);

	/* more dynamic shared memory than any GPU has: refused up front, by name */
	moert_cuda_fn f = NULL;
	EXPECT_INT(moert_cuda_kernel(d, cubin, size, "reverse_smem", 1u << 24, &f, err, sizeof err), -1);
	EXPECT(strstr(err, "reverse_smem") && strstr(err, "shared memory"));
	printf("expected failure: %s\n", err);
	/* a launch asking for more than was raised fails, naming the kernel; not sticky */
	EXPECT_INT(moert_cuda_launch(d, rev, one, block, 1u << 20, args, err, sizeof err), -1);
	EXPECT(strstr(err, "cuLaunchKernel(reverse_smem") != NULL);
	printf("expected failure: %s\n", err);
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));

	moert_cuda_free(d, out);
	free(host);
}

static void test_errors(struct moert_cuda *d, const char *cubin, size_t size)
{
	moert_cuda_fn f = (moert_cuda_fn)1;
	static const unsigned char junk[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06};
	EXPECT_INT(moert_cuda_kernel(d, junk, sizeof junk, "k", 0, &f, err, sizeof err), -1);
	EXPECT(f == NULL);
	EXPECT(strstr(err, "kernel k: the image (6 bytes) is not a cubin") != NULL);

	/* text the driver takes for PTX and rejects */
	static const char not_ptx[] = "this is not PTX\n";
	EXPECT_INT(moert_cuda_kernel(d, not_ptx, sizeof not_ptx, "k", 0, &f, err, sizeof err), -1);
	EXPECT(strstr(err, "cuModuleLoadData") != NULL);
	printf("expected failure: %s\n", err);

	if (cubin) {
		EXPECT_INT(moert_cuda_kernel(d, cubin, size, "no_such_kernel", 0, &f, err, sizeof err), -1);
		EXPECT(strstr(err, "not in its cubin") != NULL);
		printf("expected failure: %s\n", err);
	}

	float ms;
	EXPECT_INT(moert_cuda_mark(d, 8, err, sizeof err), -1);
	EXPECT_INT(moert_cuda_mark(d, -1, err, sizeof err), -1);
	EXPECT_INT(moert_cuda_elapsed_ms(d, 0, 5, &ms, err, sizeof err), -1);
	EXPECT(strstr(err, "slot 5 was never marked") != NULL);

	/* after all that, the device still works */
	moert_dptr p;
	int v = 42, back = 0;
	CHECK_OK(moert_cuda_alloc(d, sizeof v, &p, err, sizeof err));
	CHECK_OK(moert_cuda_h2d(d, p, &v, sizeof v, err, sizeof err));
	CHECK_OK(moert_cuda_d2h(d, &back, p, sizeof back, err, sizeof err));
	CHECK_OK(moert_cuda_sync(d, err, sizeof err));
	EXPECT_INT(back, 42);
	moert_cuda_free(d, p);
}

int main(void)
{
	struct moert_cuda *d = NULL;
	if (moert_cuda_open(0, &d, err, sizeof err)) {
		if (strstr(err, "no CUDA driver") || strstr(err, "no CUDA device")) {
			printf("SKIP: no CUDA driver/device (%s)\n", err);
			return 77;
		}
		fprintf(stderr, "moert_cuda_open: %s\n", err);
		return 1;
	}
	printf("device: %s\n", moert_cuda_describe(d));
	test_memory(d);
	test_mm(d);
	size_t size = 0;
	char *cubin = compile_cubin(moert_cuda_cc(d), &size);
	test_kernels(d, cubin, size);
	test_errors(d, cubin, size);
	moert_cuda_close(d);
	free(cubin);
	return testing_report();
}

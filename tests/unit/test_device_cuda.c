/* test_device_cuda.c - runtime/device_cuda.c without a GPU: moert_cuda_open fails cleanly
 * where there is no driver (and works where there is one), the driver symbols resolve in
 * the toolkit's stub libcuda.so, cuBLASLt accepts every descriptor moert_cuda_mm builds,
 * and the host-only helpers: the row-major to column-major GEMM mapping (checked by
 * running the mapped problem the way cuBLASLt defines it), pointer alignment, the
 * algorithm cache's table, image sniffing and messages. tests/device/ runs it on a GPU. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device_cuda.h"
#include "device_cuda_internal.h"
#include "testing.h"

/* ---- open ---- */

/* Returns whether a real driver is present (the stub tests must not run then: the stub's
 * soname is libcuda.so.1 too, and a process that loaded it first would get it back). */
static int test_open(void)
{
	void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	struct moert_cuda *d = (struct moert_cuda *)1;
	char err[1024] = "";
	int rc = moert_cuda_open(0, &d, err, sizeof err);
	if (!drv) {
		EXPECT_INT(rc, -1);
		EXPECT(d == NULL);
		EXPECT(strstr(err, "no CUDA driver") != NULL);
		EXPECT(strstr(err, "libcuda.so.1") != NULL);
		EXPECT(strstr(err, "--device cpu") != NULL);
		printf("no driver here, as expected: %s\n", err);
		return 0;
	}
	if (rc) {
		/* a driver without a usable GPU (a container without one passed in) */
		printf("driver present, open failed: %s\n", err);
		EXPECT(strstr(err, "no CUDA device") != NULL);
		EXPECT(d == NULL);
		return 1;
	}
	printf("device: %s\n", moert_cuda_describe(d));
	EXPECT(strlen(moert_cuda_describe(d)) > 0);
	EXPECT(strstr(moert_cuda_describe(d), ", sm_") != NULL);
	EXPECT(moert_cuda_cc(d) >= 50);
	EXPECT(moert_cuda_launch_kernel_fn(d) != NULL);
	EXPECT(moert_cuda_stream(d) != NULL);
	moert_cuda_close(d);
	return 1;
}

/* The toolkit's stub: every entry point is there, and cuInit says it is a stub. */
static const char *stub_path(char *buf, size_t n)
{
	const char *home = getenv("CUDA_HOME");
	snprintf(buf, n, "%s/lib64/stubs/libcuda.so", home && *home ? home : "/usr/local/cuda");
	if (access(buf, R_OK))
		snprintf(buf, n, "/usr/local/cuda/lib64/stubs/libcuda.so");
	return access(buf, R_OK) ? NULL : buf;
}

static void test_stub_driver(void)
{
	char path[512], err[1024] = "";
	if (!stub_path(path, sizeof path)) {
		printf("SKIP stub driver tests: no stubs/libcuda.so\n");
		return;
	}
	int n = 0;
	while (moert_cuda_driver_symbol(n))
		n++;
	EXPECT_INT(moert_cuda_check_driver_symbols(path, err, sizeof err), n);
	if (err[0])
		printf("%s\n", err);
	struct moert_cuda *d = (struct moert_cuda *)1;
	err[0] = 0;
	EXPECT_INT(moert_cuda_open_lib(path, 0, &d, err, sizeof err), -1);
	EXPECT(d == NULL);
	EXPECT(strstr(err, "no CUDA driver") != NULL);
	EXPECT(strstr(err, "stub library") != NULL);
	printf("stub: %s\n", err);
}

static void test_missing_driver(void)
{
	char err[1024] = "";
	struct moert_cuda *d = (struct moert_cuda *)1;
	EXPECT_INT(moert_cuda_open_lib("/nonexistent/libcuda.so.1", 0, &d, err, sizeof err), -1);
	EXPECT(d == NULL);
	EXPECT(strstr(err, "no CUDA driver: dlopen /nonexistent/libcuda.so.1 failed (") != NULL);
	EXPECT_INT(moert_cuda_check_driver_symbols("/nonexistent/libcuda.so.1", err, sizeof err), -1);
	/* errors never overflow a small buffer, nor need one */
	char tiny[8];
	EXPECT_INT(moert_cuda_open_lib("/nonexistent/libcuda.so.1", 0, &d, tiny, sizeof tiny), -1);
	EXPECT_INT((int)strlen(tiny), 7);
	EXPECT_INT(moert_cuda_open_lib("/nonexistent/libcuda.so.1", 0, &d, NULL, 0), -1);
}

/* The names dlsym'd are the ones cuda.h maps the API to, never a per-thread variant. */
static void test_symbol_names(void)
{
	static const char *want[] = {"cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
				     "cuDeviceTotalMem_v2", "cuStreamDestroy_v2", "cuEventDestroy_v2",
				     "cuDevicePrimaryCtxRelease_v2", "cuEventElapsedTime_v2", "cuMemsetD8Async",
				     "cuLaunchKernel", "cuStreamSynchronize", "cuModuleLoadData", "cuInit"};
	for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
		int found = 0;
		for (int i = 0; moert_cuda_driver_symbol(i); i++)
			found |= !strcmp(moert_cuda_driver_symbol(i), want[w]);
		if (!found)
			fprintf(stderr, "driver symbol %s not resolved\n", want[w]);
		EXPECT(found);
	}
	for (int i = 0; moert_cuda_driver_symbol(i); i++) {
		EXPECT(strstr(moert_cuda_driver_symbol(i), "_ptsz") == NULL);
		EXPECT(strstr(moert_cuda_driver_symbol(i), "_ptds") == NULL);
	}
}

/* ---- cuBLASLt descriptors, host only ---- */

static void test_cublaslt(void)
{
	char err[1024] = "", path[512];
	const char *home = getenv("CUDA_HOME");
	snprintf(path, sizeof path, "%s/lib64/libcublasLt.so.13", home && *home ? home : "/usr/local/cuda");
	if (access(path, R_OK))
		snprintf(path, sizeof path, "/usr/local/cuda/lib64/libcublasLt.so.13");
	if (access(path, R_OK)) {
		printf("SKIP cuBLASLt descriptor test: no libcublasLt.so.13\n");
	} else {
		int rc = moert_cuda_cublaslt_selftest(path, err, sizeof err);
		if (rc)
			fprintf(stderr, "cuBLASLt selftest: %s\n", err);
		EXPECT_INT(rc, 0);
		/* the default search finds it too (the toolkit's lib64 is on its list) */
		EXPECT_INT(moert_cuda_cublaslt_selftest(NULL, err, sizeof err), 0);
	}
	EXPECT_INT(moert_cuda_cublaslt_selftest("/nonexistent/libcublasLt.so.13", err, sizeof err), -1);
	EXPECT(strstr(err, "cuBLASLt not found: dlopen /nonexistent/libcublasLt.so.13 failed") != NULL);
}

/* ---- the GEMM mapping ---- */

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static double rnd(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) / (double)(1ull << 53) - 0.5;
}

/* op(A)[i,p] of the caller's row-major A, per gemm.h */
static double caller_a(enum moert_mm_op op, const double *A, int M, int K, int i, int p)
{
	return op == MOERT_MM_TN ? A[(size_t)p * M + i] : A[(size_t)i * K + p];
}

static double caller_b(enum moert_mm_op op, const double *B, int N, int K, int p, int j)
{
	return op == MOERT_MM_NT ? B[(size_t)j * K + p] : B[(size_t)p * N + j];
}

/* cuBLASLt's definition, column-major: D[r + c ldc] = sum_p opA(r,p) opB(p,c), with
 * opA(r,p) = transa ? LtA[p + r lda] : LtA[r + p lda], likewise B. */
static double lt_element(const struct moert_mm_map *mp, const double *lta, const double *ltb, uint64_t r, uint64_t c)
{
	double s = 0;
	for (uint64_t p = 0; p < mp->k; p++) {
		double a = mp->transa ? lta[p + r * mp->lda] : lta[r + p * mp->lda];
		double b = mp->transb ? ltb[c + p * mp->ldb] : ltb[p + c * mp->ldb];
		s += b * a;
	}
	return s;
}

static void check_layouts(const struct moert_mm_map *mp)
{
	/* stored dims agree with the transposes and the problem; ld covers a column */
	EXPECT(mp->transa ? mp->a_rows == mp->k && mp->a_cols == mp->m : mp->a_rows == mp->m && mp->a_cols == mp->k);
	EXPECT(mp->transb ? mp->b_rows == mp->n && mp->b_cols == mp->k : mp->b_rows == mp->k && mp->b_cols == mp->n);
	EXPECT(mp->c_rows == mp->m && mp->c_cols == mp->n);
	EXPECT(mp->lda >= 1 && (uint64_t)mp->lda >= mp->a_rows);
	EXPECT(mp->ldb >= 1 && (uint64_t)mp->ldb >= mp->b_rows);
	EXPECT(mp->ldc >= 1 && (uint64_t)mp->ldc >= mp->c_rows);
}

/* The mapped column-major problem, run on the caller's row-major buffers as they are
 * (cuBLASLt's A is the caller's B, its B the caller's A), equals gemm.h's product in the
 * caller's row-major C. Same products, same order: equal exactly. */
static void check_map(enum moert_mm_op op, int M, int N, int K)
{
	struct moert_mm_map mp;
	EXPECT_INT(moert_mm_map(op, M, N, K, &mp), 0);
	check_layouts(&mp);
	EXPECT_INT((long long)mp.m, N);
	EXPECT_INT((long long)mp.n, M);
	EXPECT_INT((long long)mp.k, K);
	EXPECT_INT(mp.ldc, N);
	double *A = malloc(sizeof(double) * (size_t)M * K), *B = malloc(sizeof(double) * (size_t)N * K);
	for (size_t i = 0; i < (size_t)M * K; i++)
		A[i] = rnd();
	for (size_t i = 0; i < (size_t)N * K; i++)
		B[i] = rnd();
	int bad = 0;
	for (int i = 0; i < M && !bad; i++)
		for (int j = 0; j < N && !bad; j++) {
			double ref = 0;
			for (int p = 0; p < K; p++)
				ref += caller_a(op, A, M, K, i, p) * caller_b(op, B, N, K, p, j);
			/* caller C[i,j] (row-major, ld N) is column-major element (j, i) with ldc = N */
			double got = lt_element(&mp, B, A, (uint64_t)j, (uint64_t)i);
			if (got != ref) {
				fprintf(stderr, "%s %dx%dx%d: C[%d,%d] = %g, want %g\n", moert_mm_op_name(op), M, N, K, i, j,
					got, ref);
				bad = 1;
			}
		}
	EXPECT(!bad);
	free(A);
	free(B);
}

static void test_mm_map(void)
{
	static const int shapes[][3] = {{1, 1, 1}, {2, 3, 4}, {5, 1, 3}, {1, 7, 300}, {64, 96, 128}, {257, 33, 65}};
	for (int op = MOERT_MM_NT; op <= MOERT_MM_TN; op++)
		for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
			check_map((enum moert_mm_op)op, shapes[s][0], shapes[s][1], shapes[s][2]);

	/* the table in device_cuda_internal.h, literally */
	struct moert_mm_map mp;
	moert_mm_map(MOERT_MM_NT, 10, 20, 30, &mp);
	EXPECT(mp.transa == 1 && mp.transb == 0 && mp.a_rows == 30 && mp.a_cols == 20 && mp.lda == 30);
	EXPECT(mp.b_rows == 30 && mp.b_cols == 10 && mp.ldb == 30 && mp.c_rows == 20 && mp.c_cols == 10);
	moert_mm_map(MOERT_MM_NN, 10, 20, 30, &mp);
	EXPECT(mp.transa == 0 && mp.transb == 0 && mp.a_rows == 20 && mp.a_cols == 30 && mp.lda == 20);
	EXPECT(mp.b_rows == 30 && mp.b_cols == 10 && mp.ldb == 30);
	moert_mm_map(MOERT_MM_TN, 10, 20, 30, &mp);
	EXPECT(mp.transa == 0 && mp.transb == 1 && mp.a_rows == 20 && mp.a_cols == 30 && mp.lda == 20);
	EXPECT(mp.b_rows == 10 && mp.b_cols == 30 && mp.ldb == 10);

	EXPECT_INT(moert_mm_map((enum moert_mm_op)7, 1, 1, 1, &mp), -1);
	EXPECT_INT(moert_mm_map(MOERT_MM_NN, -1, 1, 1, &mp), -1);
	EXPECT_INT(moert_mm_map(MOERT_MM_NN, 0, 0, 0, &mp), 0);
	EXPECT(mp.lda == 1 && mp.ldb == 1 && mp.ldc == 1);
	EXPECT_STR(moert_mm_op_name(MOERT_MM_TN), "TN");
}

/* moert_cuda_mm's argument checks come before the device is touched. */
static void test_mm_args(void)
{
	char err[512] = "";
	EXPECT_INT(moert_cuda_mm(NULL, MOERT_MM_NT, 4, 4, 4, 256, 512, 768, 0.0f, 0, 1, err, sizeof err), -1);
	EXPECT(strstr(err, "fp32 A/B with a bf16 C") != NULL);
	EXPECT_INT(moert_cuda_mm(NULL, (enum moert_mm_op)3, 4, 4, 4, 256, 512, 768, 0.0f, 0, 0, err, sizeof err), -1);
	EXPECT(strstr(err, "bad arguments") != NULL);
	EXPECT_INT(moert_cuda_mm(NULL, MOERT_MM_NN, 4, 4, 4, 0, 512, 768, 0.0f, 0, 0, err, sizeof err), -1);
	EXPECT(strstr(err, "NULL device pointer") != NULL);
	/* empty products do nothing and need no device */
	EXPECT_INT(moert_cuda_mm(NULL, MOERT_MM_NN, 0, 4, 4, 0, 0, 0, 0.0f, 0, 0, err, sizeof err), 0);
	EXPECT_INT(moert_cuda_mm(NULL, MOERT_MM_TN, 4, 0, 4, 0, 0, 0, 1.0f, 1, 1, err, sizeof err), 0);
}

/* ---- alignment, cache table ---- */

static void test_align(void)
{
	EXPECT_INT(moert_cuda_align(0), 256);
	EXPECT_INT(moert_cuda_align(0x7f0000000000ull), 256);
	EXPECT_INT(moert_cuda_align(0x7f0000000180ull), 128);
	EXPECT_INT(moert_cuda_align(0x7f0000000104ull), 4);
	EXPECT_INT(moert_cuda_align(0x7f0000000102ull), 2);
	EXPECT_INT(moert_cuda_align(0x7f0000000001ull), 1);
	EXPECT_INT(moert_cuda_align(0x10ull), 16);
}

static struct moert_mm_key key_of(int i)
{
	struct moert_mm_key k;
	memset(&k, 0, sizeof k);
	k.op = i % 3;
	k.m = 1 + i / 3;
	k.n = 7;
	k.k = 300 + (i & 1);
	k.ab_bf16 = (unsigned char)(i % 5 == 0);
	k.c_bf16 = (unsigned char)(i % 7 == 0);
	k.beta_nz = (unsigned char)(i % 2);
	k.align_a = 256;
	k.align_b = (unsigned short)(i % 11 == 0 ? 4 : 256);
	k.align_c = 16;
	return k;
}

static void test_table(void)
{
	struct moert_mm_table t = {0};
	static int vals[2000];
	struct moert_mm_key k = key_of(0);
	EXPECT(moert_mm_table_find(&t, &k) == NULL);
	for (int i = 0; i < 2000; i++) {
		k = key_of(i);
		EXPECT(moert_mm_table_find(&t, &k) == NULL);
		EXPECT_INT(moert_mm_table_insert(&t, &k, &vals[i]), 0);
	}
	EXPECT_INT((long long)t.n, 2000);
	EXPECT(t.cap >= 4000 && (t.cap & (t.cap - 1)) == 0);
	int bad = 0;
	for (int i = 0; i < 2000; i++) {
		k = key_of(i);
		bad += moert_mm_table_find(&t, &k) != &vals[i];
	}
	EXPECT_INT(bad, 0);
	/* each field is part of the key */
	k = key_of(5);
	k.align_c = 8;
	EXPECT(moert_mm_table_find(&t, &k) == NULL);
	k = key_of(5);
	k.beta_nz ^= 1;
	EXPECT(moert_mm_table_find(&t, &k) != &vals[5]);
	k = key_of(5);
	k.c_bf16 ^= 1;
	EXPECT(moert_mm_table_find(&t, &k) == NULL);
	moert_mm_table_free(&t);
	EXPECT(t.cap == 0 && t.n == 0 && t.keys == NULL);
}

/* ---- images ---- */

static void put16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8); }
static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void test_image_kind(void)
{
	unsigned char elf[512];
	memset(elf, 0, sizeof elf);
	memcpy(elf, "\x7f" "ELF", 4);
	elf[4] = 2, elf[5] = 1;
	put64(elf + 0x20, 64);  /* phoff */
	put16(elf + 0x36, 56);  /* phentsize */
	put16(elf + 0x38, 1);   /* phnum */
	put64(elf + 0x28, 192); /* shoff */
	put16(elf + 0x3a, 64);  /* shentsize */
	put16(elf + 0x3c, 5);   /* shnum: 192 + 320 = 512 */
	EXPECT_INT(moert_cuda_image_kind(elf, sizeof elf), MOERT_IMAGE_CUBIN);
	EXPECT_INT(moert_cuda_image_kind(elf, sizeof elf - 1), MOERT_IMAGE_BAD); /* cut short */
	EXPECT_INT(moert_cuda_image_kind(elf, 63), MOERT_IMAGE_BAD);
	elf[4] = 1; /* ELF32 */
	EXPECT_INT(moert_cuda_image_kind(elf, sizeof elf), MOERT_IMAGE_BAD);
	elf[4] = 2;
	put64(elf + 0x28, UINT64_MAX - 8); /* overflowing offset */
	EXPECT_INT(moert_cuda_image_kind(elf, sizeof elf), MOERT_IMAGE_BAD);

	unsigned char fat[64];
	memset(fat, 0, sizeof fat);
	fat[0] = 0x50, fat[1] = 0xed, fat[2] = 0x55, fat[3] = 0xba;
	put16(fat + 4, 1);
	put16(fat + 6, 16);
	put64(fat + 8, 48);
	EXPECT_INT(moert_cuda_image_kind(fat, sizeof fat), MOERT_IMAGE_FATBIN);
	EXPECT_INT(moert_cuda_image_kind(fat, sizeof fat - 1), MOERT_IMAGE_BAD);
	EXPECT_INT(moert_cuda_image_kind(fat, 15), MOERT_IMAGE_BAD);

	static const char ptx[] = "//\n.version 8.0\n.target sm_90\n";
	EXPECT_INT(moert_cuda_image_kind(ptx, sizeof ptx), MOERT_IMAGE_PTX);
	EXPECT_INT(moert_cuda_image_kind(ptx, sizeof ptx - 1), MOERT_IMAGE_BAD); /* no NUL inside */
	static const unsigned char junk[] = {0x01, 0x02, 0x03, 0x00, 0x05};
	EXPECT_INT(moert_cuda_image_kind(junk, sizeof junk), MOERT_IMAGE_BAD);
	EXPECT_INT(moert_cuda_image_kind(NULL, 100), MOERT_IMAGE_BAD);
	EXPECT_INT(moert_cuda_image_kind("ab", 3), MOERT_IMAGE_BAD);
}

/* ---- messages ---- */

static void test_messages(void)
{
	char b[64];
	moert_cuda_fmt_bytes(512, b, sizeof b);
	EXPECT_STR(b, "512 bytes");
	moert_cuda_fmt_bytes(1536, b, sizeof b);
	EXPECT_STR(b, "1.5 KiB");
	moert_cuda_fmt_bytes(32ull << 20, b, sizeof b);
	EXPECT_STR(b, "32 MiB");
	moert_cuda_fmt_bytes(3ull << 29, b, sizeof b);
	EXPECT_STR(b, "1.5 GiB");
	char desc[128];
	moert_cuda_fmt_describe(desc, sizeof desc, "NVIDIA H100 80GB HBM3", 9, 0, 132, 80ull << 30);
	EXPECT_STR(desc, "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 80.0 GiB");
}

int main(void)
{
	int have_driver = test_open();
	if (!have_driver)
		test_stub_driver();
	test_missing_driver();
	test_symbol_names();
	test_cublaslt();
	test_mm_map();
	test_mm_args();
	test_align();
	test_table();
	test_image_kind();
	test_messages();
	return testing_report();
}

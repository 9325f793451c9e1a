/* device_check.c - runtime/device_cuda.c on the device emulator (ctest emu/device_smoke; the
 * emulator's libraries on LD_LIBRARY_PATH, README.md here).
 *
 * tests/device/device_smoke.c is compiled in, its main renamed, so its checks run as they
 * do on a GPU: memory round trips and fills, moert_cuda_mm for every op and type on odd
 * shapes against a triple loop in double (the row-major to cuBLASLt mapping, computed by
 * the emulator as cuBLASLt defines the product), and the error paths. Its kernel test
 * launches, which the emulator refuses, so here the same kernels are loaded (the smem
 * limit raised, one module for both) and the launch must fail saying why. Then: that every
 * dlopen found the emulator rather than the real library the loader's cache names, and
 * what the emulator checks that a GPU would: device pointers inside allocations, fresh
 * memory not zeroed, cuBLASLt's type combinations, row-major layouts, and an algorithm's
 * alignment.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

#define main device_smoke_main
#include "device_smoke.c"
#undef main

#include <cublasLt.h>
#include <nccl.h>

#include "comm_nccl.h"

/* ---- which library each dlopen found ---- */

/* The file the loaded soname's symbol comes from must be the emulator's. */
static void expect_emulator(const char *soname, const char *symbol)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_NOLOAD);
	void *sym = h ? dlsym(h, symbol) : NULL;
	Dl_info info;
	memset(&info, 0, sizeof info);
	EXPECT(sym != NULL && dladdr(sym, &info));
	const char *file = info.dli_fname ? info.dli_fname : "(not loaded)";
	printf("%s: %s\n", soname, file);
	EXPECT(!strncmp(file, MOEC_EMU_LIB "/", strlen(MOEC_EMU_LIB) + 1));
	if (h)
		dlclose(h);
}

static void test_libraries(struct moert_cuda *d)
{
	EXPECT_STR(moert_cuda_describe(d), "moec device emulator (host memory), sm_90, 132 SMs, 80.0 GiB");
	EXPECT_INT(moert_cuda_cc(d), 90);
	/* every driver symbol device_cuda.c resolves, under the name it asks for */
	int n = 0;
	while (moert_cuda_driver_symbol(n))
		n++;
	EXPECT_INT(moert_cuda_check_driver_symbols(MOEC_EMU_LIB "/libcuda.so.1", err, sizeof err), n);
	CHECK_OK(moert_cuda_mm_init(d, err, sizeof err));
	CHECK_OK(moert_nccl_load(err, sizeof err));
	EXPECT_INT(moert_nccl_version(), NCCL_VERSION_CODE);
	expect_emulator("libcuda.so.1", "cuInit");
	expect_emulator("libcublasLt.so.13", "cublasLtMatmul");
	expect_emulator("libnccl.so.2", "ncclCommInitRank");
}

/* ---- kernels: loaded, never launched ---- */

static void test_launch_refused(struct moert_cuda *d, const char *cubin, size_t size)
{
	EXPECT(cubin != NULL);
	if (!cubin)
		return;
	int mods = moert_cuda_module_count(d);
	moert_cuda_fn rev = NULL, add = NULL;
	CHECK_OK(moert_cuda_kernel(d, cubin, size, "reverse_smem", 96 * 1024, &rev, err, sizeof err));
	CHECK_OK(moert_cuda_kernel(d, cubin, size, "add_one", 0, &add, err, sizeof err));
	EXPECT_INT(moert_cuda_module_count(d), mods + 1);
	if (!add)
		return;
	moert_dptr out;
	int n = 256;
	CHECK_OK(moert_cuda_alloc(d, (size_t)n * sizeof(float), &out, err, sizeof err));
	void *args[] = {&out, &n};
	const unsigned grid[3] = {1, 1, 1}, block[3] = {256, 1, 1};
	CHECK_OK(moert_cuda_mark(d, 0, err, sizeof err));
	EXPECT_INT(moert_cuda_launch(d, add, grid, block, 0, args, err, sizeof err), -1);
	printf("expected failure: %s\n", err);
	EXPECT(strstr(err, "cuLaunchKernel(add_one") != NULL);
	EXPECT(strstr(err, "CUDA_ERROR_NOT_SUPPORTED") != NULL);
	EXPECT(strstr(err, "MOEC_TRAIN_CFLAGS=-DMOEC_EMU_LAUNCH") != NULL);
	/* events still time the stream: real milliseconds between the two marks */
	CHECK_OK(moert_cuda_mark(d, 1, err, sizeof err));
	float ms = -1;
	CHECK_OK(moert_cuda_elapsed_ms(d, 0, 1, &ms, err, sizeof err));
	EXPECT(ms >= 0.0f && ms < 10000.0f);
	moert_cuda_free(d, out);
}

/* ---- what a GPU would catch ---- */

static void test_guards(struct moert_cuda *d)
{
	moert_dptr p;
	unsigned char back[64];
	CHECK_OK(moert_cuda_alloc(d, sizeof back, &p, err, sizeof err));
	CHECK_OK(moert_cuda_d2h(d, back, p, sizeof back, err, sizeof err));
	int ff = 0;
	for (size_t i = 0; i < sizeof back; i++)
		ff += back[i] == 0xff;
	EXPECT_INT(ff, (int)sizeof back); /* not zeroed: code that assumes zeros fails here too */

	/* a host pointer where a device pointer belongs */
	float *host = calloc(64, sizeof *host);
	moert_dptr hp = (moert_dptr)(uintptr_t)host;
	EXPECT_INT(moert_cuda_h2d(d, hp, back, 16, err, sizeof err), -1);
	EXPECT(strstr(err, "CUDA_ERROR_INVALID_VALUE") != NULL);
	EXPECT_INT(moert_cuda_memset(d, hp, 0, 16, err, sizeof err), -1);
	/* past the allocation's end */
	EXPECT_INT(moert_cuda_h2d(d, p + 32, host, 64, err, sizeof err), -1);
	/* a GEMM operand in host memory: cuBLASLt would fault */
	CHECK_OK(moert_cuda_memset(d, p, 0, sizeof back, err, sizeof err));
	EXPECT_INT(moert_cuda_mm(d, MOERT_MM_NN, 2, 2, 2, hp, p, p + 16, 0.0f, 0, 0, err, sizeof err), -1);
	printf("expected failure: %s\n", err);
	EXPECT(strstr(err, "CUBLAS_STATUS_EXECUTION_FAILED") != NULL);
	free(host);
	moert_cuda_free(d, p);
}

/* ---- the emulated cuBLASLt, called directly ---- */

#define LT(name) ((__typeof__(name) *)dlsym(lt, #name))

static cublasLtMatmulDesc_t lt_desc(void *lt, int32_t ta, int32_t tb)
{
	cublasLtMatmulDesc_t desc = NULL;
	EXPECT_INT(LT(cublasLtMatmulDescCreate)(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
	EXPECT_INT(LT(cublasLtMatmulDescSetAttribute)(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), 0);
	EXPECT_INT(LT(cublasLtMatmulDescSetAttribute)(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), 0);
	/* cuBLASLt checks each attribute's size */
	int64_t wide = 1;
	EXPECT_INT(LT(cublasLtMatmulDescSetAttribute)(desc, CUBLASLT_MATMUL_DESC_TRANSA, &wide, sizeof wide),
		   CUBLAS_STATUS_INVALID_VALUE);
	return desc;
}

static cublasLtMatrixLayout_t lt_layout(void *lt, cudaDataType t, uint64_t rows, uint64_t cols, int64_t ld, int row_major)
{
	cublasLtMatrixLayout_t l = NULL;
	EXPECT_INT(LT(cublasLtMatrixLayoutCreate)(&l, t, rows, cols, ld), CUBLAS_STATUS_SUCCESS);
	int32_t order = row_major ? CUBLASLT_ORDER_ROW : CUBLASLT_ORDER_COL;
	EXPECT_INT(LT(cublasLtMatrixLayoutSetAttribute)(l, CUBLASLT_MATRIX_LAYOUT_ORDER, &order, sizeof order), 0);
	return l;
}

/* D[2x2] = A[2x3] B[3x2], all row-major with padded rows (ld 4, 3, 5); then the same
 * algorithm with a pointer less aligned than its preference promised. */
static void lt_row_major(struct moert_cuda *d, void *lt, cublasLtHandle_t h)
{
	const float A[2 * 4] = {1, 2, 3, -9, 4, 5, 6, -9}, B[3 * 3] = {1, -1, -9, 2, 0, -9, 0, 3, -9};
	const float want[2] = {1 * 1 + 2 * 2 + 3 * 0, 1 * -1 + 2 * 0 + 3 * 3}; /* row 0 */
	const float want1[2] = {4 * 1 + 5 * 2 + 6 * 0, 4 * -1 + 5 * 0 + 6 * 3};
	moert_dptr dA, dB, dD;
	CHECK_OK(moert_cuda_alloc(d, sizeof A + 64, &dA, err, sizeof err));
	CHECK_OK(moert_cuda_alloc(d, sizeof B, &dB, err, sizeof err));
	CHECK_OK(moert_cuda_alloc(d, 2 * 5 * sizeof(float), &dD, err, sizeof err));
	CHECK_OK(moert_cuda_h2d(d, dA, A, sizeof A, err, sizeof err));
	CHECK_OK(moert_cuda_h2d(d, dA + 36, A, sizeof A, err, sizeof err)); /* A again, 4 bytes off 16 */
	CHECK_OK(moert_cuda_h2d(d, dB, B, sizeof B, err, sizeof err));
	cublasLtMatmulDesc_t desc = lt_desc(lt, CUBLAS_OP_N, CUBLAS_OP_N);
	cublasLtMatrixLayout_t la = lt_layout(lt, CUDA_R_32F, 2, 3, 4, 1), lb = lt_layout(lt, CUDA_R_32F, 3, 2, 3, 1),
			       ld = lt_layout(lt, CUDA_R_32F, 2, 2, 5, 1);
	cublasLtMatmulPreference_t pref = NULL;
	EXPECT_INT(LT(cublasLtMatmulPreferenceCreate)(&pref), 0);
	uint32_t al = 16;
	EXPECT_INT(LT(cublasLtMatmulPreferenceSetAttribute)(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al), 0);
	cublasLtMatmulHeuristicResult_t res;
	int nres = 0;
	EXPECT_INT(LT(cublasLtMatmulAlgoGetHeuristic)(h, desc, la, lb, ld, ld, pref, 1, &res, &nres), 0);
	EXPECT_INT(nres, 1);
	const float one = 1, zero = 0;
	void *pa = (void *)(uintptr_t)dA, *pb = (void *)(uintptr_t)dB, *pd = (void *)(uintptr_t)dD;
	EXPECT_INT(LT(cublasLtMatmul)(h, desc, &one, pa, la, pb, lb, &zero, pd, ld, pd, ld, &res.algo, NULL, 0, NULL), 0);
	float got[2 * 5];
	CHECK_OK(moert_cuda_d2h(d, got, dD, sizeof got, err, sizeof err));
	EXPECT(got[0] == want[0] && got[1] == want[1] && got[5] == want1[0] && got[6] == want1[1]);
	/* that A: the algorithm was chosen for 16-byte-aligned A */
	EXPECT_INT(LT(cublasLtMatmul)(h, desc, &one, (char *)pa + 36, la, pb, lb, &zero, pd, ld, pd, ld, &res.algo, NULL, 0,
				      NULL),
		   CUBLAS_STATUS_INVALID_VALUE);
	LT(cublasLtMatmulPreferenceDestroy)(pref);
	LT(cublasLtMatrixLayoutDestroy)(la);
	LT(cublasLtMatrixLayoutDestroy)(lb);
	LT(cublasLtMatrixLayoutDestroy)(ld);
	LT(cublasLtMatmulDescDestroy)(desc);
	moert_cuda_free(d, dA);
	moert_cuda_free(d, dB);
	moert_cuda_free(d, dD);
}

/* fp32 A/B with a bf16 C/D: cuBLASLt has no such kernel, and neither has the emulator. */
static void lt_unsupported(void *lt, cublasLtHandle_t h)
{
	cublasLtMatmulDesc_t desc = lt_desc(lt, CUBLAS_OP_T, CUBLAS_OP_N);
	cublasLtMatrixLayout_t a = lt_layout(lt, CUDA_R_32F, 8, 8, 8, 0), c = lt_layout(lt, CUDA_R_16BF, 8, 8, 8, 0);
	cublasLtMatmulPreference_t pref = NULL;
	EXPECT_INT(LT(cublasLtMatmulPreferenceCreate)(&pref), 0);
	cublasLtMatmulHeuristicResult_t res;
	int nres = 0;
	EXPECT_INT(LT(cublasLtMatmulAlgoGetHeuristic)(h, desc, a, a, c, c, pref, 1, &res, &nres),
		   CUBLAS_STATUS_NOT_SUPPORTED);
	LT(cublasLtMatmulPreferenceDestroy)(pref);
	LT(cublasLtMatrixLayoutDestroy)(a);
	LT(cublasLtMatrixLayoutDestroy)(c);
	LT(cublasLtMatmulDescDestroy)(desc);
}

static void test_cublaslt(struct moert_cuda *d)
{
	void *lt = dlopen("libcublasLt.so.13", RTLD_NOW | RTLD_NOLOAD);
	EXPECT(lt != NULL);
	if (!lt)
		return;
	cublasLtHandle_t h = NULL;
	EXPECT_INT(LT(cublasLtCreate)(&h), 0);
	lt_row_major(d, lt, h);
	lt_unsupported(lt, h);
	LT(cublasLtDestroy)(h);
	dlclose(lt);
}

int main(void)
{
	struct moert_cuda *d = NULL;
	if (moert_cuda_open(0, &d, err, sizeof err)) {
		fprintf(stderr, "moert_cuda_open on the emulator: %s\n", err);
		return 1;
	}
	printf("device: %s\n", moert_cuda_describe(d));
	test_libraries(d);
	test_memory(d);
	test_mm(d);
	size_t size = 0;
	char *cubin = compile_cubin(moert_cuda_cc(d), &size);
	test_launch_refused(d, cubin, size);
	test_errors(d, cubin, size);
	test_guards(d);
	test_cublaslt(d);
	moert_cuda_close(d);
	free(cubin);
	return testing_report();
}

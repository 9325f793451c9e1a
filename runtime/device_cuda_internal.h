/* device_cuda_internal.h - the host-only pieces of device_cuda.c, exposed for its tests.
 *
 * Nothing here needs a GPU: the row-major to column-major mapping of the GEMMs, the
 * algorithm cache's table, pointer alignment, image sniffing, message formatting, and
 * loaders that take a library path so the tests can point them at the toolkit's stub
 * libcuda.so and at libcublasLt.so.13, which exist on machines without a driver.
 * No CUDA header is needed to include this one.
 */
#ifndef MOERT_DEVICE_CUDA_INTERNAL_H
#define MOERT_DEVICE_CUDA_INTERNAL_H
#include "device_cuda.h"

#include <stddef.h>
#include <stdint.h>

/* ---- GEMM: the row-major product as cuBLASLt's column-major one ----
 *
 * A row-major R x C matrix with row stride ld is, byte for byte, the column-major C x R
 * matrix (its transpose) with leading dimension ld. So C[M,N] = op(A) op(B) is computed as
 * C^T[N,M] = op(B)^T op(A)^T in column-major: cuBLASLt's "A" is the caller's B, its "B" is
 * the caller's A, and the problem is m = N, n = M, k = K. Layouts describe the matrices as
 * stored (before TRANSA/TRANSB), as cuBLASLt's descriptors do:
 *
 *   op  caller                   Lt A = caller B           Lt B = caller A           Lt C
 *   NT  A[M,K] B[N,K]^T          K x N, ld K, TRANSA = T   K x M, ld K, TRANSB = N   N x M, ld N
 *   NN  A[M,K] B[K,N]            N x K, ld N, TRANSA = N   K x M, ld K, TRANSB = N   N x M, ld N
 *   TN  A[K,M]^T B[K,N]          N x K, ld N, TRANSA = N   M x K, ld M, TRANSB = T   N x M, ld N
 */
struct moert_mm_map {
	int transa, transb;       /* 1: CUBLAS_OP_T, 0: CUBLAS_OP_N */
	uint64_t m, n, k;         /* cuBLASLt's problem: D[m,n] = op(LtA)[m,k] op(LtB)[k,n] */
	uint64_t a_rows, a_cols;  /* Lt A (the caller's B) as stored, column-major */
	int64_t lda;
	uint64_t b_rows, b_cols;  /* Lt B (the caller's A) as stored, column-major */
	int64_t ldb;
	uint64_t c_rows, c_cols;  /* C and D */
	int64_t ldc;
};
/* 0, or -1 for an unknown op or a negative dimension. */
int moert_mm_map(enum moert_mm_op op, int M, int N, int K, struct moert_mm_map *out);
/* "NT", "NN", "TN", or "?" */
const char *moert_mm_op_name(enum moert_mm_op op);

/* The largest power of two dividing a device address, at most 256 (cuBLASLt's default
 * assumption): what the heuristic is told, so it never picks a kernel the pointer breaks. */
unsigned moert_cuda_align(uint64_t addr);

/* ---- the algorithm cache: (op, shape, types, beta != 0, alignments) -> entry ---- */
struct moert_mm_key {
	int op, m, n, k;
	unsigned char ab_bf16, c_bf16, beta_nz;
	unsigned short align_a, align_b, align_c; /* of the caller's A, B, C */
};
struct moert_mm_table {
	struct moert_mm_key *keys;
	void **vals; /* NULL: empty slot */
	size_t cap, n;
};
void *moert_mm_table_find(const struct moert_mm_table *t, const struct moert_mm_key *k);
/* val must not be NULL; the key must not be present. 0, or -1 out of memory. */
int moert_mm_table_insert(struct moert_mm_table *t, const struct moert_mm_key *k, void *val);
/* Frees the table's arrays, not the values. */
void moert_mm_table_free(struct moert_mm_table *t);

/* ---- module images ---- */
enum moert_image_kind { MOERT_IMAGE_BAD, MOERT_IMAGE_CUBIN, MOERT_IMAGE_FATBIN, MOERT_IMAGE_PTX };
/* What cuModuleLoadData would take the image for, checked within size so the driver never
 * reads past it: an ELF cubin, a fatbin, or PTX text NUL-terminated inside size. */
enum moert_image_kind moert_cuda_image_kind(const void *image, size_t size);

/* ---- messages ---- */
/* "512 bytes", "1.5 KiB", "32 MiB", "1.5 GiB" */
void moert_cuda_fmt_bytes(size_t bytes, char *buf, size_t n);
/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB" */
void moert_cuda_fmt_describe(char *buf, size_t n, const char *name, int cc_major, int cc_minor, int sms,
			     size_t total_bytes);

/* ---- loaders, for tests ---- */
/* moert_cuda_open with the driver library at lib_path (moert_cuda_open uses "libcuda.so.1"). */
int moert_cuda_open_lib(const char *lib_path, int ordinal, struct moert_cuda **out, char *err, size_t errlen);
/* dlopen lib_path and resolve every driver entry point this file uses. The number
 * resolved, or -1 with err naming the library or the missing symbol. */
int moert_cuda_check_driver_symbols(const char *lib_path, char *err, size_t errlen);
/* The i-th driver symbol dlsym'd (the name cuda.h maps the API to: "cuMemAlloc_v2"), or
 * NULL past the end. */
const char *moert_cuda_driver_symbol(int i);
/* Host-only check of cuBLASLt at lib_path (NULL: the usual search): resolve its entry
 * points and build the descriptors moert_cuda_mm uses for every op and type combination
 * on a few shapes; cuBLASLt validates each attribute's size and value. 0, or -1 with err. */
int moert_cuda_cublaslt_selftest(const char *lib_path, char *err, size_t errlen);

/* ---- state, for tests on a GPU ---- */
int moert_cuda_module_count(const struct moert_cuda *d);
int moert_cuda_mm_cache_count(const struct moert_cuda *d);

#endif

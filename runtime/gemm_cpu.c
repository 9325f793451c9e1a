/* gemm_cpu.c - dense GEMMs of the CPU backend through OpenBLAS. See gemm.h. */
#include "gemm.h"

#include <string.h>

#define FORCE_OPENBLAS_COMPLEX_STRUCT /* keep complex.h's I out of scope */
#include <cblas.h>

void moert_mm_nt(int M, int N, int K, const float *A, const float *B, float *C, float beta)
{
	if (M && N)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, beta, C, N);
}

void moert_mm_nn(int M, int N, int K, const float *A, const float *B, float *C, float beta)
{
	if (M && N)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, beta, C, N);
}

void moert_mm_tn(int M, int N, int K, const float *A, const float *B, float *C, float beta)
{
	if (M && N)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, M, B, N, beta, C, N);
}

void moert_copy_cols(float *dst, int ld, int col0, const float *src, int rows, int cols)
{
	for (int r = 0; r < rows; r++)
		memcpy(dst + (long)r * ld + col0, src + (long)r * cols, (size_t)cols * sizeof *src);
}

void moert_set_threads(int n)
{
	openblas_set_num_threads(n);
}

/* gemm_cpu.c - dense GEMMs of the CPU backend through OpenBLAS. See gemm.h. */
#include "gemm.h"
#include "hf.h"

#include <stdint.h>
#include <stdlib.h>
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

/* Round to nearest even, NaN kept a NaN (as kernels/cpu/moec_host.h's float_to_bf16). */
unsigned short moert_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* Widened copies of bf16 operands: one scratch per operand, grown to the largest GEMM and
 * kept, so the step loop allocates nothing after its first step (the step is one thread). */
static float *scratch(int slot, long n)
{
	static float *buf[3];
	static long cap[3];
	if (n > cap[slot]) {
		float *p = realloc(buf[slot], (size_t)n * sizeof *p);
		if (!p)
			abort();
		buf[slot] = p;
		cap[slot] = n;
	}
	return buf[slot];
}

/* An fp32 view of n elements: p itself, or a widened copy in scratch slot. */
static float *widen(const void *p, int is16, long n, int slot)
{
	if (!is16)
		return (float *)p;
	float *f = scratch(slot, n > 0 ? n : 1);
	for (long i = 0; i < n; i++)
		f[i] = hf_bf16_to_f32(((const uint16_t *)p)[i]);
	return f;
}

void moert_mm(enum moert_gemm_op op, int M, int N, int K, const void *A, int a16, const void *B, int b16, void *C, int c16,
	      float beta)
{
	const float *a = widen(A, a16, (long)M * K, 0), *b = widen(B, b16, (long)K * N, 1);
	const long mn = (long)M * N;
	float *out = !c16 ? C : beta != 0 ? widen(C, 1, mn, 2) : scratch(2, mn > 0 ? mn : 1);
	if (op == MOERT_GEMM_NT)
		moert_mm_nt(M, N, K, a, b, out, beta);
	else if (op == MOERT_GEMM_NN)
		moert_mm_nn(M, N, K, a, b, out, beta);
	else
		moert_mm_tn(M, N, K, a, b, out, beta);
	if (c16)
		for (long i = 0; i < mn; i++)
			((uint16_t *)C)[i] = moert_f32_to_bf16(out[i]);
}

/* gemm.h - the dense matrix products of the generated step on the CPU backend (OpenBLAS).
 *
 * Row-major, contiguous, fp32; C = op(A) op(B) + beta C, named by which operand is
 * transposed as the step uses them:
 *   moert_mm_nt  C[M,N] = A[M,K] B[N,K]^T   y = x W^T       (nn.Linear forward)
 *   moert_mm_nn  C[M,N] = A[M,K] B[K,N]     dx = dy W        (input gradient)
 *   moert_mm_tn  C[M,N] = A[K,M]^T B[K,N]   dW += dy^T x     (weight gradient)
 * beta is 0 (overwrite) or 1 (accumulate). Kept out of the generated file so model.c never
 * includes cblas.h (whose complex.h defines the macro I, a kernel constant's name).
 */
#ifndef MOERT_GEMM_H
#define MOERT_GEMM_H

void moert_mm_nt(int M, int N, int K, const float *A, const float *B, float *C, float beta);
void moert_mm_nn(int M, int N, int K, const float *A, const float *B, float *C, float beta);
void moert_mm_tn(int M, int N, int K, const float *A, const float *B, float *C, float beta);
/* The same products over fp32 or bf16 operands (a16, b16, c16: that operand holds bf16, the
 * top half of an fp32): bf16 operands are widened, the product is fp32, a bf16 C is rounded
 * to nearest even once. The step calls it through _Generic on its pointers' types. */
enum moert_gemm_op { MOERT_GEMM_NT, MOERT_GEMM_NN, MOERT_GEMM_TN };
void moert_mm(enum moert_gemm_op op, int M, int N, int K, const void *A, int a16, const void *B, int b16, void *C, int c16,
	      float beta);
/* fp32 -> bf16 bits, round to nearest even (the bf16 weight copies of a bf16 step). */
unsigned short moert_f32_to_bf16(float f);
/* dst[:, col0 : col0 + cols] (row stride ld) = src[rows, cols]: logits chunks into [T, V]. */
void moert_copy_cols(float *dst, int ld, int col0, const float *src, int rows, int cols);
/* Threads OpenBLAS uses for one GEMM. */
void moert_set_threads(int n);

#endif

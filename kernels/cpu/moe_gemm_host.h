/* moe_gemm_host.h - helpers shared by the CPU twins of the expert GEMMs (moe_gate_up_fwd.c,
 * moe_down_fwd.c, moe_down_bwd_data.c, moe_gate_up_bwd_data.c, moe_down_bwd_weight.c,
 * moe_gate_up_bwd_weight.c): expert row ranges clamped exactly as the GPU scheduler clamps
 * them, act_t <-> fp32 staging so every GEMM goes to OpenBLAS cblas_sgemm; SwiGLU and its
 * sigmoid come from swiglu_host.h.
 * Include after moec_host.h; safe to include from several twins in one translation unit
 * (one ACT_BF16 per unit, as moec_host.h requires). */
#ifndef MOEC_MOE_GEMM_HOST_H
#define MOEC_MOE_GEMM_HOST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS's cblas.h pulls in <complex.h> unless told not to, and <complex.h> does
 * `#undef I / #define I _Complex_I`: with moec's constant I (the expert intermediate size)
 * already defined, every I below would silently become the imaginary unit. The twins also
 * _Static_assert(I > 0), which fails to compile if that ever happens anyway. */
#ifndef FORCE_OPENBLAS_COMPLEX_STRUCT
#define FORCE_OPENBLAS_COMPLEX_STRUCT
#endif
#include <cblas.h>

#include "swiglu_host.h"

static inline void *moe_host_alloc(size_t n, const char *who)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "%s: out of memory (%zu bytes)\n", who, n);
		abort();
	}
	return p;
}

/* Rows [*r0, *r1) of expert e: offsets clamped to [0, rows], an inverted range is empty
 * (what moe_find_mtile and the weight-gradient kernels do on the GPU). Returns *r1 - *r0. */
static inline int moe_host_range(const int *offsets, int e, int rows, int *r0, int *r1)
{
	int a = offsets[e], b = offsets[e + 1];
	a = a < 0 ? 0 : (a > rows ? rows : a);
	b = b < 0 ? 0 : (b > rows ? rows : b);
	*r0 = a;
	*r1 = b > a ? b : a;
	return *r1 - *r0;
}

/* Largest expert segment (scratch sizing). */
static inline int moe_host_max_rows(const int *offsets, int experts, int rows)
{
	int m = 0, r0, r1;
	for (int e = 0; e < experts; e++) {
		int n = moe_host_range(offsets, e, rows, &r0, &r1);
		m = n > m ? n : m;
	}
	return m;
}

/* n act_t values as fp32: the data itself on the fp32 path, else converted into buf. */
static inline const float *moe_host_f32(const act_t *p, size_t n, float *buf)
{
#if ACT_BF16
	for (size_t i = 0; i < n; i++)
		buf[i] = bf16_to_float(p[i]);
	return buf;
#else
	(void)n;
	(void)buf;
	return p;
#endif
}

/* One expert's weight gradient dw [m, n] (+)= a^T b, a [k, m], b [k, n] fp32 (k = the
 * expert's rows): added to when accumulate != 0, else overwritten (the gradient's first write
 * in the optimizer step), zeros for an expert with no rows, as the GPU kernels write. */
static inline void moe_host_weight_grad(int m, int n, int k, const float *a, const float *b, float *dw, int accumulate)
{
	if (k == 0) {
		if (!accumulate)
			memset(dw, 0, sizeof(float) * (size_t)m * n);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1.f, a, m, b, n, accumulate ? 1.f : 0.f, dw, n);
}

/* dst[i] = src[i] rounded to act_t. */
static inline void moe_host_store(act_t *dst, const float *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		act_store(dst + i, src[i]);
}

#endif

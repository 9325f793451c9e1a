/* moe_gemm_instances.h - the expert-GEMM twin instances both test_moe_gemm_f32.c and
 * test_moe_gemm_bf16.c run (one ACT_BF16 per translation unit, so each test includes this
 * after defining it). */
/* Shapes. C is the dense-MLP reuse (E_LOCAL = 1, I = the dense intermediate size); D the
 * tiny example's MoE layer (H 128, I 128, 8 experts). */
#define SUF a
#define E_LOCAL 4
#define H 24
#define I 16
#include "moe_gemm_twins.h"
#undef SUF
#undef E_LOCAL
#undef H
#undef I

#define SUF b
#define E_LOCAL 6
#define H 40
#define I 8
#include "moe_gemm_twins.h"
#undef SUF
#undef E_LOCAL
#undef H
#undef I

#define SUF c
#define E_LOCAL 1
#define H 16
#define I 24
#include "moe_gemm_twins.h"
#undef SUF
#undef E_LOCAL
#undef H
#undef I

#define SUF d
#define E_LOCAL 8
#define H 128
#define I 128
#include "moe_gemm_twins.h"
#undef SUF
#undef E_LOCAL
#undef H
#undef I

#define SUF e
#define E_LOCAL 16
#define H 16
#define I 8
#include "moe_gemm_twins.h"
#undef SUF
#undef E_LOCAL
#undef H
#undef I


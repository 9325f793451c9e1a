/* attention_instances.h - the attention twin instances (fwd, bwd_pre, bwd at four
 * NH/NKV/HD shapes) both test_attention_f32.c and test_attention_bf16.c run; include once
 * after defining ACT_BF16, BLOCK_M and BLOCK_N (one ACT_BF16 per translation unit). */
#define NH 2
#define NKV 2
#define HD 16
#define MOEC_KERNEL_CPU attn_fwd_h2_kv2_d16
#include "attention_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_pre_h2_kv2_d16
#include "attention_bwd_pre.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_bwd_h2_kv2_d16
#include "attention_bwd.c"
#undef MOEC_KERNEL_CPU
#undef NH
#undef NKV
#undef HD

#define NH 4
#define NKV 2
#define HD 32
#define MOEC_KERNEL_CPU attn_fwd_h4_kv2_d32
#include "attention_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_pre_h4_kv2_d32
#include "attention_bwd_pre.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_bwd_h4_kv2_d32
#include "attention_bwd.c"
#undef MOEC_KERNEL_CPU
#undef NH
#undef NKV
#undef HD

#define NH 4
#define NKV 1
#define HD 64
#define MOEC_KERNEL_CPU attn_fwd_h4_kv1_d64
#include "attention_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_pre_h4_kv1_d64
#include "attention_bwd_pre.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_bwd_h4_kv1_d64
#include "attention_bwd.c"
#undef MOEC_KERNEL_CPU
#undef NH
#undef NKV
#undef HD

#define NH 8
#define NKV 2
#define HD 16
#define MOEC_KERNEL_CPU attn_fwd_h8_kv2_d16
#include "attention_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_pre_h8_kv2_d16
#include "attention_bwd_pre.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU attn_bwd_h8_kv2_d16
#include "attention_bwd.c"
#undef MOEC_KERNEL_CPU
#undef NH
#undef NKV
#undef HD


/* moe_gemm_twins.h - instantiates the six expert-GEMM twins and swiglu_fwd's for one shape. Included several
 * times (no include guard) by test_moe_gemm_f32.c / test_moe_gemm_bf16.c, each time with
 * E_LOCAL, H, I and SUF (a name suffix) defined; defines `static const struct moe_twins
 * twins_<SUF>`. The tile constants are the GPU tiling; the twins ignore them. */
#define MOE_CAT2(a, b) a##b
#define MOE_CAT(a, b) MOE_CAT2(a, b)

#ifndef TILE_M
#define TILE_M 64
#define TILE_N 64
#define TILE_K 16
#define STAGES 3
#endif

#define MOEC_KERNEL_CPU MOE_CAT(moe_gate_up_fwd_, SUF)
#include "moe_gate_up_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MOE_CAT(moe_down_fwd_, SUF)
#include "moe_down_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MOE_CAT(moe_down_bwd_data_, SUF)
#include "moe_down_bwd_data.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MOE_CAT(moe_gate_up_bwd_data_, SUF)
#include "moe_gate_up_bwd_data.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MOE_CAT(moe_down_bwd_weight_, SUF)
#include "moe_down_bwd_weight.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MOE_CAT(moe_gate_up_bwd_weight_, SUF)
#include "moe_gate_up_bwd_weight.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MOE_CAT(swiglu_fwd_, SUF)
#include "swiglu_fwd.c"
#undef MOEC_KERNEL_CPU

static const struct moe_twins MOE_CAT(twins_, SUF) = {
	E_LOCAL, H, I,
	MOE_CAT(moe_gate_up_fwd_, SUF),
	MOE_CAT(moe_down_fwd_, SUF),
	MOE_CAT(moe_down_bwd_data_, SUF),
	MOE_CAT(moe_gate_up_bwd_data_, SUF),
	MOE_CAT(moe_down_bwd_weight_, SUF),
	MOE_CAT(moe_gate_up_bwd_weight_, SUF),
	MOE_CAT(swiglu_fwd_, SUF),
};

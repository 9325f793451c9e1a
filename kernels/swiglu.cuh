// swiglu.cuh - SwiGLU of one element, shared by moe_gate_up_fwd's epilogue and swiglu_fwd.
//
// h = silu(gate) * up computed from gate and up rounded to act_t first: the values the
// gate_up GEMM saves (gu) and the backward (moe_down_bwd_data) reads, and what HF/PyTorch
// bf16 computes from the bf16 gate_proj/up_proj outputs. So swiglu_fwd rebuilds h from a
// saved gu bit for bit (selective recompute), and in fp32 the rounding is the identity.
// One inline function for both kernels: the same instructions give the same bits.
#pragma once
#include "moec_device.cuh"

__device__ __forceinline__ float moe_sigmoid(float x)
{
	return 1.f / (1.f + __expf(-x));
}

// v rounded to act_t and back (bf16: round to nearest even; fp32: v).
__device__ __forceinline__ float act_round(float v)
{
#if ACT_BF16
	return __bfloat162float(__float2bfloat16_rn(v));
#else
	return v;
#endif
}

__device__ __forceinline__ float swiglu(float gate, float up)
{
	const float g = act_round(gate), u = act_round(up);
	return g * moe_sigmoid(g) * u;
}

/* swiglu_host.h - SwiGLU of one element, shared by the twins of moe_gate_up_fwd (its
 * epilogue) and swiglu_fwd, as kernels/swiglu.cuh is by the kernels: h = silu(gate) * up from
 * gate and up rounded to act_t first (the saved gu the backward reads; HF/PyTorch bf16
 * semantics), so swiglu_fwd rebuilds h from gu bit for bit. Include after moec_host.h. */
#ifndef MOEC_SWIGLU_HOST_H
#define MOEC_SWIGLU_HOST_H

static inline float moe_host_sigmoid(float x)
{
	return 1.f / (1.f + expf(-x));
}

/* v rounded to act_t and back (bf16: round to nearest even; fp32: v). */
static inline float act_round(float v)
{
	act_t t;
	act_store(&t, v);
	return act_load(&t);
}

static inline float swiglu_host(float gate, float up)
{
	const float g = act_round(gate), u = act_round(up);
	return g * moe_host_sigmoid(g) * u;
}

#endif

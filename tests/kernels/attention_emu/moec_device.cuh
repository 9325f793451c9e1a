// moec_device.cuh stand-in for the attention emulator (host C++; see emu.h).
#pragma once
#include "emu.h"
typedef emu_bf16 bf16;
#if ACT_BF16
typedef bf16 act_t;
#else
typedef float act_t;
#endif
static inline float act_load(const act_t *p)
{
#if ACT_BF16
	return emu_bf2f(*p);
#else
	return *p;
#endif
}
static inline void act_store(act_t *p, float v)
{
#if ACT_BF16
	*p = emu_f2bf(v);
#else
	*p = v;
#endif
}
static inline float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
static inline float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

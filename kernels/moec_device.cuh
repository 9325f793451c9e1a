// moec_device.cuh - what every kernel template includes: dtypes and small device helpers.
//
// Under NVRTC the real <cuda_bf16.h> is used; under moec's lint (libclang 14, which cannot
// parse the CUDA 13 headers) MOEC_LINT is defined and templates/cuda_stub.h provides the
// few declarations used here.
#pragma once

#ifdef MOEC_LINT
#include "cuda_stub.h"
#else
#include <cuda_bf16.h>
#endif

typedef __nv_bfloat16 bf16;

#if ACT_BF16
typedef bf16 act_t;
#else
typedef float act_t;
#endif

__device__ __forceinline__ float act_load(const act_t *p)
{
#if ACT_BF16
	return __bfloat162float(*p);
#else
	return *p;
#endif
}

__device__ __forceinline__ void act_store(act_t *p, float v)
{
#if ACT_BF16
	*p = __float2bfloat16_rn(v);
#else
	*p = v;
#endif
}

__device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

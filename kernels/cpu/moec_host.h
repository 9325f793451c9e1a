/* moec_host.h - what every CPU twin includes: the same dtypes and helpers as
 * moec_device.cuh, in C11, so a twin reads like its kernel. */
#ifndef MOEC_HOST_H
#define MOEC_HOST_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* bf16: the top 16 bits of an IEEE float. */
typedef struct {
	uint16_t bits;
} bf16;

static inline float bf16_to_float(bf16 h)
{
	uint32_t u = (uint32_t)h.bits << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Round to nearest even, as __float2bfloat16_rn does; NaN stays NaN. */
static inline bf16 float_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	bf16 h;
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		h.bits = (uint16_t)((u >> 16) | 0x40);
		return h;
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	h.bits = (uint16_t)(u >> 16);
	return h;
}

#if ACT_BF16
typedef bf16 act_t;
static inline float act_load(const act_t *p) { return bf16_to_float(*p); }
static inline void act_store(act_t *p, float v) { *p = float_to_bf16(v); }
#else
typedef float act_t;
static inline float act_load(const act_t *p) { return *p; }
static inline void act_store(act_t *p, float v) { *p = v; }
#endif

#endif

/* emu.h - shared by the device emulator's three libraries (tests/emu/README.md). */
#ifndef MOEC_EMU_H
#define MOEC_EMU_H
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EMU_NO_KERNELS \
	"the device emulator runs no kernels: build the trainer with MOEC_TRAIN_CFLAGS=-DMOEC_EMU_LAUNCH"

/* MOERT_EMU_TRACE=1: each library prints what it did at exit. */
static inline int emu_trace(void)
{
	const char *t = getenv("MOERT_EMU_TRACE");
	return t && *t && *t != '0';
}

/* The emulated driver's check that [p, p + bytes) is device memory (emu_cuda.c), as cuBLASLt
 * and NCCL reach the driver the process loaded. NULL where libcuda.so.1 is not loaded or is
 * not the emulator's: then nothing can be checked. */
typedef int emu_range_fn(const void *p, size_t bytes);
static inline emu_range_fn *emu_device_range(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	emu_range_fn *f = h ? (emu_range_fn *)dlsym(h, "moec_emu_device_range") : NULL;
	if (h)
		dlclose(h); /* drops only the reference NOLOAD took */
	return f;
}

/* bf16 <-> fp32 as the GPU converts: exact widening; round to nearest even, NaN kept. */
static inline float bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)(u >> 16 | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

#endif

// kern_emu.cpp - one transformed template instance per translation unit, as under NVRTC
// (TEMPLATE_H, KNAME, LAUNCHER, KIND and the constants by -D, see run.sh), plus a launcher
// that runs it over a grid under the emulator.
#include "emu.h"
#include "moec_device.cuh"
#define MOEC_KERNEL KNAME
#include TEMPLATE_H
#define STR2(x) #x
extern "C" void LAUNCHER(emu_dim grid, emu_dim block, unsigned smem, const void *a0, const void *a1, const void *a2,
			 const void *a3, const void *a4, const void *a5, const void *a6, const void *a7, const void *a8,
			 const void *a9, int tokens)
{
#if KIND == 0
	emu_launch(grid, block, smem, [=] { KNAME((const act_t *)a0, (const act_t *)a1, (const act_t *)a2, (const int *)a3, (act_t *)a4, (float *)a5, tokens); });
#elif KIND == 1
	emu_launch(grid, block, smem, [=] { KNAME((const act_t *)a0, (const act_t *)a1, (float *)a2, tokens); });
#else
	emu_launch(grid, block, smem, [=] {
		KNAME((const act_t *)a0, (const act_t *)a1, (const act_t *)a2, (const int *)a3, (const act_t *)a4, (const float *)a5,
		      (const float *)a6, (act_t *)a7, (act_t *)a8, (act_t *)a9, tokens);
	});
#endif
}

/* cubin_image.c - moert_cuda_image_kind on real cubins (ctest device/cubin_image, no GPU
 * needed): NVRTC compiles a kernel for each architecture moec builds for, as moec build
 * does, and every cubin must be recognized whole and refused when cut short. The unit
 * test checks hand-made headers; this checks what the trainer actually embeds. */
#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>

#include "device_cuda_internal.h"
#include "testing.h"

static const char src[] = "extern \"C\" __global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }\n";

static char *compile(const char *arch, size_t *size)
{
	nvrtcProgram prog;
	char opt[64];
	snprintf(opt, sizeof opt, "--gpu-architecture=%s", arch);
	const char *opts[] = {opt};
	char *cubin = NULL;
	if (nvrtcCreateProgram(&prog, src, "cubin_image.cu", 0, NULL, NULL) != NVRTC_SUCCESS)
		return NULL;
	nvrtcResult rc = nvrtcCompileProgram(prog, 1, opts);
	if (rc != NVRTC_SUCCESS)
		fprintf(stderr, "NVRTC %s: %s\n", arch, nvrtcGetErrorString(rc));
	else if (nvrtcGetCUBINSize(prog, size) == NVRTC_SUCCESS && *size && (cubin = malloc(*size)) &&
		 nvrtcGetCUBIN(prog, cubin) != NVRTC_SUCCESS) {
		free(cubin);
		cubin = NULL;
	}
	nvrtcDestroyProgram(&prog);
	return cubin;
}

int main(void)
{
	static const char *archs[] = {"sm_80", "sm_90a", "sm_100a"};
	for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
		size_t size = 0;
		char *cubin = compile(archs[i], &size);
		EXPECT(cubin != NULL);
		if (!cubin)
			continue;
		printf("%s: %zu-byte cubin\n", archs[i], size);
		EXPECT_INT(moert_cuda_image_kind(cubin, size), MOERT_IMAGE_CUBIN);
		/* the section headers come last: a cubin cut short is refused, not handed to the driver */
		EXPECT_INT(moert_cuda_image_kind(cubin, size - 1), MOERT_IMAGE_BAD);
		EXPECT_INT(moert_cuda_image_kind(cubin, size / 2), MOERT_IMAGE_BAD);
		free(cubin);
	}
	return testing_report();
}

/* device_cuda.c - one NVIDIA GPU through the CUDA driver API and cuBLASLt (device_cuda.h).
 *
 * cuda.h and cublasLt.h are included for their types and prototypes only: every function
 * is reached through a pointer from dlopen/dlsym, so libmoert links no CUDA library and a
 * trainer starts on machines without a driver. The pointers are declared with
 * __typeof__(the header's prototype), so their signatures are the headers' own, and the
 * dlsym'd names are the headers' macro-expanded ones (cuMemAlloc -> "cuMemAlloc_v2"): a
 * wrong signature or an unversioned name cannot creep in. A direct call by mistake fails
 * the link of every test (no CUDA library is linked), so it cannot slip through either.
 *
 * Not thread-safe: one struct moert_cuda is used from the thread that opened it (the
 * primary context is made current there).
 */
#define _GNU_SOURCE
#include "device_cuda.h"
#include "device_cuda_internal.h"
#include "moert.h"

#include <cublasLt.h>
#include <cuda.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOERT_STR_(x) #x
#define MOERT_STR(x) MOERT_STR_(x)

#define EVENT_SLOTS 8
#define STATIC_SMEM_LIMIT (48u * 1024u) /* above it a kernel must opt in */
#define MM_WORKSPACE (32ull << 20)      /* what cuBLAS recommends for Hopper */

/* ---- the driver's entry points ---- */

/* Every driver function used here, with the older export to fall back on where the
 * header's name is newer than some supported drivers (cuEventElapsedTime_v2: 12.8). */
#define CU_FUNCS(X)                                   \
	X(cuGetErrorName, NULL)                       \
	X(cuGetErrorString, NULL)                     \
	X(cuInit, NULL)                               \
	X(cuDriverGetVersion, NULL)                   \
	X(cuDeviceGetCount, NULL)                     \
	X(cuDeviceGet, NULL)                          \
	X(cuDeviceGetName, NULL)                      \
	X(cuDeviceGetAttribute, NULL)                 \
	X(cuDeviceTotalMem, NULL)                     \
	X(cuDevicePrimaryCtxRetain, NULL)             \
	X(cuDevicePrimaryCtxRelease, NULL)            \
	X(cuCtxSetCurrent, NULL)                      \
	X(cuStreamCreate, NULL)                       \
	X(cuStreamDestroy, NULL)                      \
	X(cuStreamSynchronize, NULL)                  \
	X(cuMemAlloc, NULL)                           \
	X(cuMemFree, NULL)                            \
	X(cuMemcpyHtoDAsync, NULL)                    \
	X(cuMemcpyDtoHAsync, NULL)                    \
	X(cuMemcpyDtoDAsync, NULL)                    \
	X(cuMemsetD8Async, NULL)                      \
	X(cuModuleLoadData, NULL)                     \
	X(cuModuleUnload, NULL)                       \
	X(cuModuleGetFunction, NULL)                  \
	X(cuFuncGetAttribute, NULL)                   \
	X(cuFuncSetAttribute, NULL)                   \
	X(cuLaunchKernel, NULL)                       \
	X(cuEventCreate, NULL)                        \
	X(cuEventDestroy, NULL)                       \
	X(cuEventRecord, NULL)                        \
	X(cuEventSynchronize, NULL)                   \
	X(cuEventElapsedTime, "cuEventElapsedTime")

/* Member names go through the same macros as the prototypes (cuMemAlloc is the member
 * cuMemAlloc_v2), so d->cu.cuMemAlloc(...) reads like the API. */
struct cu_api {
#define CU_MEMBER(name, fallback) __typeof__(name) *name;
	CU_FUNCS(CU_MEMBER)
#undef CU_MEMBER
};

struct dl_sym {
	const char *name, *fallback;
	size_t off;
};

static const struct dl_sym cu_syms[] = {
#define CU_SYM(name, fallback) {MOERT_STR(name), fallback, offsetof(struct cu_api, name)},
	CU_FUNCS(CU_SYM)
#undef CU_SYM
};
#define N_CU_SYMS (sizeof cu_syms / sizeof cu_syms[0])

/* ---- cuBLASLt's ---- */

#define LT_FUNCS(X)                             \
	X(cublasLtCreate)                       \
	X(cublasLtDestroy)                      \
	X(cublasLtGetStatusName)                \
	X(cublasLtGetStatusString)              \
	X(cublasLtGetVersion)                   \
	X(cublasLtMatmulDescCreate)             \
	X(cublasLtMatmulDescDestroy)            \
	X(cublasLtMatmulDescSetAttribute)       \
	X(cublasLtMatrixLayoutCreate)           \
	X(cublasLtMatrixLayoutDestroy)          \
	X(cublasLtMatmulPreferenceCreate)       \
	X(cublasLtMatmulPreferenceDestroy)      \
	X(cublasLtMatmulPreferenceSetAttribute) \
	X(cublasLtMatmulAlgoGetHeuristic)       \
	X(cublasLtMatmul)

struct lt_api {
#define LT_MEMBER(name) __typeof__(name) *name;
	LT_FUNCS(LT_MEMBER)
#undef LT_MEMBER
};

static const struct dl_sym lt_syms[] = {
#define LT_SYM(name) {MOERT_STR(name), NULL, offsetof(struct lt_api, name)},
	LT_FUNCS(LT_SYM)
#undef LT_SYM
};
#define N_LT_SYMS (sizeof lt_syms / sizeof lt_syms[0])

/* One cached GEMM: its descriptors and the algorithm the heuristic chose for them. */
struct mm_entry {
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t a, b, c; /* cuBLASLt's A (the caller's B), B (the caller's A), C = D */
	cublasLtMatmulAlgo_t algo;
};

struct module {
	const void *image;
	CUmodule mod;
};

struct kernel {
	CUfunction fn;
	char *name;
};

struct moert_cuda {
	void *lib;
	struct cu_api cu;
	int ordinal;
	CUdevice dev;
	CUcontext ctx; /* the retained primary context; NULL until retained */
	CUstream stream;
	int cc, sms, smem_optin, driver_version;
	size_t total_mem;
	size_t allocated; /* by moert_cuda_alloc, frees not subtracted: the trainer allocates once */
	char desc[320];

	struct module *mods;
	int nmods, capmods;
	struct kernel *kernels;
	int nkernels, capkernels;

	CUevent events[EVENT_SLOTS];
	unsigned marked; /* bit i: slot i was recorded */

	/* cuBLASLt, loaded by moert_cuda_mm_init */
	void *ltlib;
	char ltpath[256];
	struct lt_api lt;
	cublasLtHandle_t lt_handle;
	CUdeviceptr workspace;
	struct moert_mm_table mm;
};

/* ---- messages ---- */

void moert_cuda_fmt_bytes(size_t bytes, char *buf, size_t n)
{
	static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
	if (bytes < 1024) {
		snprintf(buf, n, "%zu bytes", bytes);
		return;
	}
	double v = (double)bytes / 1024.0;
	int u = 0;
	while (v >= 1024.0 && u < 3) {
		v /= 1024.0;
		u++;
	}
	/* "32 MiB", not "32.0 MiB"; one decimal otherwise */
	if (v == (double)(long long)v)
		snprintf(buf, n, "%.0f %s", v, units[u]);
	else
		snprintf(buf, n, "%.1f %s", v, units[u]);
}

void moert_cuda_fmt_describe(char *buf, size_t n, const char *name, int cc_major, int cc_minor, int sms,
			     size_t total_bytes)
{
	snprintf(buf, n, "%s, sm_%d%d, %d SMs, %.1f GiB", name, cc_major, cc_minor, sms,
		 (double)total_bytes / (1024.0 * 1024.0 * 1024.0));
}

/* "CUDA_ERROR_OUT_OF_MEMORY: out of memory"; the stub library and unknown codes have no
 * names, so fall back on the number. */
static void cu_result_text(const struct cu_api *cu, CUresult r, char *buf, size_t n)
{
	const char *name = NULL, *str = NULL;
	if (cu->cuGetErrorName && cu->cuGetErrorName(r, &name) != CUDA_SUCCESS)
		name = NULL;
	if (cu->cuGetErrorString && cu->cuGetErrorString(r, &str) != CUDA_SUCCESS)
		str = NULL;
	if (name && str)
		snprintf(buf, n, "%s: %s", name, str);
	else if (name)
		snprintf(buf, n, "%s", name);
	else
		snprintf(buf, n, "CUDA error %d", (int)r);
}

/* What to do about the errors that have a usual cause. */
static const char *cu_hint(CUresult r)
{
	switch (r) {
	case CUDA_ERROR_ILLEGAL_ADDRESS:
	case CUDA_ERROR_LAUNCH_FAILED:
	case CUDA_ERROR_ILLEGAL_INSTRUCTION:
	case CUDA_ERROR_MISALIGNED_ADDRESS:
	case CUDA_ERROR_HARDWARE_STACK_ERROR:
	case CUDA_ERROR_INVALID_PC:
	case CUDA_ERROR_ASSERT:
	case CUDA_ERROR_LAUNCH_TIMEOUT:
		return "; a kernel queued before this point faulted and the CUDA context is now unusable "
		       "(rerun with CUDA_LAUNCH_BLOCKING=1, or under compute-sanitizer, to find which)";
	case CUDA_ERROR_OUT_OF_MEMORY:
		return "; the GPU is out of memory (another process on it? check nvidia-smi)";
	default:
		return "";
	}
}

void moert_cuda_result_text(const struct moert_cuda *d, int rc, char *buf, size_t n)
{
	char text[256];
	cu_result_text(&d->cu, (CUresult)rc, text, sizeof text);
	snprintf(buf, n, "%s%s", text, cu_hint((CUresult)rc));
}

/* err = "<what>: <NAME>: <text><hint>"; returns -1 so callers can `return cu_fail(...)`. */
static int cu_fail(const struct cu_api *cu, CUresult r, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int cu_fail(const struct cu_api *cu, CUresult r, char *err, size_t errlen, const char *fmt, ...)
{
	char what[512], text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	cu_result_text(cu, r, text, sizeof text);
	moert_seterr(err, errlen, "%s: %s%s", what, text, cu_hint(r));
	return -1;
}

static int lt_fail(const struct lt_api *lt, cublasStatus_t s, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int lt_fail(const struct lt_api *lt, cublasStatus_t s, char *err, size_t errlen, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	const char *name = lt->cublasLtGetStatusName ? lt->cublasLtGetStatusName(s) : NULL;
	const char *str = lt->cublasLtGetStatusString ? lt->cublasLtGetStatusString(s) : NULL;
	moert_seterr(err, errlen, "%s: %s: %s", what, name ? name : "cuBLAS status", str ? str : "(no description)");
	return -1;
}

/* ---- dlopen/dlsym ---- */

/* Fill the table at `table` from lib; the first symbol missing is named in err. */
static int resolve(void *lib, const char *libname, const struct dl_sym *syms, size_t n, void *table, char *err,
		   size_t errlen, const char *what_to_do)
{
	for (size_t i = 0; i < n; i++) {
		void *p = dlsym(lib, syms[i].name);
		if (!p && syms[i].fallback)
			p = dlsym(lib, syms[i].fallback);
		if (!p) {
			moert_seterr(err, errlen, "%s has no %s: %s", libname, syms[i].name, what_to_do);
			return -1;
		}
		/* POSIX guarantees a dlsym'd object pointer converts to the function's. */
		memcpy((char *)table + syms[i].off, &p, sizeof p);
	}
	return (int)n;
}

#define DRIVER_TOO_OLD                                                                   \
	"the NVIDIA driver is too old for this runtime (CUDA 12 or newer needed); update it, " \
	"or run on the CPU backend (--device cpu)"

static void *driver_dlopen(const char *lib_path, char *err, size_t errlen)
{
	void *lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		const char *why = dlerror();
		moert_seterr(err, errlen,
		       "no CUDA driver: dlopen %s failed (%s); this machine has no NVIDIA driver - run on the CPU "
		       "backend (--device cpu)",
		       lib_path, why ? why : "unknown error");
	}
	return lib;
}

const char *moert_cuda_driver_symbol(int i)
{
	return i >= 0 && (size_t)i < N_CU_SYMS ? cu_syms[i].name : NULL;
}

int moert_cuda_check_driver_symbols(const char *lib_path, char *err, size_t errlen)
{
	/* Never dlclose a driver: it may have started threads (see moert_cuda_close). */
	void *lib = driver_dlopen(lib_path, err, errlen);
	if (!lib)
		return -1;
	struct cu_api cu;
	return resolve(lib, lib_path, cu_syms, N_CU_SYMS, &cu, err, errlen, DRIVER_TOO_OLD);
}

/* ---- open / close ---- */

/* cuInit's failures, each with what it means on this machine. */
static int init_fail(struct moert_cuda *d, const char *lib_path, CUresult r, char *err, size_t errlen)
{
	const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
	char text[256];
	cu_result_text(&d->cu, r, text, sizeof text);
	switch (r) {
	case CUDA_ERROR_NO_DEVICE:
		moert_seterr(err, errlen,
		       "no CUDA device: cuInit: %s (CUDA_VISIBLE_DEVICES=%s; nvidia-smi lists the GPUs); run on the "
		       "CPU backend (--device cpu)",
		       text, cvd ? cvd : "(unset)");
		break;
	case CUDA_ERROR_STUB_LIBRARY:
		moert_seterr(err, errlen,
		       "no CUDA driver: %s is the CUDA toolkit's stub library, not a driver (cuInit: %s); install the "
		       "NVIDIA driver or run on the CPU backend (--device cpu)",
		       lib_path, text);
		break;
	case CUDA_ERROR_SYSTEM_NOT_READY:
		moert_seterr(err, errlen,
		       "cuInit: %s; a driver daemon is not running (on NVSwitch machines, nvidia-fabricmanager): "
		       "start it, or run on the CPU backend (--device cpu)",
		       text);
		break;
	case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
	case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
		moert_seterr(err, errlen,
		       "cuInit: %s; the driver library (%s) and the kernel module disagree or are too old: "
		       "update the NVIDIA driver (nvidia-smi shows its version)",
		       text, lib_path);
		break;
	default:
		moert_seterr(err, errlen, "cuInit: %s; check the driver with nvidia-smi", text);
	}
	return -1;
}

static int device_attr(struct moert_cuda *d, CUdevice_attribute a, const char *what, int *out, char *err,
		       size_t errlen)
{
	CUresult r = d->cu.cuDeviceGetAttribute(out, a, d->dev);
	return r == CUDA_SUCCESS ? 0 : cu_fail(&d->cu, r, err, errlen, "cuDeviceGetAttribute(%s)", what);
}

/* Name, compute capability, SMs, memory: what describe and the error messages need. */
static int query_device(struct moert_cuda *d, char *err, size_t errlen)
{
	char name[256];
	int major, minor;
	CUresult r = d->cu.cuDeviceGetName(name, (int)sizeof name, d->dev);
	if (r != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "cuDeviceGetName(device %d)", d->ordinal);
	name[sizeof name - 1] = 0;
	if (device_attr(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "compute capability major", &major, err,
			errlen) ||
	    device_attr(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "compute capability minor", &minor, err,
			errlen) ||
	    device_attr(d, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "multiprocessor count", &d->sms, err, errlen) ||
	    device_attr(d, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "opt-in shared memory per block",
			&d->smem_optin, err, errlen))
		return -1;
	r = d->cu.cuDeviceTotalMem(&d->total_mem, d->dev);
	if (r != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "cuDeviceTotalMem(device %d)", d->ordinal);
	if (d->cu.cuDriverGetVersion(&d->driver_version) != CUDA_SUCCESS)
		d->driver_version = 0;
	d->cc = major * 10 + minor;
	moert_cuda_fmt_describe(d->desc, sizeof d->desc, name, major, minor, d->sms, d->total_mem);
	return 0;
}

/* The device, its primary context (shared with any CUDA runtime user in the process,
 * cuBLASLt included, which is why it is the primary one), and our stream. */
static int open_device(struct moert_cuda *d, char *err, size_t errlen)
{
	int count = 0;
	CUresult r = d->cu.cuDeviceGetCount(&count);
	if (r != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "cuDeviceGetCount");
	const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
	if (count <= 0) {
		moert_seterr(err, errlen,
		       "no CUDA device: the driver sees none (CUDA_VISIBLE_DEVICES=%s); run on the CPU backend "
		       "(--device cpu)",
		       cvd ? cvd : "(unset)");
		return -1;
	}
	if (d->ordinal < 0 || d->ordinal >= count) {
		moert_seterr(err, errlen,
		       "CUDA device %d requested, but %d visible (CUDA_VISIBLE_DEVICES=%s); use a device index "
		       "from 0 to %d, or fewer ranks per node",
		       d->ordinal, count, cvd ? cvd : "(unset)", count - 1);
		return -1;
	}
	if ((r = d->cu.cuDeviceGet(&d->dev, d->ordinal)) != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "cuDeviceGet(%d)", d->ordinal);
	if (query_device(d, err, errlen))
		return -1;
	CUcontext ctx;
	if ((r = d->cu.cuDevicePrimaryCtxRetain(&ctx, d->dev)) != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "cuDevicePrimaryCtxRetain(device %d, %s)", d->ordinal,
			       d->desc);
	d->ctx = ctx;
	if ((r = d->cu.cuCtxSetCurrent(ctx)) != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "cuCtxSetCurrent(device %d)", d->ordinal);
	/* Non-blocking: nothing else in the process (a library using the legacy default
	 * stream) serializes with the trainer's work. */
	if ((r = d->cu.cuStreamCreate(&d->stream, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS) {
		d->stream = NULL;
		return cu_fail(&d->cu, r, err, errlen, "cuStreamCreate");
	}
	return 0;
}

int moert_cuda_open_lib(const char *lib_path, int ordinal, struct moert_cuda **out, char *err, size_t errlen)
{
	*out = NULL;
	void *lib = driver_dlopen(lib_path, err, errlen);
	if (!lib)
		return -1;
	struct moert_cuda *d = calloc(1, sizeof *d);
	if (!d) {
		moert_seterr(err, errlen, "moert_cuda_open: out of host memory");
		return -1;
	}
	d->lib = lib;
	d->ordinal = ordinal;
	if (resolve(lib, lib_path, cu_syms, N_CU_SYMS, &d->cu, err, errlen, DRIVER_TOO_OLD) < 0) {
		free(d);
		return -1;
	}
	CUresult r = d->cu.cuInit(0);
	if (r != CUDA_SUCCESS) {
		init_fail(d, lib_path, r, err, errlen);
		free(d);
		return -1;
	}
	if (open_device(d, err, errlen)) {
		moert_cuda_close(d);
		return -1;
	}
	*out = d;
	return 0;
}

int moert_cuda_open(int ordinal, struct moert_cuda **out, char *err, size_t errlen)
{
	return moert_cuda_open_lib("libcuda.so.1", ordinal, out, err, errlen);
}

static void mm_entry_free(struct moert_cuda *d, struct mm_entry *e)
{
	if (!e)
		return;
	if (e->desc)
		d->lt.cublasLtMatmulDescDestroy(e->desc);
	if (e->a)
		d->lt.cublasLtMatrixLayoutDestroy(e->a);
	if (e->b)
		d->lt.cublasLtMatrixLayoutDestroy(e->b);
	if (e->c)
		d->lt.cublasLtMatrixLayoutDestroy(e->c);
	free(e);
}

/* Everything is released in the reverse order of creation while the context is still
 * alive. The libraries stay loaded: the driver and cuBLASLt keep threads and exit hooks,
 * and unloading them under those is a crash; a later open reuses the loaded copies. */
void moert_cuda_close(struct moert_cuda *d)
{
	if (!d)
		return;
	if (d->stream)
		d->cu.cuStreamSynchronize(d->stream);
	for (size_t i = 0; i < d->mm.cap; i++)
		mm_entry_free(d, d->mm.vals ? d->mm.vals[i] : NULL);
	moert_mm_table_free(&d->mm);
	if (d->lt_handle)
		d->lt.cublasLtDestroy(d->lt_handle);
	if (d->workspace)
		d->cu.cuMemFree(d->workspace);
	for (int i = 0; i < EVENT_SLOTS; i++)
		if (d->events[i])
			d->cu.cuEventDestroy(d->events[i]);
	for (int i = 0; i < d->nmods; i++)
		d->cu.cuModuleUnload(d->mods[i].mod);
	free(d->mods);
	for (int i = 0; i < d->nkernels; i++)
		free(d->kernels[i].name);
	free(d->kernels);
	if (d->stream)
		d->cu.cuStreamDestroy(d->stream);
	if (d->ctx)
		d->cu.cuDevicePrimaryCtxRelease(d->dev);
	free(d);
}

const char *moert_cuda_describe(const struct moert_cuda *d)
{
	return d->desc;
}

int moert_cuda_cc(const struct moert_cuda *d)
{
	return d->cc;
}

void *moert_cuda_launch_kernel_fn(const struct moert_cuda *d)
{
	return (void *)d->cu.cuLaunchKernel;
}

void *moert_cuda_stream(const struct moert_cuda *d)
{
	return (void *)d->stream;
}

/* ---- memory ---- */

int moert_cuda_alloc(struct moert_cuda *d, size_t bytes, moert_dptr *out, char *err, size_t errlen)
{
	CUdeviceptr p = 0;
	CUresult r = d->cu.cuMemAlloc(&p, bytes ? bytes : 1);
	if (r != CUDA_SUCCESS) {
		char b[32], t[32];
		moert_cuda_fmt_bytes(bytes, b, sizeof b);
		moert_cuda_fmt_bytes(d->total_mem, t, sizeof t);
		*out = 0;
		return cu_fail(&d->cu, r, err, errlen, "cuMemAlloc(%s of %s on %s)", b, t, d->desc);
	}
	*out = (moert_dptr)p;
	d->allocated += bytes;
	return 0;
}

size_t moert_cuda_allocated(const struct moert_cuda *d)
{
	return d->allocated;
}

void moert_cuda_free(struct moert_cuda *d, moert_dptr p)
{
	if (p)
		d->cu.cuMemFree((CUdeviceptr)p);
}

int moert_cuda_h2d(struct moert_cuda *d, moert_dptr dst, const void *src, size_t bytes, char *err, size_t errlen)
{
	if (!bytes)
		return 0;
	CUresult r = d->cu.cuMemcpyHtoDAsync((CUdeviceptr)dst, src, bytes, d->stream);
	if (r == CUDA_SUCCESS)
		return 0;
	char b[32];
	moert_cuda_fmt_bytes(bytes, b, sizeof b);
	return cu_fail(&d->cu, r, err, errlen, "cuMemcpyHtoDAsync(%s to 0x%llx)", b, (unsigned long long)dst);
}

int moert_cuda_d2h(struct moert_cuda *d, void *dst, moert_dptr src, size_t bytes, char *err, size_t errlen)
{
	if (!bytes)
		return 0;
	CUresult r = d->cu.cuMemcpyDtoHAsync(dst, (CUdeviceptr)src, bytes, d->stream);
	if (r == CUDA_SUCCESS)
		return 0;
	char b[32];
	moert_cuda_fmt_bytes(bytes, b, sizeof b);
	return cu_fail(&d->cu, r, err, errlen, "cuMemcpyDtoHAsync(%s from 0x%llx)", b, (unsigned long long)src);
}

int moert_cuda_d2d(struct moert_cuda *d, moert_dptr dst, moert_dptr src, size_t bytes, char *err, size_t errlen)
{
	if (!bytes)
		return 0;
	CUresult r = d->cu.cuMemcpyDtoDAsync((CUdeviceptr)dst, (CUdeviceptr)src, bytes, d->stream);
	if (r == CUDA_SUCCESS)
		return 0;
	char b[32];
	moert_cuda_fmt_bytes(bytes, b, sizeof b);
	return cu_fail(&d->cu, r, err, errlen, "cuMemcpyDtoDAsync(%s from 0x%llx to 0x%llx)", b, (unsigned long long)src,
		       (unsigned long long)dst);
}

int moert_cuda_memset(struct moert_cuda *d, moert_dptr dst, int byte, size_t bytes, char *err, size_t errlen)
{
	if (!bytes)
		return 0;
	CUresult r = d->cu.cuMemsetD8Async((CUdeviceptr)dst, (unsigned char)byte, bytes, d->stream);
	if (r == CUDA_SUCCESS)
		return 0;
	char b[32];
	moert_cuda_fmt_bytes(bytes, b, sizeof b);
	return cu_fail(&d->cu, r, err, errlen, "cuMemsetD8Async(%s at 0x%llx)", b, (unsigned long long)dst);
}

int moert_cuda_sync(struct moert_cuda *d, char *err, size_t errlen)
{
	CUresult r = d->cu.cuStreamSynchronize(d->stream);
	return r == CUDA_SUCCESS ? 0 : cu_fail(&d->cu, r, err, errlen, "cuStreamSynchronize");
}

/* ---- modules and kernels ---- */

static uint64_t rd64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static unsigned rd16(const unsigned char *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* ELF64 little-endian whose program and section header tables lie inside size. */
static int elf_ok(const unsigned char *p, size_t size)
{
	if (size < 64 || memcmp(p, "\x7f" "ELF", 4) || p[4] != 2 /* ELFCLASS64 */ || p[5] != 1 /* LSB */)
		return 0;
	uint64_t phoff = rd64(p + 0x20), shoff = rd64(p + 0x28);
	uint64_t ph = (uint64_t)rd16(p + 0x36) * rd16(p + 0x38), sh = (uint64_t)rd16(p + 0x3a) * rd16(p + 0x3c);
	return phoff <= size && ph <= size - phoff && shoff <= size && sh <= size - shoff;
}

enum moert_image_kind moert_cuda_image_kind(const void *image, size_t size)
{
	const unsigned char *p = image;
	if (!p || size < 4)
		return MOERT_IMAGE_BAD;
	if (!memcmp(p, "\x7f" "ELF", 4))
		return elf_ok(p, size) ? MOERT_IMAGE_CUBIN : MOERT_IMAGE_BAD;
	/* fatbin: magic 0xBA55ED50, u16 version, u16 header size, u64 size of what follows */
	if (p[0] == 0x50 && p[1] == 0xed && p[2] == 0x55 && p[3] == 0xba) {
		if (size < 16)
			return MOERT_IMAGE_BAD;
		uint64_t hdr = rd16(p + 6), body = rd64(p + 8);
		return hdr >= 16 && hdr <= size && body <= size - hdr ? MOERT_IMAGE_FATBIN : MOERT_IMAGE_BAD;
	}
	/* PTX: text the driver reads up to its NUL, which must lie inside the image */
	int text = p[0] == '\t' || p[0] == '\n' || p[0] == '\r' || (p[0] >= 0x20 && p[0] < 0x7f);
	if (text && memchr(p, 0, size))
		return MOERT_IMAGE_PTX;
	return MOERT_IMAGE_BAD;
}

static const char *module_load_hint(const struct moert_cuda *d, CUresult r, char *buf, size_t n)
{
	switch (r) {
	case CUDA_ERROR_NO_BINARY_FOR_GPU:
		snprintf(buf, n, "; the cubin was built for another GPU than this sm_%d: rebuild the trainer with moec "
				 "build --arch for it", d->cc);
		return buf;
	case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
	case CUDA_ERROR_INVALID_IMAGE:
	case CUDA_ERROR_INVALID_PTX:
		snprintf(buf, n, "; the image is damaged, or newer than this driver (CUDA %d.%d) understands: "
				 "update the driver or rebuild the trainer",
			 d->driver_version / 1000, d->driver_version % 1000 / 10);
		return buf;
	default:
		return "";
	}
}

/* One module per image: the kernels of one cubin share it. */
static int module_get(struct moert_cuda *d, const void *image, size_t size, const char *kernel, CUmodule *out,
		      char *err, size_t errlen)
{
	for (int i = 0; i < d->nmods; i++)
		if (d->mods[i].image == image) {
			*out = d->mods[i].mod;
			return 0;
		}
	if (d->nmods == d->capmods) {
		int cap = d->capmods ? 2 * d->capmods : 16;
		struct module *m = realloc(d->mods, (size_t)cap * sizeof *m);
		if (!m) {
			moert_seterr(err, errlen, "kernel %s: out of host memory", kernel);
			return -1;
		}
		d->mods = m;
		d->capmods = cap;
	}
	CUmodule mod;
	CUresult r = d->cu.cuModuleLoadData(&mod, image);
	if (r != CUDA_SUCCESS) {
		char sz[32], what[512], hint[256];
		moert_cuda_fmt_bytes(size, sz, sizeof sz);
		snprintf(what, sizeof what, "kernel %s: cuModuleLoadData(%s image) on %s", kernel, sz, d->desc);
		cu_fail(&d->cu, r, err, errlen, "%s", what);
		moert_adderr(err, errlen, "%s", module_load_hint(d, r, hint, sizeof hint));
		return -1;
	}
	d->mods[d->nmods++] = (struct module){image, mod};
	*out = mod;
	return 0;
}

/* Above 48 KiB a kernel must ask for its dynamic shared memory, and static plus dynamic
 * must fit the device's opt-in limit: say so in those terms rather than as INVALID_VALUE. */
static int raise_smem(struct moert_cuda *d, CUfunction f, const char *name, unsigned dyn_smem, char *err,
		      size_t errlen)
{
	int static_smem = 0;
	CUresult r = d->cu.cuFuncGetAttribute(&static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f);
	if (r != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "kernel %s: cuFuncGetAttribute(SHARED_SIZE_BYTES)", name);
	if ((uint64_t)dyn_smem + (uint64_t)static_smem > (uint64_t)d->smem_optin) {
		moert_seterr(err, errlen,
		       "kernel %s: needs %u bytes of dynamic and %d of static shared memory per block, but %s allows "
		       "at most %d; rebuild the trainer for this GPU (moec build --arch) or with smaller tiles",
		       name, dyn_smem, static_smem, d->desc, d->smem_optin);
		return -1;
	}
	r = d->cu.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)dyn_smem);
	if (r != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "kernel %s: cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, %u)",
			       name, dyn_smem);
	return 0;
}

/* Kernel names, so launch errors say which kernel failed. */
static int remember_kernel(struct moert_cuda *d, CUfunction f, const char *name, char *err, size_t errlen)
{
	for (int i = 0; i < d->nkernels; i++)
		if (d->kernels[i].fn == f)
			return 0;
	if (d->nkernels == d->capkernels) {
		int cap = d->capkernels ? 2 * d->capkernels : 32;
		struct kernel *k = realloc(d->kernels, (size_t)cap * sizeof *k);
		if (!k) {
			moert_seterr(err, errlen, "kernel %s: out of host memory", name);
			return -1;
		}
		d->kernels = k;
		d->capkernels = cap;
	}
	char *copy = strdup(name);
	if (!copy) {
		moert_seterr(err, errlen, "kernel %s: out of host memory", name);
		return -1;
	}
	d->kernels[d->nkernels++] = (struct kernel){f, copy};
	return 0;
}

static const char *kernel_name(const struct moert_cuda *d, CUfunction f)
{
	for (int i = 0; i < d->nkernels; i++)
		if (d->kernels[i].fn == f)
			return d->kernels[i].name;
	return "(unknown kernel)";
}

int moert_cuda_kernel(struct moert_cuda *d, const void *cubin, size_t size, const char *name, unsigned dyn_smem,
		      moert_cuda_fn *out, char *err, size_t errlen)
{
	*out = NULL;
	if (!name)
		name = "(null)";
	if (moert_cuda_image_kind(cubin, size) == MOERT_IMAGE_BAD) {
		char sz[32];
		moert_cuda_fmt_bytes(size, sz, sizeof sz);
		moert_seterr(err, errlen,
		       "kernel %s: the image (%s) is not a cubin, fatbin or NUL-terminated PTX (or is cut short); "
		       "rebuild the trainer with moec build",
		       name, sz);
		return -1;
	}
	CUmodule mod;
	if (module_get(d, cubin, size, name, &mod, err, errlen))
		return -1;
	CUfunction f;
	CUresult r = d->cu.cuModuleGetFunction(&f, mod, name);
	if (r != CUDA_SUCCESS) {
		cu_fail(&d->cu, r, err, errlen, "kernel %s: cuModuleGetFunction", name);
		if (r == CUDA_ERROR_NOT_FOUND)
			moert_adderr(err, errlen,
				   "; the kernel is not in its cubin: the trainer's kernel table and cubins disagree, "
				   "rebuild with moec build");
		return -1;
	}
	if (dyn_smem > STATIC_SMEM_LIMIT && raise_smem(d, f, name, dyn_smem, err, errlen))
		return -1;
	if (remember_kernel(d, f, name, err, errlen))
		return -1;
	*out = (moert_cuda_fn)f;
	return 0;
}

int moert_cuda_launch(struct moert_cuda *d, moert_cuda_fn f, const unsigned grid[3], const unsigned block[3],
		      unsigned smem, void **args, char *err, size_t errlen)
{
	CUfunction fn = (CUfunction)f;
	CUresult r = d->cu.cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem,
					  d->stream, args, NULL);
	if (r == CUDA_SUCCESS)
		return 0;
	return cu_fail(&d->cu, r, err, errlen, "cuLaunchKernel(%s, grid %ux%ux%u, block %ux%ux%u, %u bytes dynamic smem)",
		       kernel_name(d, fn), grid[0], grid[1], grid[2], block[0], block[1], block[2], smem);
}

int moert_cuda_module_count(const struct moert_cuda *d)
{
	return d->nmods;
}

/* ---- events ---- */

int moert_cuda_mark(struct moert_cuda *d, int slot, char *err, size_t errlen)
{
	if (slot < 0 || slot >= EVENT_SLOTS) {
		moert_seterr(err, errlen, "moert_cuda_mark: event slot %d is out of range 0..%d", slot, EVENT_SLOTS - 1);
		return -1;
	}
	CUresult r;
	if (!d->events[slot] && (r = d->cu.cuEventCreate(&d->events[slot], CU_EVENT_DEFAULT)) != CUDA_SUCCESS) {
		d->events[slot] = NULL;
		return cu_fail(&d->cu, r, err, errlen, "cuEventCreate(slot %d)", slot);
	}
	if ((r = d->cu.cuEventRecord(d->events[slot], d->stream)) != CUDA_SUCCESS)
		return cu_fail(&d->cu, r, err, errlen, "cuEventRecord(slot %d)", slot);
	d->marked |= 1u << slot;
	return 0;
}

int moert_cuda_elapsed_ms(struct moert_cuda *d, int from_slot, int to_slot, float *ms, char *err, size_t errlen)
{
	int slots[2] = {from_slot, to_slot};
	for (int i = 0; i < 2; i++) {
		if (slots[i] < 0 || slots[i] >= EVENT_SLOTS || !(d->marked & 1u << slots[i])) {
			moert_seterr(err, errlen, "moert_cuda_elapsed_ms: event slot %d was never marked (moert_cuda_mark first)",
			       slots[i]);
			return -1;
		}
		CUresult r = d->cu.cuEventSynchronize(d->events[slots[i]]);
		if (r != CUDA_SUCCESS)
			return cu_fail(&d->cu, r, err, errlen, "cuEventSynchronize(slot %d)", slots[i]);
	}
	CUresult r = d->cu.cuEventElapsedTime(ms, d->events[from_slot], d->events[to_slot]);
	return r == CUDA_SUCCESS ? 0
				 : cu_fail(&d->cu, r, err, errlen, "cuEventElapsedTime(slot %d to %d)", from_slot, to_slot);
}

/* ---- GEMM: mapping, cache table ---- */

static int64_t ld_of(uint64_t rows)
{
	return rows ? (int64_t)rows : 1; /* cuBLASLt wants ld >= max(1, rows) */
}

int moert_mm_map(enum moert_mm_op op, int M, int N, int K, struct moert_mm_map *out)
{
	if ((unsigned)op > MOERT_MM_TN || M < 0 || N < 0 || K < 0)
		return -1;
	memset(out, 0, sizeof *out);
	out->m = (uint64_t)N;
	out->n = (uint64_t)M;
	out->k = (uint64_t)K;
	out->c_rows = (uint64_t)N;
	out->c_cols = (uint64_t)M;
	switch (op) {
	case MOERT_MM_NT: /* caller B[N,K] is column-major K x N; transposed it is op(LtA) = N x K */
		out->transa = 1;
		out->a_rows = (uint64_t)K;
		out->a_cols = (uint64_t)N;
		out->b_rows = (uint64_t)K; /* caller A[M,K]: column-major K x M = A^T */
		out->b_cols = (uint64_t)M;
		break;
	case MOERT_MM_NN: /* caller B[K,N] is column-major N x K = B^T */
		out->a_rows = (uint64_t)N;
		out->a_cols = (uint64_t)K;
		out->b_rows = (uint64_t)K; /* caller A[M,K]: column-major K x M = A^T */
		out->b_cols = (uint64_t)M;
		break;
	case MOERT_MM_TN: /* caller A[K,M] is column-major M x K = A^T; transposed it is A = K x M */
		out->a_rows = (uint64_t)N; /* caller B[K,N] is column-major N x K = B^T */
		out->a_cols = (uint64_t)K;
		out->transb = 1;
		out->b_rows = (uint64_t)M;
		out->b_cols = (uint64_t)K;
		break;
	}
	out->lda = ld_of(out->a_rows);
	out->ldb = ld_of(out->b_rows);
	out->ldc = ld_of(out->c_rows);
	return 0;
}

const char *moert_mm_op_name(enum moert_mm_op op)
{
	switch (op) {
	case MOERT_MM_NT:
		return "NT";
	case MOERT_MM_NN:
		return "NN";
	case MOERT_MM_TN:
		return "TN";
	}
	return "?";
}

unsigned moert_cuda_align(uint64_t addr)
{
	if (!addr)
		return 256;
	uint64_t low = addr & (~addr + 1); /* lowest set bit */
	return low >= 256 ? 256 : (unsigned)low;
}

static uint64_t key_hash(const struct moert_mm_key *k)
{
	uint64_t fields[10] = {(uint64_t)k->op, (uint64_t)k->m, (uint64_t)k->n, (uint64_t)k->k, k->ab_bf16, k->c_bf16,
			       k->beta_nz, k->align_a, k->align_b, k->align_c};
	uint64_t h = 1469598103934665603ull; /* FNV-1a over the fields, not the padded struct */
	for (int i = 0; i < 10; i++)
		for (int b = 0; b < 8; b++) {
			h ^= (fields[i] >> (8 * b)) & 0xff;
			h *= 1099511628211ull;
		}
	return h;
}

static int key_eq(const struct moert_mm_key *a, const struct moert_mm_key *b)
{
	return a->op == b->op && a->m == b->m && a->n == b->n && a->k == b->k && a->ab_bf16 == b->ab_bf16 &&
	       a->c_bf16 == b->c_bf16 && a->beta_nz == b->beta_nz && a->align_a == b->align_a &&
	       a->align_b == b->align_b && a->align_c == b->align_c;
}

void *moert_mm_table_find(const struct moert_mm_table *t, const struct moert_mm_key *k)
{
	if (!t->cap)
		return NULL;
	for (size_t i = key_hash(k) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		if (!t->vals[i])
			return NULL;
		if (key_eq(&t->keys[i], k))
			return t->vals[i];
	}
}

static void table_put(struct moert_mm_key *keys, void **vals, size_t cap, const struct moert_mm_key *k, void *val)
{
	size_t i = key_hash(k) & (cap - 1);
	while (vals[i])
		i = (i + 1) & (cap - 1);
	keys[i] = *k;
	vals[i] = val;
}

/* Open addressing, power-of-two capacity, at most half full so probes stay short. */
int moert_mm_table_insert(struct moert_mm_table *t, const struct moert_mm_key *k, void *val)
{
	if (2 * (t->n + 1) > t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		struct moert_mm_key *keys = calloc(cap, sizeof *keys);
		void **vals = calloc(cap, sizeof *vals);
		if (!keys || !vals) {
			free(keys);
			free(vals);
			return -1;
		}
		for (size_t i = 0; i < t->cap; i++)
			if (t->vals[i])
				table_put(keys, vals, cap, &t->keys[i], t->vals[i]);
		free(t->keys);
		free(t->vals);
		t->keys = keys;
		t->vals = vals;
		t->cap = cap;
	}
	table_put(t->keys, t->vals, t->cap, k, val);
	t->n++;
	return 0;
}

void moert_mm_table_free(struct moert_mm_table *t)
{
	free(t->keys);
	free(t->vals);
	memset(t, 0, sizeof *t);
}

int moert_cuda_mm_cache_count(const struct moert_cuda *d)
{
	return (int)d->mm.n;
}

/* ---- GEMM: cuBLASLt ---- */

/* strlcpy: copies what fits, always terminated. */
static void copy_str(char *dst, size_t n, const char *src)
{
	size_t len = strnlen(src, n - 1);
	memcpy(dst, src, len);
	dst[len] = 0;
}

/* Where cuBLASLt 13 may be: the loader's path, then the toolkit's usual homes. */
static void *lt_dlopen(const char *lib_path, char *path_out, size_t path_n, char *err, size_t errlen)
{
	char cands[4][256];
	int n = 0;
	if (lib_path) {
		copy_str(cands[n++], sizeof cands[0], lib_path);
	} else {
		const char *home = getenv("CUDA_HOME");
		snprintf(cands[n++], sizeof cands[0], "libcublasLt.so.13");
		snprintf(cands[n++], sizeof cands[0], "libcublasLt.so");
		if (home && *home)
			snprintf(cands[n++], sizeof cands[0], "%s/lib64/libcublasLt.so.13", home);
		snprintf(cands[n++], sizeof cands[0], "/usr/local/cuda/lib64/libcublasLt.so.13");
	}
	char first[512] = "";
	for (int i = 0; i < n; i++) {
		void *lib = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
		if (lib) {
			copy_str(path_out, path_n, cands[i]);
			return lib;
		}
		const char *why = dlerror();
		if (!first[0])
			copy_str(first, sizeof first, why ? why : cands[i]);
	}
	moert_seterr(err, errlen,
	       "cuBLASLt not found: dlopen %s failed (%s)%s; install the CUDA 13 cuBLAS library (libcublasLt.so.13) "
	       "or add its directory to LD_LIBRARY_PATH",
	       cands[0], first, lib_path ? "" : ", nor was it in $CUDA_HOME/lib64 or /usr/local/cuda/lib64");
	return NULL;
}

static int lt_load(const char *lib_path, void **lib, char *path_out, size_t path_n, struct lt_api *lt, char *err,
		   size_t errlen)
{
	*lib = lt_dlopen(lib_path, path_out, path_n, err, errlen);
	if (!*lib)
		return -1;
	return resolve(*lib, path_out, lt_syms, N_LT_SYMS, lt, err, errlen,
		       "cuBLASLt 13 or newer is needed; install it or fix LD_LIBRARY_PATH") < 0
		       ? -1
		       : 0;
}

static int desc_attr(const struct lt_api *lt, cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t a,
		     int32_t v, const char *what, char *err, size_t errlen)
{
	cublasStatus_t s = lt->cublasLtMatmulDescSetAttribute(desc, a, &v, sizeof v); /* int32_t, per cublasLt.h */
	return s == CUBLAS_STATUS_SUCCESS ? 0 : lt_fail(lt, s, err, errlen, "cublasLtMatmulDescSetAttribute(%s)", what);
}

static int layout(const struct lt_api *lt, cublasLtMatrixLayout_t *out, int bf16, uint64_t rows, uint64_t cols,
		  int64_t ld, const char *what, char *err, size_t errlen)
{
	cublasStatus_t s = lt->cublasLtMatrixLayoutCreate(out, bf16 ? CUDA_R_16BF : CUDA_R_32F, rows, cols, ld);
	if (s == CUBLAS_STATUS_SUCCESS)
		return 0;
	*out = NULL;
	return lt_fail(lt, s, err, errlen, "cublasLtMatrixLayoutCreate(%s, %llu x %llu, ld %lld)", what,
		       (unsigned long long)rows, (unsigned long long)cols, (long long)ld);
}

/* The descriptors of one GEMM. fp32 accumulation and scale always: CUBLAS_COMPUTE_32F
 * never rounds fp32 inputs to TF32 (that is CUBLAS_COMPUTE_32F_FAST_TF32), so fp32 results
 * stay within fp32 rounding of the CPU backend's. Column-major (the default order). */
static int lt_build(const struct lt_api *lt, const struct moert_mm_map *mp, int ab_bf16, int c_bf16,
		    struct mm_entry *e, char *err, size_t errlen)
{
	cublasStatus_t s = lt->cublasLtMatmulDescCreate(&e->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
	if (s != CUBLAS_STATUS_SUCCESS) {
		e->desc = NULL;
		return lt_fail(lt, s, err, errlen, "cublasLtMatmulDescCreate(CUBLAS_COMPUTE_32F)");
	}
	if (desc_attr(lt, e->desc, CUBLASLT_MATMUL_DESC_TRANSA, mp->transa ? CUBLAS_OP_T : CUBLAS_OP_N, "TRANSA", err,
		      errlen) ||
	    desc_attr(lt, e->desc, CUBLASLT_MATMUL_DESC_TRANSB, mp->transb ? CUBLAS_OP_T : CUBLAS_OP_N, "TRANSB", err,
		      errlen))
		return -1;
	if (layout(lt, &e->a, ab_bf16, mp->a_rows, mp->a_cols, mp->lda, "A", err, errlen) ||
	    layout(lt, &e->b, ab_bf16, mp->b_rows, mp->b_cols, mp->ldb, "B", err, errlen) ||
	    layout(lt, &e->c, c_bf16, mp->c_rows, mp->c_cols, mp->ldc, "C", err, errlen))
		return -1;
	return 0;
}

static int pref_attr(const struct lt_api *lt, cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a,
		     const void *v, size_t size, const char *what, char *err, size_t errlen)
{
	cublasStatus_t s = lt->cublasLtMatmulPreferenceSetAttribute(p, a, v, size);
	return s == CUBLAS_STATUS_SUCCESS ? 0
					  : lt_fail(lt, s, err, errlen, "cublasLtMatmulPreferenceSetAttribute(%s)", what);
}

/* The heuristic's limits: our workspace, and the real alignment of each pointer (it
 * assumes 256 bytes otherwise and may pick a kernel that a sub-tensor's pointer breaks).
 * cuBLASLt's A is the caller's B and its B the caller's A. */
static int lt_preference(const struct lt_api *lt, const struct moert_mm_key *k, cublasLtMatmulPreference_t *out,
			 char *err, size_t errlen)
{
	cublasStatus_t s = lt->cublasLtMatmulPreferenceCreate(out);
	if (s != CUBLAS_STATUS_SUCCESS) {
		*out = NULL;
		return lt_fail(lt, s, err, errlen, "cublasLtMatmulPreferenceCreate");
	}
	uint64_t ws = MM_WORKSPACE;
	uint32_t al_a = k->align_b, al_b = k->align_a, al_c = k->align_c;
	if (pref_attr(lt, *out, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws, "MAX_WORKSPACE_BYTES", err,
		      errlen) ||
	    pref_attr(lt, *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a, "MIN_ALIGNMENT_A_BYTES",
		      err, errlen) ||
	    pref_attr(lt, *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b, "MIN_ALIGNMENT_B_BYTES",
		      err, errlen) ||
	    pref_attr(lt, *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c, "MIN_ALIGNMENT_C_BYTES",
		      err, errlen) ||
	    pref_attr(lt, *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c, "MIN_ALIGNMENT_D_BYTES",
		      err, errlen)) {
		lt->cublasLtMatmulPreferenceDestroy(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

static void describe_mm(const struct moert_mm_key *k, char *buf, size_t n)
{
	snprintf(buf, n, "%s M=%d N=%d K=%d, %s A/B, %s C, beta %s", moert_mm_op_name((enum moert_mm_op)k->op), k->m,
		 k->n, k->k, k->ab_bf16 ? "bf16" : "fp32", k->c_bf16 ? "bf16" : "fp32", k->beta_nz ? "!= 0" : "0");
}

/* The heuristic's best algorithm that fits the workspace. */
static int lt_pick(struct moert_cuda *d, const struct moert_mm_key *k, struct mm_entry *e, char *err, size_t errlen)
{
	cublasLtMatmulPreference_t pref;
	if (lt_preference(&d->lt, k, &pref, err, errlen))
		return -1;
	cublasLtMatmulHeuristicResult_t res[8];
	int nres = 0;
	memset(res, 0, sizeof res);
	cublasStatus_t s = d->lt.cublasLtMatmulAlgoGetHeuristic(d->lt_handle, e->desc, e->a, e->b, e->c, e->c, pref, 8,
								 res, &nres);
	d->lt.cublasLtMatmulPreferenceDestroy(pref);
	char what[160];
	describe_mm(k, what, sizeof what);
	if (s != CUBLAS_STATUS_SUCCESS)
		return lt_fail(&d->lt, s, err, errlen, "cublasLtMatmulAlgoGetHeuristic(%s)", what);
	for (int i = 0; i < nres; i++)
		if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= MM_WORKSPACE) {
			e->algo = res[i].algo;
			return 0;
		}
	moert_seterr(err, errlen,
	       "cuBLASLt has no algorithm for %s on %s (pointer alignment A %u, B %u, C %u bytes); align the "
	       "operands to 16 bytes",
	       what, d->desc, k->align_a, k->align_b, k->align_c);
	return -1;
}

int moert_cuda_mm_init(struct moert_cuda *d, char *err, size_t errlen)
{
	if (d->lt_handle)
		return 0;
	if (!d->ltlib && lt_load(NULL, &d->ltlib, d->ltpath, sizeof d->ltpath, &d->lt, err, errlen)) {
		d->ltlib = NULL;
		return -1;
	}
	cublasLtHandle_t h;
	cublasStatus_t s = d->lt.cublasLtCreate(&h);
	if (s != CUBLAS_STATUS_SUCCESS) {
		lt_fail(&d->lt, s, err, errlen, "cublasLtCreate (%s, version %zu)", d->ltpath, d->lt.cublasLtGetVersion());
		moert_adderr(err, errlen, "; cuBLASLt 13 needs a driver for CUDA 13 or newer, this one is for CUDA %d.%d",
			   d->driver_version / 1000, d->driver_version % 1000 / 10);
		return -1;
	}
	CUdeviceptr ws;
	CUresult r = d->cu.cuMemAlloc(&ws, MM_WORKSPACE);
	if (r != CUDA_SUCCESS) {
		d->lt.cublasLtDestroy(h);
		return cu_fail(&d->cu, r, err, errlen, "cuMemAlloc(32 MiB cuBLASLt workspace on %s)", d->desc);
	}
	d->lt_handle = h;
	d->workspace = ws;
	return 0;
}

/* The cached entry for this GEMM, built and tuned on first use. */
static struct mm_entry *mm_entry_get(struct moert_cuda *d, const struct moert_mm_key *k, char *err, size_t errlen)
{
	struct mm_entry *e = moert_mm_table_find(&d->mm, k);
	if (e)
		return e;
	struct moert_mm_map mp;
	moert_mm_map((enum moert_mm_op)k->op, k->m, k->n, k->k, &mp);
	if (!(e = calloc(1, sizeof *e))) {
		moert_seterr(err, errlen, "moert_cuda_mm: out of host memory");
		return NULL;
	}
	if (lt_build(&d->lt, &mp, k->ab_bf16, k->c_bf16, e, err, errlen) || lt_pick(d, k, e, err, errlen)) {
		mm_entry_free(d, e);
		return NULL;
	}
	if (moert_mm_table_insert(&d->mm, k, e)) {
		mm_entry_free(d, e);
		moert_seterr(err, errlen, "moert_cuda_mm: out of host memory");
		return NULL;
	}
	return e;
}

/* K = 0: the product is empty, C = beta C; cuBLASLt is not asked about it. */
static int mm_empty_k(struct moert_cuda *d, int M, int N, moert_dptr C, float beta, int c_bf16, char *err,
		      size_t errlen)
{
	if (beta == 1.0f)
		return 0;
	if (beta != 0.0f) {
		moert_seterr(err, errlen, "moert_cuda_mm: K = 0 with beta %g is not supported (beta is 0 or 1)", (double)beta);
		return -1;
	}
	return moert_cuda_memset(d, C, 0, (size_t)M * (size_t)N * (c_bf16 ? 2 : 4), err, errlen);
}

static int mm_check(enum moert_mm_op op, int M, int N, int K, moert_dptr A, moert_dptr B, moert_dptr C, int ab_bf16,
		    int c_bf16, char *err, size_t errlen)
{
	if ((unsigned)op > MOERT_MM_TN || M < 0 || N < 0 || K < 0) {
		moert_seterr(err, errlen, "moert_cuda_mm: bad arguments (op %d, M=%d N=%d K=%d)", (int)op, M, N, K);
		return -1;
	}
	if (!ab_bf16 && c_bf16) {
		moert_seterr(err, errlen,
		       "moert_cuda_mm(%s M=%d N=%d K=%d): fp32 A/B with a bf16 C is not a cuBLASLt type combination; "
		       "use bf16 A/B or an fp32 C",
		       moert_mm_op_name(op), M, N, K);
		return -1;
	}
	if (M && N && (!C || (K && (!A || !B)))) {
		moert_seterr(err, errlen, "moert_cuda_mm(%s M=%d N=%d K=%d): a NULL device pointer (A 0x%llx, B 0x%llx, C 0x%llx)",
		       moert_mm_op_name(op), M, N, K, (unsigned long long)A, (unsigned long long)B,
		       (unsigned long long)C);
		return -1;
	}
	return 0;
}

int moert_cuda_mm(struct moert_cuda *d, enum moert_mm_op op, int M, int N, int K, moert_dptr A, moert_dptr B,
		  moert_dptr C, float beta, int ab_bf16, int c_bf16, char *err, size_t errlen)
{
	ab_bf16 = !!ab_bf16;
	c_bf16 = !!c_bf16;
	if (mm_check(op, M, N, K, A, B, C, ab_bf16, c_bf16, err, errlen))
		return -1;
	if (!M || !N)
		return 0;
	if (!K)
		return mm_empty_k(d, M, N, C, beta, c_bf16, err, errlen);
	if (moert_cuda_mm_init(d, err, errlen))
		return -1;
	struct moert_mm_key k = {
		.op = (int)op, .m = M, .n = N, .k = K,
		.ab_bf16 = (unsigned char)ab_bf16, .c_bf16 = (unsigned char)c_bf16, .beta_nz = beta != 0.0f,
		.align_a = (unsigned short)moert_cuda_align(A), .align_b = (unsigned short)moert_cuda_align(B),
		.align_c = (unsigned short)moert_cuda_align(C),
	};
	struct mm_entry *e = mm_entry_get(d, &k, err, errlen);
	if (!e)
		return -1;
	const float alpha = 1.0f;
	/* C^T = op(B)^T op(A)^T: cuBLASLt's A is our B, its B our A (device_cuda_internal.h);
	 * C is updated in place (C == D, one descriptor). Host alpha/beta: the default
	 * CUBLASLT_POINTER_MODE_HOST, read before the call returns. */
	cublasStatus_t s = d->lt.cublasLtMatmul(d->lt_handle, e->desc, &alpha, (const void *)(uintptr_t)B, e->a,
						(const void *)(uintptr_t)A, e->b, &beta, (const void *)(uintptr_t)C, e->c,
						(void *)(uintptr_t)C, e->c, &e->algo, (void *)(uintptr_t)d->workspace,
						(size_t)MM_WORKSPACE, (cudaStream_t)d->stream);
	if (s == CUBLAS_STATUS_SUCCESS)
		return 0;
	char what[160];
	describe_mm(&k, what, sizeof what);
	return lt_fail(&d->lt, s, err, errlen, "cublasLtMatmul(%s)", what);
}

/* ---- host-only self test of the cuBLASLt descriptors ---- */

static int selftest_one(const struct lt_api *lt, enum moert_mm_op op, int M, int N, int K, int ab, int c, char *err,
			size_t errlen)
{
	struct moert_mm_map mp;
	struct mm_entry e;
	memset(&e, 0, sizeof e);
	struct moert_mm_key k = {.op = (int)op, .m = M, .n = N, .k = K, .ab_bf16 = (unsigned char)ab,
				 .c_bf16 = (unsigned char)c, .align_a = 16, .align_b = 4, .align_c = 256};
	cublasLtMatmulPreference_t pref = NULL;
	int rc = moert_mm_map(op, M, N, K, &mp) ? -1 : 0;
	if (rc)
		moert_seterr(err, errlen, "moert_mm_map(%s, %d, %d, %d) failed", moert_mm_op_name(op), M, N, K);
	if (!rc)
		rc = lt_build(lt, &mp, ab, c, &e, err, errlen);
	if (!rc)
		rc = lt_preference(lt, &k, &pref, err, errlen);
	if (pref)
		lt->cublasLtMatmulPreferenceDestroy(pref);
	if (e.desc)
		lt->cublasLtMatmulDescDestroy(e.desc);
	if (e.a)
		lt->cublasLtMatrixLayoutDestroy(e.a);
	if (e.b)
		lt->cublasLtMatrixLayoutDestroy(e.b);
	if (e.c)
		lt->cublasLtMatrixLayoutDestroy(e.c);
	return rc;
}

int moert_cuda_cublaslt_selftest(const char *lib_path, char *err, size_t errlen)
{
	static const int shapes[][3] = {{64, 96, 128}, {1, 7, 300}, {257, 33, 65}};
	static const int types[][2] = {{0, 0}, {1, 0}, {1, 1}};
	void *lib;
	char path[256];
	struct lt_api lt;
	if (lt_load(lib_path, &lib, path, sizeof path, &lt, err, errlen))
		return -1;
	for (int op = MOERT_MM_NT; op <= MOERT_MM_TN; op++)
		for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
			for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
				if (selftest_one(&lt, (enum moert_mm_op)op, shapes[s][0], shapes[s][1], shapes[s][2],
						 types[t][0], types[t][1], err, errlen))
					return -1;
	return 0;
}

/* emu_cuda.c - libcuda.so.1 of the device emulator (tests/emu/README.md): the CUDA driver
 * entry points runtime/device_cuda.c resolves, backed by host memory.
 *
 * Device memory is host memory (a CUdeviceptr is the address), so copies are memcpy and a
 * stream is done by the time a call returns. What the emulator keeps from a real driver is
 * what the host code can get wrong: every pointer handed to a copy, fill or free must lie
 * inside one live allocation (a host pointer passed as a device one fails here as it would
 * fault on a GPU), new allocations are filled with 0xff bytes (NaN as floats, -1 as ints)
 * rather than zeros, calls before cuInit or without a current context fail, images must
 * be a cubin, fatbin or PTX, and a cubin's kernel must be in its symbol table.
 * cuLaunchKernel runs nothing: a trainer built with -DMOEC_EMU_LAUNCH calls the kernels'
 * CPU twins instead (compiler/emit.c).
 *
 * cuda.h is included so every definition is checked against the driver's prototype and
 * gets the exported name the header maps it to (cuMemAlloc is cuMemAlloc_v2).
 *
 * Environment: MOERT_EMU_DEVICES (default 8) devices; MOERT_EMU_TRACE=1 prints a summary
 * of what was called to stderr at exit.
 */
#define _GNU_SOURCE
#include <cuda.h>

#include <elf.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emu.h"

#define EMU_EXPORT __attribute__((visibility("default")))

#define DEVICE_NAME "moec device emulator (host memory)"
#define DRIVER_VERSION 13000
#define TOTAL_MEM (80ull << 30)
#define SMEM_OPTIN (227 * 1024) /* an H100's opt-in shared memory per block */
#define SMEM_STATIC_LIMIT (48 * 1024)
#define ALLOC_ALIGN 256
#define EM_CUDA_ELF 190 /* e_machine of a cubin */

/* ---- state ---- */

struct alloc {
	uintptr_t base;
	size_t bytes;
};

struct CUctx_st {
	int device, retained;
};

struct CUstream_st {
	unsigned magic, flags;
};

struct CUevent_st {
	unsigned magic, flags;
	int recorded;
	double ms; /* CLOCK_MONOTONIC when recorded */
};

struct CUfunc_st {
	unsigned magic;
	struct CUmod_st *mod;
	char *name;
	int max_dyn_smem;
	struct CUfunc_st *next;
};

struct CUmod_st {
	unsigned magic;
	const void *image;
	struct CUfunc_st *funcs;
};

#define MAGIC_STREAM 0x5354524du
#define MAGIC_EVENT 0x45564e54u
#define MAGIC_FUNC 0x46554e43u
#define MAGIC_MOD 0x4d4f4455u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static struct alloc *allocs;
static size_t nallocs, capallocs, used_bytes, peak_bytes;
static struct CUctx_st *contexts; /* one primary context per device */
static int ndevices;
static __thread struct CUctx_st *current;

static struct {
	unsigned long allocs, copies, memsets, launches, modules, functions;
} stats;

/* ---- errors ---- */

static const struct {
	CUresult code;
	const char *name, *text;
} errors[] = {
	{CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
	{CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	{CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	{CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
	{CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
	{CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", EMU_NO_KERNELS},
};

CUresult CUDAAPI cuGetErrorName(CUresult error, const char **pStr)
{
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == error) {
			*pStr = errors[i].name;
			return CUDA_SUCCESS;
		}
	*pStr = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI cuGetErrorString(CUresult error, const char **pStr)
{
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == error) {
			*pStr = errors[i].text;
			return CUDA_SUCCESS;
		}
	*pStr = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

/* ---- initialization and devices ---- */

CUresult CUDAAPI cuInit(unsigned int Flags)
{
	if (Flags)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	if (!initialized) {
		const char *env = getenv("MOERT_EMU_DEVICES");
		ndevices = env && *env ? atoi(env) : 8;
		if (ndevices < 0)
			ndevices = 0;
		contexts = calloc((size_t)(ndevices ? ndevices : 1), sizeof *contexts);
		for (int i = 0; contexts && i < ndevices; i++)
			contexts[i].device = i;
		initialized = contexts != NULL;
	}
	pthread_mutex_unlock(&lock);
	if (!initialized)
		return CUDA_ERROR_OUT_OF_MEMORY;
	return ndevices ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

CUresult CUDAAPI cuDriverGetVersion(int *driverVersion)
{
	if (!driverVersion)
		return CUDA_ERROR_INVALID_VALUE;
	*driverVersion = DRIVER_VERSION;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetCount(int *count)
{
	if (!initialized)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (!count)
		return CUDA_ERROR_INVALID_VALUE;
	*count = ndevices;
	return CUDA_SUCCESS;
}

static CUresult device_ok(CUdevice dev)
{
	if (!initialized)
		return CUDA_ERROR_NOT_INITIALIZED;
	return dev >= 0 && dev < ndevices ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal)
{
	CUresult r = device_ok(ordinal);
	if (r == CUDA_SUCCESS)
		*device = ordinal;
	return r;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
	CUresult r = device_ok(dev);
	if (r != CUDA_SUCCESS)
		return r;
	if (!name || len <= 0)
		return CUDA_ERROR_INVALID_VALUE;
	snprintf(name, (size_t)len, "%s", DEVICE_NAME);
	return CUDA_SUCCESS;
}

/* An H100's answers to the attributes a trainer asks about; other valid attributes read 0. */
CUresult CUDAAPI cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
	CUresult r = device_ok(dev);
	if (r != CUDA_SUCCESS)
		return r;
	if (!pi || (int)attrib < 1 || attrib >= CU_DEVICE_ATTRIBUTE_MAX)
		return CUDA_ERROR_INVALID_VALUE;
	switch (attrib) {
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
		*pi = 9;
		break;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
		*pi = 0;
		break;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
		*pi = 132;
		break;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
		*pi = SMEM_OPTIN;
		break;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK:
		*pi = SMEM_STATIC_LIMIT;
		break;
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
		*pi = 1024;
		break;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE:
		*pi = 32;
		break;
	case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
		*pi = 1;
		break;
	default:
		*pi = 0;
	}
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceTotalMem(size_t *bytes, CUdevice dev)
{
	CUresult r = device_ok(dev);
	if (r == CUDA_SUCCESS && !bytes)
		r = CUDA_ERROR_INVALID_VALUE;
	if (r == CUDA_SUCCESS)
		*bytes = (size_t)TOTAL_MEM;
	return r;
}

/* ---- contexts ---- */

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
	CUresult r = device_ok(dev);
	if (r != CUDA_SUCCESS)
		return r;
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	contexts[dev].retained++;
	pthread_mutex_unlock(&lock);
	*pctx = &contexts[dev];
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev)
{
	CUresult r = device_ok(dev);
	if (r != CUDA_SUCCESS)
		return r;
	pthread_mutex_lock(&lock);
	if (contexts[dev].retained > 0)
		contexts[dev].retained--;
	else
		r = CUDA_ERROR_INVALID_CONTEXT;
	pthread_mutex_unlock(&lock);
	if (current == &contexts[dev] && !contexts[dev].retained)
		current = NULL;
	return r;
}

CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx)
{
	if (!initialized)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (ctx && (ctx < contexts || ctx >= contexts + ndevices || !ctx->retained))
		return CUDA_ERROR_INVALID_CONTEXT;
	current = ctx;
	return CUDA_SUCCESS;
}

/* Most calls need cuInit and a current context, as the driver's do. */
static CUresult ctx_ok(void)
{
	if (!initialized)
		return CUDA_ERROR_NOT_INITIALIZED;
	return current && current->retained ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

/* ---- memory ---- */

/* The allocation holding [p, p + bytes), or NULL. Caller holds the lock. */
static const struct alloc *alloc_find(uintptr_t p, size_t bytes)
{
	for (size_t i = 0; i < nallocs; i++) {
		const struct alloc *a = &allocs[i];
		if (p >= a->base && p - a->base <= a->bytes && bytes <= a->bytes - (p - a->base))
			return a;
	}
	return NULL;
}

/* For the emulator's cuBLASLt and NCCL (found with dlsym on libcuda.so.1): does
 * [p, p + bytes) lie inside one live allocation? */
EMU_EXPORT int moec_emu_device_range(const void *p, size_t bytes)
{
	pthread_mutex_lock(&lock);
	int ok = alloc_find((uintptr_t)p, bytes) != NULL;
	pthread_mutex_unlock(&lock);
	return ok;
}

CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	if (!dptr || !bytesize)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	if (bytesize > TOTAL_MEM - used_bytes) {
		pthread_mutex_unlock(&lock);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	if (nallocs == capallocs) {
		size_t cap = capallocs ? 2 * capallocs : 64;
		struct alloc *a = realloc(allocs, cap * sizeof *a);
		if (!a) {
			pthread_mutex_unlock(&lock);
			return CUDA_ERROR_OUT_OF_MEMORY;
		}
		allocs = a;
		capallocs = cap;
	}
	size_t rounded = (bytesize + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
	void *p = aligned_alloc(ALLOC_ALIGN, rounded);
	if (!p) {
		pthread_mutex_unlock(&lock);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	memset(p, 0xff, rounded); /* GPU memory starts as garbage, not zeros */
	allocs[nallocs++] = (struct alloc){(uintptr_t)p, bytesize};
	used_bytes += bytesize;
	if (used_bytes > peak_bytes)
		peak_bytes = used_bytes;
	stats.allocs++;
	pthread_mutex_unlock(&lock);
	*dptr = (CUdeviceptr)(uintptr_t)p;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemFree(CUdeviceptr dptr)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	pthread_mutex_lock(&lock);
	r = CUDA_ERROR_INVALID_VALUE; /* not the start of a live allocation */
	for (size_t i = 0; i < nallocs; i++)
		if (allocs[i].base == (uintptr_t)dptr) {
			used_bytes -= allocs[i].bytes;
			free((void *)allocs[i].base);
			allocs[i] = allocs[--nallocs];
			r = CUDA_SUCCESS;
			break;
		}
	pthread_mutex_unlock(&lock);
	return r;
}

static int stream_ok(CUstream s)
{
	return !s || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD || s->magic == MAGIC_STREAM;
}

/* A copy's or fill's checks: a context, a stream, and device ranges inside allocations.
 * A host pointer that is device memory is refused too: the driver would take the copy for
 * the wrong direction. */
static CUresult copy_ok(uintptr_t dev_dst, uintptr_t dev_src, const void *host, size_t bytes, CUstream s)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	if (!stream_ok(s))
		return CUDA_ERROR_INVALID_HANDLE;
	if (!bytes)
		return CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	int ok = (!dev_dst || alloc_find(dev_dst, bytes)) && (!dev_src || alloc_find(dev_src, bytes)) &&
		 (!host || !alloc_find((uintptr_t)host, 1));
	pthread_mutex_unlock(&lock);
	return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)
{
	CUresult r = !dstDevice || !srcHost ? CUDA_ERROR_INVALID_VALUE
					    : copy_ok((uintptr_t)dstDevice, 0, srcHost, ByteCount, hStream);
	if (r == CUDA_SUCCESS && ByteCount) {
		memcpy((void *)(uintptr_t)dstDevice, srcHost, ByteCount);
		stats.copies++;
	}
	return r;
}

CUresult CUDAAPI cuMemcpyDtoHAsync(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
	CUresult r = !dstHost || !srcDevice ? CUDA_ERROR_INVALID_VALUE
					    : copy_ok(0, (uintptr_t)srcDevice, dstHost, ByteCount, hStream);
	if (r == CUDA_SUCCESS && ByteCount) {
		memcpy(dstHost, (const void *)(uintptr_t)srcDevice, ByteCount);
		stats.copies++;
	}
	return r;
}

CUresult CUDAAPI cuMemcpyDtoDAsync(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
	CUresult r = !dstDevice || !srcDevice ? CUDA_ERROR_INVALID_VALUE
					      : copy_ok((uintptr_t)dstDevice, (uintptr_t)srcDevice, NULL, ByteCount, hStream);
	if (r == CUDA_SUCCESS && ByteCount) {
		/* the driver's device copy of overlapping ranges is undefined; memmove is one answer */
		memmove((void *)(uintptr_t)dstDevice, (const void *)(uintptr_t)srcDevice, ByteCount);
		stats.copies++;
	}
	return r;
}

CUresult CUDAAPI cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream)
{
	CUresult r = !dstDevice ? CUDA_ERROR_INVALID_VALUE : copy_ok((uintptr_t)dstDevice, 0, NULL, N, hStream);
	if (r == CUDA_SUCCESS && N) {
		memset((void *)(uintptr_t)dstDevice, uc, N);
		stats.memsets++;
	}
	return r;
}

/* ---- streams and events: everything is done when queued ---- */

CUresult CUDAAPI cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	if (!phStream || (Flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
		return CUDA_ERROR_INVALID_VALUE;
	struct CUstream_st *s = calloc(1, sizeof *s);
	if (!s)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*s = (struct CUstream_st){MAGIC_STREAM, Flags};
	*phStream = s;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamDestroy(CUstream hStream)
{
	if (!hStream || hStream->magic != MAGIC_STREAM)
		return CUDA_ERROR_INVALID_HANDLE;
	hStream->magic = 0;
	free(hStream);
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamSynchronize(CUstream hStream)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	return stream_ok(hStream) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

CUresult CUDAAPI cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	if (!phEvent)
		return CUDA_ERROR_INVALID_VALUE;
	struct CUevent_st *e = calloc(1, sizeof *e);
	if (!e)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*e = (struct CUevent_st){.magic = MAGIC_EVENT, .flags = Flags};
	*phEvent = e;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventDestroy(CUevent hEvent)
{
	if (!hEvent || hEvent->magic != MAGIC_EVENT)
		return CUDA_ERROR_INVALID_HANDLE;
	hEvent->magic = 0;
	free(hEvent);
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventRecord(CUevent hEvent, CUstream hStream)
{
	if (!hEvent || hEvent->magic != MAGIC_EVENT || !stream_ok(hStream))
		return CUDA_ERROR_INVALID_HANDLE;
	hEvent->recorded = 1;
	hEvent->ms = now_ms();
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventSynchronize(CUevent hEvent)
{
	return hEvent && hEvent->magic == MAGIC_EVENT ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
	if (!pMilliseconds)
		return CUDA_ERROR_INVALID_VALUE;
	if (!hStart || !hEnd || hStart->magic != MAGIC_EVENT || hEnd->magic != MAGIC_EVENT)
		return CUDA_ERROR_INVALID_HANDLE;
	if ((hStart->flags | hEnd->flags) & CU_EVENT_DISABLE_TIMING || !hStart->recorded || !hEnd->recorded)
		return CUDA_ERROR_INVALID_HANDLE;
	*pMilliseconds = (float)(hEnd->ms - hStart->ms);
	return CUDA_SUCCESS;
}

/* ---- modules: images are checked, kernels looked up, nothing compiled ---- */

/* The ELF64 section header i of a cubin of size bytes, or NULL if it lies outside. */
static const Elf64_Shdr *elf_section(const unsigned char *p, size_t size, unsigned i)
{
	const Elf64_Ehdr *h = (const Elf64_Ehdr *)p;
	if (i >= h->e_shnum || h->e_shentsize != sizeof(Elf64_Shdr) || h->e_shoff > size ||
	    (uint64_t)h->e_shnum * sizeof(Elf64_Shdr) > size - h->e_shoff)
		return NULL;
	const Elf64_Shdr *s = (const Elf64_Shdr *)(p + h->e_shoff) + i;
	return s->sh_offset <= size && s->sh_size <= size - s->sh_offset ? s : NULL;
}

/* The ELF header's own size, for elf_symbol's bounds; 0 if the image is not a cubin. */
static size_t elf_extent(const unsigned char *p)
{
	const Elf64_Ehdr *h = (const Elf64_Ehdr *)p;
	if (memcmp(h->e_ident, ELFMAG, SELFMAG) || h->e_ident[EI_CLASS] != ELFCLASS64 || h->e_machine != EM_CUDA_ELF)
		return 0;
	/* the image's size is not passed to cuModuleLoadData: the section table's end is
	 * where a cubin's headers say it ends */
	uint64_t end = h->e_shoff + (uint64_t)h->e_shnum * h->e_shentsize;
	const Elf64_Shdr *sh = (const Elf64_Shdr *)(p + h->e_shoff);
	for (unsigned i = 0; h->e_shentsize == sizeof(Elf64_Shdr) && i < h->e_shnum; i++)
		if (sh[i].sh_type != SHT_NOBITS && sh[i].sh_offset + sh[i].sh_size > end)
			end = sh[i].sh_offset + sh[i].sh_size;
	return (size_t)end;
}

/* Is name a function symbol of the cubin? */
static int elf_has_function(const unsigned char *p, const char *name)
{
	size_t size = elf_extent(p);
	const Elf64_Ehdr *h = (const Elf64_Ehdr *)p;
	for (unsigned i = 0; i < h->e_shnum; i++) {
		const Elf64_Shdr *s = elf_section(p, size, i);
		if (!s || s->sh_type != SHT_SYMTAB || s->sh_entsize != sizeof(Elf64_Sym))
			continue;
		const Elf64_Shdr *str = elf_section(p, size, s->sh_link);
		if (!str)
			continue;
		const Elf64_Sym *sym = (const Elf64_Sym *)(p + s->sh_offset);
		for (size_t k = 0; k < s->sh_size / sizeof *sym; k++) {
			if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC || sym[k].st_name >= str->sh_size)
				continue;
			const char *n = (const char *)p + str->sh_offset + sym[k].st_name;
			if (!strncmp(n, name, str->sh_size - sym[k].st_name) &&
			    strnlen(n, str->sh_size - sym[k].st_name) == strlen(name))
				return 1;
		}
	}
	return 0;
}

/* ".entry name(" or ".entry name (" in PTX text. */
static int ptx_has_entry(const char *ptx, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = strstr(ptx, ".entry"); p; p = strstr(p + 1, ".entry")) {
		const char *q = p + 6;
		while (*q == ' ' || *q == '\t')
			q++;
		if (!strncmp(q, name, n) && (q[n] == '(' || q[n] == ' ' || q[n] == '\t' || q[n] == '\n'))
			return 1;
	}
	return 0;
}

enum image { IMAGE_BAD, IMAGE_CUBIN, IMAGE_FATBIN, IMAGE_PTX };

static enum image image_kind(const unsigned char *p)
{
	if (!memcmp(p, ELFMAG, SELFMAG))
		return elf_extent(p) ? IMAGE_CUBIN : IMAGE_BAD;
	if (p[0] == 0x50 && p[1] == 0xed && p[2] == 0x55 && p[3] == 0xba)
		return IMAGE_FATBIN;
	const char *t = (const char *)p;
	return strstr(t, ".version") && strstr(t, ".target") ? IMAGE_PTX : IMAGE_BAD;
}

CUresult CUDAAPI cuModuleLoadData(CUmodule *module, const void *image)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	if (!module || !image)
		return CUDA_ERROR_INVALID_VALUE;
	switch (image_kind(image)) {
	case IMAGE_BAD:
		/* what the driver says of text that is not PTX, and of a foreign ELF */
		return memcmp(image, ELFMAG, SELFMAG) ? CUDA_ERROR_INVALID_PTX : CUDA_ERROR_INVALID_IMAGE;
	default:
		break;
	}
	struct CUmod_st *m = calloc(1, sizeof *m);
	if (!m)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*m = (struct CUmod_st){.magic = MAGIC_MOD, .image = image};
	*module = m;
	stats.modules++;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleUnload(CUmodule hmod)
{
	if (!hmod || hmod->magic != MAGIC_MOD)
		return CUDA_ERROR_INVALID_HANDLE;
	for (struct CUfunc_st *f = hmod->funcs, *next; f; f = next) {
		next = f->next;
		f->magic = 0;
		free(f->name);
		free(f);
	}
	hmod->magic = 0;
	free(hmod);
	return CUDA_SUCCESS;
}

/* One handle per (module, name), as the driver returns the same CUfunction each time. */
CUresult CUDAAPI cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
	if (!hfunc || !name)
		return CUDA_ERROR_INVALID_VALUE;
	if (!hmod || hmod->magic != MAGIC_MOD)
		return CUDA_ERROR_INVALID_HANDLE;
	for (struct CUfunc_st *f = hmod->funcs; f; f = f->next)
		if (!strcmp(f->name, name)) {
			*hfunc = f;
			return CUDA_SUCCESS;
		}
	enum image kind = image_kind(hmod->image);
	if ((kind == IMAGE_CUBIN && !elf_has_function(hmod->image, name)) ||
	    (kind == IMAGE_PTX && !ptx_has_entry(hmod->image, name)))
		return CUDA_ERROR_NOT_FOUND;
	struct CUfunc_st *f = calloc(1, sizeof *f);
	char *copy = strdup(name);
	if (!f || !copy) {
		free(f);
		free(copy);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	*f = (struct CUfunc_st){.magic = MAGIC_FUNC, .mod = hmod, .name = copy, .next = hmod->funcs};
	f->max_dyn_smem = SMEM_STATIC_LIMIT;
	hmod->funcs = f;
	stats.functions++;
	*hfunc = f;
	return CUDA_SUCCESS;
}

/* Plausible numbers for a kernel that uses no static shared memory. */
CUresult CUDAAPI cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
	if (!pi)
		return CUDA_ERROR_INVALID_VALUE;
	if (!hfunc || hfunc->magic != MAGIC_FUNC)
		return CUDA_ERROR_INVALID_HANDLE;
	switch (attrib) {
	case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
		*pi = 1024;
		break;
	case CU_FUNC_ATTRIBUTE_NUM_REGS:
		*pi = 32;
		break;
	case CU_FUNC_ATTRIBUTE_PTX_VERSION:
	case CU_FUNC_ATTRIBUTE_BINARY_VERSION:
		*pi = 90;
		break;
	case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
		*pi = hfunc->max_dyn_smem;
		break;
	case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES:
	case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES:
	case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES:
		*pi = 0;
		break;
	default:
		if ((int)attrib < 0 || attrib >= CU_FUNC_ATTRIBUTE_MAX)
			return CUDA_ERROR_INVALID_VALUE;
		*pi = 0;
	}
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
	if (!hfunc || hfunc->magic != MAGIC_FUNC)
		return CUDA_ERROR_INVALID_HANDLE;
	if (attrib == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
		if (value < 0 || value > SMEM_OPTIN) /* static shared memory is 0 here */
			return CUDA_ERROR_INVALID_VALUE;
		hfunc->max_dyn_smem = value;
		return CUDA_SUCCESS;
	}
	return (int)attrib < 0 || attrib >= CU_FUNC_ATTRIBUTE_MAX ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

/* No kernel runs here: the launch's handle and stream are checked and the launch refused. */
CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
				unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
				unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
	CUresult r = ctx_ok();
	if (r != CUDA_SUCCESS)
		return r;
	if (!f || f->magic != MAGIC_FUNC || !stream_ok(hStream))
		return CUDA_ERROR_INVALID_HANDLE;
	stats.launches++;
	return CUDA_ERROR_NOT_SUPPORTED;
}

/* NVIDIA's own libraries' private tables. NVRTC looks for them in any libcuda.so.1 it finds
 * (and dereferences a missing entry point): this driver has none to offer. */
CUresult CUDAAPI cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
	if (ppExportTable)
		*ppExportTable = NULL;
	return CUDA_ERROR_NOT_SUPPORTED;
}

/* ---- at exit ---- */

__attribute__((destructor)) static void emu_cuda_report(void)
{
	if (!emu_trace() || !initialized) /* a probe's dlopen and dlclose: nothing to say */
		return;
	fprintf(stderr,
		"moec emu: libcuda.so.1: %lu allocations (peak %.1f MiB, %zu live), %lu copies, %lu fills, %lu modules, "
		"%lu kernels, %lu launches refused\n",
		stats.allocs, (double)peak_bytes / 1048576.0, nallocs, stats.copies, stats.memsets, stats.modules,
		stats.functions, stats.launches);
}
